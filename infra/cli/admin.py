"""Administering authbus over NATS: a noun for each kind of thing (``tenant``, ``user``, ``pat``, …)
and its verbs, plus ``login``, ``verify``, ``authorize`` and ``health``.

Long because it is the whole tree ``authbus --help`` shows, each verb a few lines of typed
options over one shared ``send``; split, the tree would be read in pieces."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from authbus.domain.scopes import parse_scope as parse_scope_text
from authbus.infra.audit import as_of, log, rebuild  # noqa: F401  (each registers its tool on audit_app)
from authbus.infra.audit import verify as verify_tool  # noqa: F401
from authbus.infra.audit.audit_app import audit_app
from authbus.infra.cli.common import app, ask, fail, show

if TYPE_CHECKING:
    from authbus.infra.client import AuthbusClient

tenant_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Create, disable and enable tenants.")
user_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Register, inspect, disable users; grant and revoke roles."
)
pat_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Personal access tokens and their scopes.")
key_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="API keys, recovery and invitation keys.")
signing_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Keys that sign JWTs: create, list, retire, revoke.")
session_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Login sessions (refresh-token families).")
role_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Roles: the built-in root, admin, auditor and user, and the tenant's own, which carry scopes. Grant and revoke both.",
)
scope_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Add and remove a PAT's scopes.")
for sub, name in (
    (audit_app, "audit"),
    (tenant_app, "tenant"),
    (user_app, "user"),
    (pat_app, "pat"),
    (key_app, "key"),
    (signing_app, "signing-key"),
    (session_app, "session"),
    (role_app, "role"),
    (scope_app, "scope"),
):
    app.add_typer(sub, name=name)


def _tenant_named(ctx: typer.Context, value: str | None) -> str | None:
    """A --tenant given by name (``acme``) as its id; an id passes as it is."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    tenants = all_pages(ctx, "list_tenants")
    found = [t["id"] for t in tenants if t["name"].casefold() == value.casefold()]
    if not found:
        raise typer.BadParameter(f"no tenant named {value!r} that these credentials can see", param_hint="--tenant")
    return found[0]


TenantOption = Annotated[
    Optional[str], typer.Option("--tenant", help="Tenant id or name (default: your own).", callback=_tenant_named)
]
RequiredTenant = Annotated[str, typer.Option("--tenant", help="Tenant id or name.", callback=_tenant_named)]
TenantArg = Annotated[str, typer.Argument(help="Tenant id or name.", callback=_tenant_named)]


def command(ctx: typer.Context, name: str, /, **fields: Any) -> None:
    fields = {k: v for k, v in fields.items() if v is not None}
    reply = ask(ctx, lambda c: c.command(name, **fields))
    show(ctx, {**reply["result"], "position": reply["position"]} if not ctx.obj.as_json else reply)


def parse_scope(text: str) -> dict[str, Any]:
    """``[domain/]entity_type:operation:entity_id``, e.g. ``docs/document:read:*``."""
    scope = parse_scope_text(text)
    if scope is None:
        raise typer.BadParameter(f"{text!r}: use [domain/]entity_type:operation:entity_id")
    return scope.to_dict()


Scopes = Annotated[Optional[list[str]], typer.Option("--scope", help="[domain/]entity_type:operation:entity_id (repeatable).")]
ExpiresIn = Annotated[Optional[str], typer.Option(help="Lifetime: seconds, or a duration such as 720h or 1h30m.")]


def lifetime(text: str | None) -> int | str | None:
    """Seconds as a number, a duration as it is (the server reads it, wire.md §7.7)."""
    return int(text) if text is not None and text.isdigit() else text


Reason = Annotated[Optional[str], typer.Option(help="Why (kept in the audit log).")]
CommandId = Annotated[Optional[str], typer.Option(help="Idempotency key: a repeat returns the first reply.")]


@tenant_app.command("create")
def tenant_create(ctx: typer.Context, name: str, command_id: CommandId = None) -> None:
    """Create a tenant (root only).  Example: authbus tenant create acme"""
    command(ctx, "create_tenant", name=name, command_id=command_id)


@tenant_app.command("disable")
def tenant_disable(ctx: typer.Context, tenant_id: TenantArg, reason: Reason = None) -> None:
    """Disable a tenant: none of its credentials verify until it is enabled again.  Example: authbus tenant disable acme --reason 'unpaid'"""
    command(ctx, "disable_tenant", tenant_id=tenant_id, reason=reason)


@tenant_app.command("enable")
def tenant_enable(ctx: typer.Context, tenant_id: TenantArg) -> None:
    """Enable a disabled tenant.  Example: authbus tenant enable acme"""
    command(ctx, "enable_tenant", tenant_id=tenant_id)


@tenant_app.command("get")
def tenant_get(
    ctx: typer.Context,
    tenant_id: Annotated[Optional[str], typer.Argument(help="Id or name; default: your own.", callback=_tenant_named)] = None,
) -> None:
    """Show a tenant: name, tags, metadata, its role order, who created and last changed it.  Example: authbus tenant get acme"""
    fields = {"tenant_id": tenant_id} if tenant_id else {}
    show(ctx, ask(ctx, lambda c: c.admin("get_tenant", **fields))["tenant"])


@tenant_app.command("list")
def tenant_list(ctx: typer.Context) -> None:
    """List the tenants (root: every one; an admin or auditor: its own).  Example: authbus --json tenant list"""
    show(ctx, all_pages(ctx, "list_tenants"), ("id", "name", "disabled", "tags", "updated_at"))


@tenant_app.command("rename")
def tenant_rename(ctx: typer.Context, tenant_id: TenantArg, name: str, command_id: CommandId = None) -> None:
    """Rename a tenant; its old name is free for others from then on.  Example: authbus tenant rename <id> acme-eu"""
    command(ctx, "rename_tenant", tenant_id=tenant_id, name=name, command_id=command_id)


@tenant_app.command("update")
def tenant_update(
    ctx: typer.Context,
    tenant_id: TenantArg,
    tag: Annotated[Optional[list[str]], typer.Option(help="A tag (repeatable); the tags given replace the tenant's.")] = None,
    meta: Annotated[
        Optional[list[str]], typer.Option(help="key=value (repeatable); the metadata given replaces the tenant's.")
    ] = None,
) -> None:
    """Set a tenant's tags, its metadata, or both.  Example: authbus tenant update <id> --tag eu --meta plan=pro"""
    command(ctx, "update_tenant", tenant_id=tenant_id, tags=tag, metadata=_metadata(meta))


def _metadata(meta: list[str] | None) -> dict[str, str] | None:
    """``--meta key=value`` options as a dict; None when none was given."""
    pairs = [item.partition("=") for item in meta or []]
    if any(not sep for _, sep, _ in pairs):
        raise typer.BadParameter("use key=value", param_hint="--meta")
    return {key: value for key, _, value in pairs} if meta is not None else None


@tenant_app.command("policy")
def tenant_policy(
    ctx: typer.Context,
    tenant_id: TenantArg,
    access_token_seconds: Annotated[
        Optional[int], typer.Option(help="Access-token lifetime, 60–86400; 0: the deployment's.")
    ] = None,
    session_seconds: Annotated[Optional[int], typer.Option(help="Session (refresh) lifetime; 0: the deployment's.")] = None,
    audience: Annotated[Optional[str], typer.Option(help="Access tokens' aud; '': the deployment's.")] = None,
    open_registration: Annotated[
        Optional[bool], typer.Option("--open-registration/--no-open-registration", help="auth.v1.register without a bearer.")
    ] = None,
    keypair_signup: Annotated[
        Optional[bool], typer.Option("--keypair-signup/--no-keypair-signup", help="A key answering a challenge becomes a user.")
    ] = None,
    registrations_per_minute: Annotated[
        Optional[int], typer.Option(help="Self-service sign-ups per minute, all callers.")
    ] = None,
    command_id: CommandId = None,
) -> None:
    """Change a tenant's policy: what is not given stays as it is.  Example: authbus tenant policy <id> --open-registration --access-token-seconds 300"""
    policy = ask(ctx, lambda c: c.admin("get_tenant", tenant_id=tenant_id))["tenant"]["policy"]
    deployments = {"access_token_seconds": access_token_seconds, "session_seconds": session_seconds, "audience": audience}
    policy |= {name: value or None for name, value in deployments.items() if value is not None}  # 0 or '': unset
    switches = {"open_registration": open_registration, "keypair_signup": keypair_signup}
    policy |= {name: value for name, value in switches.items() if value is not None}
    if registrations_per_minute is not None:
        policy["registrations_per_minute"] = registrations_per_minute
    command(ctx, "set_tenant_policy", tenant_id=tenant_id, **policy, command_id=command_id)


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    username: str,
    tenant: RequiredTenant,
    role: Annotated[
        Optional[list[str]], typer.Option(help="root, admin, auditor, user or a role of the tenant's own (repeatable).")
    ] = None,
    kind: Annotated[str, typer.Option(help="user or service.")] = "user",
    password_stdin: Annotated[bool, typer.Option(help="Read a password from standard input.")] = False,
    command_id: CommandId = None,
) -> None:
    """Register a user.  Example: authbus user create --tenant <tenant_id> --role admin alice"""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    command(
        ctx, "register_user", tenant_id=tenant, username=username, kind=kind, roles=role, password=password, command_id=command_id
    )


@user_app.command("get")
def user_get(ctx: typer.Context, user_id: str) -> None:
    """Show one user.  Example: authbus user get <user_id>"""
    show(ctx, ask(ctx, lambda c: c.admin("get_user", user_id=user_id))["user"])


@user_app.command("list")
def user_list(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """List the users of a tenant.  Example: authbus user list --tenant acme"""
    items = all_pages(ctx, "list_users", tenant_id=tenant)
    show(ctx, items, ("id", "username", "kind", "roles", "disabled", "created_at"))


@user_app.command("update")
def user_update(
    ctx: typer.Context,
    user_id: str,
    username: Annotated[Optional[str], typer.Option(help="A new username; the old one is free for others then.")] = None,
    display_name: Annotated[Optional[str], typer.Option(help="'': none.")] = None,
    email: Annotated[Optional[str], typer.Option(help="'': none.")] = None,
    meta: Annotated[
        Optional[list[str]], typer.Option(help="key=value (repeatable); the metadata given replaces the user's.")
    ] = None,
    command_id: CommandId = None,
) -> None:
    """Rename a user or change its profile; what is not given stays.  Example: authbus user update <id> --display-name "Ada Lovelace" --email ada@example.com"""
    profile = {"username": username, "display_name": display_name, "email": email, "metadata": _metadata(meta)}
    command(ctx, "update_user", user_id=user_id, **profile, command_id=command_id)  # what is None is not sent


@user_app.command("delete")
def user_delete(ctx: typer.Context, user_id: str, reason: Reason = None, command_id: CommandId = None) -> None:
    """Erase a user for good: its personal data is crypto-shredded, its credentials stop
    acting, its username is free.  Example: authbus user delete <user_id> --reason 'asked to be forgotten'"""
    command(ctx, "delete_user", user_id=user_id, reason=reason, command_id=command_id)


@user_app.command("search")
def user_search(
    ctx: typer.Context,
    tenant: TenantOption = None,
    prefix: Annotated[Optional[str], typer.Option(help="Usernames starting with this, in any case.")] = None,
    role: Annotated[Optional[str], typer.Option(help="Holding this role (built-in or the tenant's).")] = None,
    status: Annotated[Optional[str], typer.Option(help="active or disabled.")] = None,
) -> None:
    """Find users of a tenant; every filter given must match.  Example: authbus user search --prefix ada --role appAdmin"""
    items = all_pages(ctx, "search_users", tenant_id=tenant, username_prefix=prefix, role=role, status=status)
    show(ctx, items, ("id", "username", "display_name", "roles", "disabled", "created_at"))


@user_app.command("disable")
def user_disable(ctx: typer.Context, user_id: str, reason: Reason = None) -> None:
    """Disable a user: its credentials stop verifying at once.  Example: authbus user disable <user_id> --reason 'left the company'"""
    command(ctx, "disable_user", user_id=user_id, reason=reason)


@user_app.command("enable")
def user_enable(ctx: typer.Context, user_id: str) -> None:
    """Enable a disabled user.  Example: authbus user enable <user_id>"""
    command(ctx, "enable_user", user_id=user_id)


@role_app.command("grant")
@user_app.command("grant-role")
def user_grant_role(ctx: typer.Context, user_id: str, role: str) -> None:
    """Grant a role, built-in or the tenant's own.  Example: authbus role grant <user_id> auditor"""
    command(ctx, "grant_role", user_id=user_id, role=role)


@role_app.command("revoke")
@user_app.command("revoke-role")
def user_revoke_role(ctx: typer.Context, user_id: str, role: str, reason: Reason = None) -> None:
    """Revoke a role.  Example: authbus role revoke <user_id> admin --reason 'left the team'"""
    command(ctx, "revoke_role", user_id=user_id, role=role, reason=reason)


@role_app.command("create")
def role_create(
    ctx: typer.Context,
    name: str,
    tenant: TenantOption = None,
    description: Annotated[Optional[str], typer.Option()] = None,
    scope: Scopes = None,
    command_id: CommandId = None,
) -> None:
    """Define a role of the tenant's own, with the scopes its holders get.
    Example: authbus role create readers --tenant <tenant_id> --scope 'docs/document:read:*'"""
    scopes = [parse_scope(s) for s in scope or []]
    command(ctx, "create_role", name=name, tenant_id=tenant, description=description, scopes=scopes, command_id=command_id)


@role_app.command("list")
def role_list(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """List a tenant's own roles with their scopes.  Example: authbus role list --tenant <tenant_id>"""
    show(ctx, all_pages(ctx, "list_roles", tenant_id=tenant), ("id", "name", "scopes", "description"))


@role_app.command("get")
def role_get(ctx: typer.Context, role_id: str) -> None:
    """Show one role.  Example: authbus role get <role_id>"""
    show(ctx, ask(ctx, lambda c: c.admin("get_role", role_id=role_id))["role"])


@role_app.command("add-scope")
def role_add_scope(ctx: typer.Context, role_id: str, scope: list[str]) -> None:
    """Add scopes to a role: every holder gets them.  Example: authbus role add-scope <role_id> 'docs/document:update:*'"""
    command(ctx, "add_role_scopes", role_id=role_id, scopes=[parse_scope(s) for s in scope])


@role_app.command("remove-scope")
def role_remove_scope(ctx: typer.Context, role_id: str, scope: list[str]) -> None:
    """Remove scopes from a role: every credential of its holders loses them at once.
    Example: authbus role remove-scope <role_id> 'docs/document:update:*'"""
    command(ctx, "remove_role_scopes", role_id=role_id, scopes=[parse_scope(s) for s in scope])


@role_app.command("delete")
def role_delete(ctx: typer.Context, role_id: str, reason: Reason = None) -> None:
    """Delete a role: it grants nothing from then on.  Example: authbus role delete <role_id> --reason 'reorg'"""
    command(ctx, "delete_role", role_id=role_id, reason=reason)


@role_app.command("order")
def role_order(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Role names, lowest first; root is always highest.")],
    tenant: TenantOption = None,
    command_id: CommandId = None,
) -> None:
    """Place the tenant's roles in an order with the built-in ones, lowest first, for
    authorize --min-role.  Example: authbus role order --tenant <tenant_id> user appAdmin admin root"""
    command(ctx, "set_role_order", order=names, tenant_id=tenant, command_id=command_id)


@user_app.command("set-password")
def user_set_password(
    ctx: typer.Context,
    user_id: str,
    old_password: Annotated[
        bool, typer.Option("--old-password", help="Also read the current password, from the second line.")
    ] = False,
) -> None:
    """Set a user's password, read from standard input (never from the command line).

    Example: printf '%s\n' "$NEW" | authbus user set-password <user_id>
    """
    new = sys.stdin.readline().rstrip("\n")
    old = sys.stdin.readline().rstrip("\n") if old_password else None
    command(ctx, "change_password", user_id=user_id, password=new, old_password=old)


@user_app.command("login-activity")
def user_login_activity(ctx: typer.Context, user_id: str) -> None:
    """The last 50 login attempts, newest first.  Example: authbus user login-activity <user_id>"""
    items = ask(ctx, lambda c: c.admin("login_activity", user_id=user_id))["items"]
    show(ctx, items, ("at", "outcome", "method", "reason", "source"))


@pat_app.command("create")
def pat_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name to recognise it by.")],
    user: Annotated[Optional[str], typer.Option(help="Owner's user id (default: you, signed in).")] = None,
    description: Annotated[Optional[str], typer.Option()] = None,
    scope: Scopes = None,
    expires_in: ExpiresIn = None,
    command_id: CommandId = None,
) -> None:
    """Create a PAT; its token is shown once.
    Example: authbus pat create --user <user_id> --name ci --scope 'docs/document:read:*' --expires-in 720h"""
    scopes = [parse_scope(s) for s in scope or []]
    command(
        ctx,
        "create_pat",
        user_id=user,
        name=name,
        description=description,
        scopes=scopes,
        expires_in=lifetime(expires_in),
        command_id=command_id,
    )


@pat_app.command("list")
def pat_list(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(help="Owner (default: you).")] = None) -> None:
    """List a user's PATs (never their secrets).  Example: authbus pat list --user <user_id>"""
    show(ctx, all_pages(ctx, "list_pats", user_id=user), ("id", "name", "status", "expires_at", "scopes"))


@pat_app.command("get")
def pat_get(ctx: typer.Context, pat_id: str) -> None:
    """Show one PAT with its scopes.  Example: authbus pat get <pat_id>"""
    show(ctx, ask(ctx, lambda c: c.admin("get_pat", pat_id=pat_id))["pat"])


@pat_app.command("revoke")
def pat_revoke(ctx: typer.Context, pat_id: str, reason: Reason = None) -> None:
    """Revoke a PAT: it stops verifying on every instance.  Example: authbus pat revoke <pat_id> --reason 'laptop lost'"""
    command(ctx, "revoke_pat", pat_id=pat_id, reason=reason)


@pat_app.command("reset")
def pat_reset(ctx: typer.Context, pat_id: str, expires_in: ExpiresIn = None) -> None:
    """Give a PAT a new secret (the old token stops verifying); shown once.  Example: authbus pat reset <pat_id> --expires-in 720h"""
    command(ctx, "reset_pat_secret", pat_id=pat_id, expires_in=lifetime(expires_in))


@pat_app.command("update")
def pat_update(
    ctx: typer.Context,
    pat_id: str,
    name: Annotated[Optional[str], typer.Option()] = None,
    description: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Rename a PAT or change its description; what is not given stays.  Example: authbus pat update <pat_id> --name nightly"""
    command(ctx, "update_pat", pat_id=pat_id, name=name, description=description)


@scope_app.command("add")
@pat_app.command("add-scope")
def pat_add_scope(ctx: typer.Context, pat_id: str, scope: list[str]) -> None:
    """Add scopes, all or none.  Example: authbus scope add <pat_id> 'docs/document:update:42' 'docs/folder:read:*'"""
    if len(scope) == 1:
        command(ctx, "add_scope", pat_id=pat_id, scope=parse_scope(scope[0]))
    else:
        command(ctx, "add_scopes", pat_id=pat_id, scopes=[parse_scope(s) for s in scope])


@scope_app.command("remove")
@pat_app.command("remove-scope")
def pat_remove_scope(ctx: typer.Context, pat_id: str, scope: list[str]) -> None:
    """Remove scopes, all or none.  Example: authbus scope remove <pat_id> 'docs/document:update:42'"""
    if len(scope) == 1:
        command(ctx, "remove_scope", pat_id=pat_id, scope=parse_scope(scope[0]))
    else:
        command(ctx, "remove_scopes", pat_id=pat_id, scopes=[parse_scope(s) for s in scope])


@key_app.command("issue")
def key_issue(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Owner's user id.")],
    kind: Annotated[str, typer.Option(help="api_key, recovery or invitation.")] = "api_key",
    name: Annotated[Optional[str], typer.Option()] = None,
    scope: Scopes = None,
    expires_in: ExpiresIn = None,
) -> None:
    """Issue a key; its token is shown once.  Example: authbus key issue --user <user_id> --name deploy"""
    scopes = [parse_scope(s) for s in scope] if scope else None
    command(ctx, "issue_key", user_id=user, kind=kind, name=name, scopes=scopes, expires_in=lifetime(expires_in))


@key_app.command("get")
def key_get(ctx: typer.Context, key_id: str) -> None:
    """Show one key (never its secret).  Example: authbus key get <key_id>"""
    show(ctx, ask(ctx, lambda c: c.admin("get_key", key_id=key_id))["key"])


@key_app.command("list")
def key_list(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(help="Owner (default: you).")] = None) -> None:
    """List a user's keys (never their secrets).  Example: authbus key list --user <user_id>"""
    show(ctx, all_pages(ctx, "list_keys", user_id=user), ("id", "kind", "name", "status", "expires_at"))


@key_app.command("revoke")
def key_revoke(ctx: typer.Context, key_id: str, reason: Reason = None) -> None:
    """Revoke a key.  Example: authbus key revoke <key_id> --reason rotated"""
    command(ctx, "revoke_key", key_id=key_id, reason=reason)


def all_pages(ctx: typer.Context, name: str, /, **fields: Any) -> list[dict[str, Any]]:
    fields = {k: v for k, v in fields.items() if v is not None}

    async def pages(client: AuthbusClient) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        after = None
        while True:
            reply = await client.admin(name, **fields, limit=500, **({"after": after} if after else {}))
            items.extend(reply["items"])
            after = reply["next"]
            if after is None:
                return {"items": items}

    return ask(ctx, pages)["items"]


# base64url may begin with "-": read such a key as the argument it is, not as an unknown option.
KEY_ARGUMENT = {"ignore_unknown_options": True}


@user_app.command("add-public-key", context_settings=KEY_ARGUMENT)
def user_add_public_key(ctx: typer.Context, user_id: str, public_key: str) -> None:
    """Register an Ed25519 public key for challenge login: base64url of its 32 bytes, multibase (b…, z…) or did:key.
    Example: authbus user add-public-key <user_id> did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"""
    command(ctx, "register_public_key", user_id=user_id, public_key=public_key)


@user_app.command("remove-public-key", context_settings=KEY_ARGUMENT)
def user_remove_public_key(ctx: typer.Context, user_id: str, public_key: str) -> None:
    """Remove a registered public key.  Example: authbus user remove-public-key <user_id> <public_key>"""
    command(ctx, "remove_public_key", user_id=user_id, public_key=public_key)


@signing_app.command("create")
def signing_create(
    ctx: typer.Context,
    alg: Annotated[
        str, typer.Option(help="EdDSA, ES256, RS256, or HS256 (a secret for the tenant to mint tokens with).")
    ] = "EdDSA",
    tenant: TenantOption = None,
    private_key_file: Annotated[
        Optional[Path],
        typer.Option(help="Bring your own key: an unencrypted PKCS#8 PEM file of --alg (RSA ≥ 2048 bits, P-256, Ed25519)."),
    ] = None,
) -> None:
    """Create a signing key; an HS256 secret is shown once.  Example: authbus signing-key create --alg HS256 --tenant <id>
    or, with a key of your own: authbus signing-key create --alg RS256 --private-key-file key.pem"""
    private_key = private_key_file.read_text() if private_key_file is not None else None
    command(ctx, "create_signing_key", alg=alg, tenant_id=tenant, private_key=private_key)


@signing_app.command("list")
def signing_list(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """List a tenant's signing keys (never their private halves).  Example: authbus signing-key list --tenant acme"""
    show(ctx, all_pages(ctx, "list_signing_keys", tenant_id=tenant), ("kid", "alg", "status", "created_at"))


@signing_app.command("retire")
def signing_retire(ctx: typer.Context, kid: str) -> None:
    """Stop signing with a key; its tokens verify until they expire.  Example: authbus signing-key retire <kid>"""
    command(ctx, "retire_signing_key", kid=kid)


@signing_app.command("revoke")
def signing_revoke(ctx: typer.Context, kid: str, reason: Reason = None) -> None:
    """Revoke a key: every token it signed is invalid at once.  Example: authbus signing-key revoke <kid> --reason 'key leaked'"""
    command(ctx, "revoke_signing_key", kid=kid, reason=reason)


@session_app.command("list")
def session_list(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(help="User id (default: you).")] = None) -> None:
    """List a user's sessions.  Example: authbus session list --user <user_id>"""
    show(ctx, all_pages(ctx, "list_sessions", user_id=user), ("id", "method", "status", "rotations", "created_at", "expires_at"))


@session_app.command("revoke")
def session_revoke(ctx: typer.Context, session_id: str, reason: Reason = None) -> None:
    """Revoke a session: its refresh token and every access token it issued stop working.  Example: authbus session revoke <session_id> --reason 'stolen phone'"""
    command(ctx, "revoke_session", session_id=session_id, reason=reason)


@app.command()
def login(
    ctx: typer.Context,
    username: str,
    tenant: RequiredTenant,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input instead of a prompt.")] = False,
) -> None:
    """Log in with a password and print an access token and a refresh token.
    Example: authbus login --tenant <tenant_id> alice"""
    _with_password(ctx, "login", username, tenant, password_stdin)


def _password(password_stdin: bool, prompt: str) -> str:
    """From standard input when asked or when it is a pipe (no getpass warning about echo), else a hidden prompt."""
    piped = password_stdin or not sys.stdin.isatty()
    return sys.stdin.readline().rstrip("\n") if piped else typer.prompt(prompt, hide_input=True)


def _with_password(ctx: typer.Context, endpoint: str, username: str, tenant: str, password_stdin: bool) -> None:
    """Login or register: the password from stdin or a prompt, the pair it gets shown."""
    password = _password(password_stdin, "password")
    body = {"tenant_id": tenant, "username": username, "password": password, "source": "authbus cli"}
    show(ctx, ask(ctx, lambda c: c.call(endpoint, body, token="")))


@app.command()
def register(
    ctx: typer.Context,
    username: str,
    tenant: RequiredTenant,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input instead of a prompt.")] = False,
) -> None:
    """Sign yourself up where the tenant's policy allows it (tenant policy --open-registration),
    and print the new session's tokens.  Example: authbus register --tenant <tenant_id> alice"""
    _with_password(ctx, "register", username, tenant, password_stdin)


@app.command()
def refresh(ctx: typer.Context, refresh_token: str) -> None:
    """Trade a refresh token for a new pair; the one given is spent.  Example: authbus refresh rt_…"""
    show(ctx, ask(ctx, lambda c: c.call("refresh", {"refresh_token": refresh_token, "source": "authbus cli"}, token="")))


@app.command()
def redeem(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The recovery or invitation key (rec_… or inv_…).")],
    password_stdin: Annotated[bool, typer.Option(help="Read the new password from standard input.")] = False,
) -> None:
    """Set a password with a recovery or invitation key (single use).  Example: authbus redeem rec_… --password-stdin"""
    password = _password(password_stdin, "new password")
    show(ctx, ask(ctx, lambda c: c.call("redeem", {"token": key, "password": password}, token="")))


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Who the CLI's credential (--token, AUTHBUS_TOKEN or ./.authbus/root.token) acts as.  Example: authbus whoami"""
    if not ctx.obj.token:
        fail("no credential: pass --token, set AUTHBUS_TOKEN, or run where ./.authbus/root.token is", 2)
    reply = ask(ctx, lambda c: c.call("verify", {"token": ctx.obj.token}, token=""))
    if not reply["valid"]:
        fail(f"the credential is not valid: {reply['reason']}", 1)
    show(ctx, {**reply["principal"], "credential": reply["credential"]["id"], "kind_of_credential": reply["credential"]["kind"]})


@app.command("challenge-login")
def challenge_login(
    ctx: typer.Context,
    key_file: Annotated[
        Path, typer.Option(help="An Ed25519 private key: PKCS#8 PEM, as openssl genpkey -algorithm ed25519 writes it.")
    ],
    tenant: RequiredTenant,
) -> None:
    """Log in by signing a challenge with a key registered to the user (or, where the tenant
    takes keypair sign-ups, becoming a user of it).  Example: authbus challenge-login --tenant acme --key-file me.pem"""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from authbus.infra.crypto.keys import b64url

    try:
        private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        fail(f"cannot read an Ed25519 private key from {key_file}: {error}", 2)
    if not isinstance(private, Ed25519PrivateKey):
        fail(f"{key_file} holds no Ed25519 key", 2)
    public = b64url(private.public_key().public_bytes_raw())

    async def login(client: AuthbusClient) -> dict[str, Any]:
        challenge = await client.challenge(tenant, public)
        signature = b64url(private.sign(challenge.encode()))
        return await client.call(
            "challenge.answer", {"challenge": challenge, "signature": signature, "source": "authbus cli"}, token=""
        )

    show(ctx, ask(ctx, login))


@app.command()
def logout(ctx: typer.Context, refresh_token: str) -> None:
    """End the session a refresh token belongs to.  Example: authbus logout rt_…"""
    show(ctx, ask(ctx, lambda c: c.call("logout", {"refresh_token": refresh_token}, token="")))


@app.command()
def verify(ctx: typer.Context, token: str, min_position: Annotated[Optional[int], typer.Option()] = None) -> None:
    """Verify a credential; exits 0 when valid, 1 when not.  Example: authbus verify pat_…"""
    extra = {"min_position": min_position} if min_position is not None else {}
    reply = ask(ctx, lambda c: c.call("verify", {"token": token, **extra}, token=""))
    show(ctx, reply)
    raise typer.Exit(0 if reply["valid"] else 1)


@app.command()
def authorize(
    ctx: typer.Context,
    token: str,
    entity_type: Annotated[Optional[str], typer.Option()] = None,
    operation: Annotated[Optional[str], typer.Option()] = None,
    entity_id: Annotated[Optional[str], typer.Option()] = None,
    domain: Annotated[Optional[str], typer.Option()] = None,
    min_role: Annotated[Optional[str], typer.Option(help="Does it hold a role ranked at least this one?")] = None,
) -> None:
    """May this credential do it, or does it hold a role ranked at least --min-role (or both)?
    Exits 0 when allowed, 1 when not.
    Example: authbus authorize <token> --domain docs --entity-type document --operation read --entity-id 42
    Example: authbus authorize <token> --min-role appAdmin"""
    asked = {"entity_type": entity_type, "operation": operation, "entity_id": entity_id, "domain": domain, "min_role": min_role}
    fields = {k: v for k, v in asked.items() if v is not None}
    reply = ask(ctx, lambda c: c.call("authorize", {"token": token, **fields}, token=""))
    show(ctx, reply)
    raise typer.Exit(0 if reply["allowed"] else 1)


@app.command()
def health(ctx: typer.Context) -> None:
    """Is the instance that answers current?  Exits 0 when it is `ok`, 1 when `degraded`.
    Example: authbus health --json"""
    reply = ask(ctx, lambda c: c.call("health", token=""))
    show(ctx, reply)
    raise typer.Exit(0 if reply["status"] == "ok" else 1)
