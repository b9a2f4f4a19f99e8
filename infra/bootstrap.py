"""The composition root: the KEK is loaded and everything derived from it built once, here,
then handed to the application and the node (nothing is patched in after construction)."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from authbus.domain.signing import SigningKey
from authbus.domain.unit_of_work import TokenTerms
from authbus.infra.application import AuthbusApplication
from authbus.infra.crypto.kek import KEKError, load_kek
from authbus.infra.crypto.key_material import KeyMaterial
from authbus.infra.settings import Settings
from authbus.infra.store import EventStore, store_environment

KEK_CHECK_SPAN = 20  # bootstrap appends its signing key among the first events of the log


def open_application(settings: Settings, create_kek: bool = False) -> AuthbusApplication:
    """The write path over the configured store, with key material from the KEK.

    A KEK other than the store's is refused here, at start, with KEKError: it would open no
    signing key, and every login would fail later with a less helpful message.
    """
    kek = load_kek(settings.kek, settings.default_kek_file, create=create_kek)
    keys = KeyMaterial.from_kek(kek)
    terms = TokenTerms(settings.issuer, settings.audience, settings.access_token_seconds, settings.session_seconds)
    app = AuthbusApplication(keys, store_environment(settings.database_url), terms)
    try:
        check_kek(app, keys)
    except KEKError:
        app.close()
        raise
    return app


def check_kek(store: EventStore, keys: KeyMaterial) -> None:
    """KEKError unless the KEK opens the first signing key in the log (bootstrap's)."""
    for _, event in store.read_events(1, KEK_CHECK_SPAN):
        if isinstance(event, SigningKey.SigningKeyCreated):
            try:
                keys.key_wrap.unwrap(str(event.originator_id), event.sealed_private)
            except InvalidTag:
                raise KEKError("this KEK does not open the store's signing keys: it is not the store's KEK") from None
            return
