"""The ``authbus`` command: run it (``server``) and administer it over NATS (``admin``)."""

from authbus.infra.cli import admin, contexts, server  # noqa: F401  (each registers its commands on app)
from authbus.infra.cli.common import app


def main() -> None:
    app()
