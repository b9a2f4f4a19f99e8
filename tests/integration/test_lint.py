"""The README's test line also runs the linters: ruff's lint and format over the whole tree,
and mypy, strict, over the pure core (domain/ and projections/; pyproject.toml), and over
the check that the node is a handlers' Backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ("domain", "projections")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def test_ruff_finds_nothing():
    lint = run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]


def test_the_tree_is_formatted():
    formatted = run("ruff", "format", "--check", ".")
    assert formatted.returncode == 0, f"run `ruff format .`:\n{formatted.stdout[-4000:]}"


def test_the_core_type_checks_strictly(tmp_path):
    # The folders are packages of `authbus` only once installed (pyproject's package-dir),
    # through an import hook mypy does not follow: it reads them through a tree of links.
    package = tmp_path / "authbus"
    package.mkdir()
    for folder in (*CORE, "handlers", "infra"):
        (package / folder).symlink_to(ROOT / folder, target_is_directory=True)
    checked = run(
        "mypy",
        *(arg for folder in CORE for arg in ("-p", f"authbus.{folder}")),
        *("-m", "node_is_a_backend"),
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
        env={"MYPYPATH": f"{tmp_path}:{Path(__file__).parent}", "PATH": ""},
    )
    assert checked.returncode == 0, checked.stdout[-4000:]
