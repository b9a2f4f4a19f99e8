"""Type-checked, never run (tests/integration/test_lint.py): the node is what the handlers
ask of a backend (handlers/backend.py's Backend), attribute for attribute."""

from authbus.handlers.backend import Backend
from authbus.infra.node import Node


def as_backend(node: Node) -> Backend:
    return node
