"""Consoles made on first use: rich costs some 25–50 ms to import, which ``authbus --help``
and a command's start need not pay before they print."""

from __future__ import annotations

from typing import Any


class LazyConsole:
    """A ``rich.console.Console`` with these options, built the first time it is used."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)
