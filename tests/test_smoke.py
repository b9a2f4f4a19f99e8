async def test_create_tenant_user_pat_verify(client):
    tenant = await client.command("create_tenant", name="smoke-" + __import__("uuid").uuid4().hex[:6])
    tid = tenant["result"]["tenant_id"]
    user = await client.command("register_user", tenant_id=tid, username="alice")
    uid = user["result"]["user_id"]
    pat = await client.command("create_pat", user_id=uid, name="ci", scopes=[{"entity_type": "doc", "operation": "read", "entity_id": "*"}])
    token = pat["result"]["token"]
    v = await client.verify(token)
    assert v["valid"], v
    a = await client.authorize(token, entity_type="doc", operation="read", entity_id="42")
    assert a["allowed"], a
    await client.command("revoke_pat", pat_id=pat["result"]["pat_id"])
    v = await client.verify(token)
    assert v == {"valid": False, "reason": "revoked", "position": v["position"]}
