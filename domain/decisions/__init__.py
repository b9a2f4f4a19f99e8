"""What each command decides, by area: a function ``(command, actor, uow) -> reply`` that
reads aggregates through the unit of work, changes them, and returns the reply's result.
The actor is re-read from the store first (``access.current_actor``), so a decision never
acts on a credential revoked or a role removed a moment ago."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authbus.domain import commands as c
from authbus.domain.decisions import accounts, issuance, role_catalog, signing_keys, tenancy
from authbus.domain.decisions.access import current_actor
from authbus.domain.policy import Actor
from authbus.domain.unit_of_work import UnitOfWork

Decision = Callable[[Any, Actor, UnitOfWork], dict[str, Any]]

DECISIONS: dict[type[c.Command], Decision] = {
    c.CreateTenant: tenancy.create_tenant,
    c.DisableTenant: tenancy.disable_tenant,
    c.EnableTenant: tenancy.enable_tenant,
    c.RenameTenant: tenancy.rename_tenant,
    c.UpdateTenant: tenancy.update_tenant,
    c.SetTenantPolicy: tenancy.set_tenant_policy,
    c.AddScopes: issuance.add_scopes,
    c.RemoveScopes: issuance.remove_scopes,
    c.RegisterUser: accounts.register_user,
    c.ChangePassword: accounts.change_password,
    c.UpdateUser: accounts.update_user,
    c.DeleteUser: accounts.delete_user,
    c.DisableUser: accounts.disable_user,
    c.EnableUser: accounts.enable_user,
    c.GrantRole: accounts.grant_role,
    c.RevokeRole: accounts.revoke_role,
    c.RegisterPublicKey: accounts.register_public_key,
    c.RemovePublicKey: accounts.remove_public_key,
    c.RedeemKey: accounts.redeem_key,
    c.CreateRole: role_catalog.create_role,
    c.AddRoleScopes: role_catalog.add_role_scopes,
    c.RemoveRoleScopes: role_catalog.remove_role_scopes,
    c.DeleteRole: role_catalog.delete_role,
    c.SetRoleOrder: role_catalog.set_role_order,
    c.CreatePAT: issuance.create_pat,
    c.AddScope: issuance.add_scope,
    c.RemoveScope: issuance.remove_scope,
    c.RevokePAT: issuance.revoke_pat,
    c.ResetPATSecret: issuance.reset_pat_secret,
    c.UpdatePAT: issuance.update_pat,
    c.IssueKey: issuance.issue_key,
    c.RevokeKey: issuance.revoke_key,
    c.RevokeSession: issuance.revoke_session,
    c.CreateSigningKey: signing_keys.create_signing_key,
    c.RetireSigningKey: signing_keys.retire_signing_key,
    c.RevokeSigningKey: signing_keys.revoke_signing_key,
}


def decide(command: c.Command, actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """The command's decision, taken by the actor as the store has it now."""
    return DECISIONS[type(command)](command, current_actor(actor, uow, command.credential_field), uow)
