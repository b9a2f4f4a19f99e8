"""The snapshot keeps credentials as columns (projections/read_model.py): every field of a
credential goes through them, and what comes back is the credential that went in."""

from __future__ import annotations

import pytest

from authbus.projections.read_model import CredentialView, credential_columns, credentials_from
from tests.unit.world import make_world


def fields(credential: CredentialView) -> dict[str, object]:
    return {name: getattr(credential, name) for name in CredentialView.__slots__ if name != "view"}


def test_every_field_of_a_credential_is_a_column_or_rebuilt():
    columns = credential_columns([])
    assert set(columns) - {"ids"} | {"id", "created"} == set(CredentialView.__slots__)


def test_credentials_come_back_as_they_went_in_with_their_owners_lists():
    model = make_world().model
    credentials, by_owner = credentials_from(credential_columns(model.credentials.values()))
    assert list(credentials) == list(model.credentials)
    for key, credential in model.credentials.items():
        restored = fields(credentials[key])
        assert restored == fields(credential)
        assert key in by_owner[credential.owner_id]


def test_columns_of_different_lengths_are_refused():
    columns = credential_columns(make_world().model.credentials.values())
    columns["name"] = columns["name"][:-1]
    with pytest.raises(ValueError):
        credentials_from(columns)
