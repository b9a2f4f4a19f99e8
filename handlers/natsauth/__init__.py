"""NATS nkeys, xkeys and JWTs: the wire pieces of a nats-server *auth callout* responder.

nats-server (non-operator mode, ``authorization { auth_callout { ... } }``) hands every
connecting client to a service: it publishes a JWT of type ``authorization_request``, signed
by its own server nkey, on ``$SYS.REQ.USER.AUTH`` and expects back a JWT of type
``authorization_response`` that either carries an error or embeds a ``user`` JWT signed by
the configured issuer account.  With ``xkey`` configured, both directions may be sealed
with curve25519 boxes.

Why this exists instead of the ``nkeys`` package: nkeys 0.2.1 for Python knows no curve
('X') keys and cannot verify with a bare public key, and there is no Python port of the Go
``nats-io/jwt`` library.  Everything here follows the Go reference implementations
(nats-io/nkeys strkey.go and xkeys.go, nats-io/jwt v2 claims.go, header.go, decoder.go,
user_claims.go and authorization_claims.go, nats-server server/auth_callout.go), with
PyNaCl for ed25519 and NaCl boxes.
"""
