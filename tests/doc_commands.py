"""The command lines of the docs, as a newcomer copies them (issue 19: docs a copy-paste
can trust). tests/e2e/test_readme.py runs them; tests/integration/test_deploy.py and
tests/e2e/test_backup_restore.py take the container lines of docs/operations.md apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"


def blocks(doc: Path, section: str | None = None, language: str = "") -> list[str]:
    """The fenced blocks of ``doc`` in ``language`` ("" for a plain one), or of one
    ``## section`` of it, its subsections included."""
    body = doc.read_text()
    if section is not None:
        body = body[body.index(f"## {section}\n") :]
        end = body.find("\n## ", 1)
        body = body if end < 0 else body[:end]
    found: list[tuple[str, list[str]]] = []  # each block's language and lines
    open_block = False
    for line in body.splitlines():
        if line.startswith("```"):
            open_block = not open_block
            if open_block:
                found.append((line[3:].strip(), []))
        elif open_block:
            found[-1][1].append(line)
    return ["\n".join(lines) + "\n" for tag, lines in found if tag == language]


def command_lines(doc: Path, section: str | None = None) -> list[str]:
    """The lines of the plain fenced blocks (a language-tagged block is code or
    configuration, not commands)."""
    return [line for block in blocks(doc, section) for line in block.splitlines() if line.strip()]


def split_comment(line: str) -> tuple[str, str]:
    """A line's command and its comment (after the first ``#`` that starts a word)."""
    parts = re.split(r"(?:^|\s)#\s?", line, maxsplit=1)
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")


def captures(comment: str) -> list[str]:
    """What a line's comment says to keep for later lines: ``→ tenant_id`` or ``→ token, pat_id``."""
    named = re.search(r"→ (\w+(?:, \w+)*)", comment)
    return named[1].split(", ") if named else []


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each placeholder (or fixed port) replaced; a ``<placeholder>`` nothing filled fails."""
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    leftover = re.findall(r"<\w+>", text)
    assert not leftover, f"{text}: nothing earlier gives {leftover}"
    return text
