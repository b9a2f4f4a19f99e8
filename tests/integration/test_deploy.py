"""The container deployment — Dockerfile and compose.yaml — checked against the code.

No container engine is assumed where the suite runs (the machine this was written on has
none), so nothing here builds the image or starts a service: the tests parse the two files
and hold them against what authbus really reads — the fields of ``Settings``, the
``envvar=`` of every CLI option, and the commands and options ``authbus --help`` lists — and
check that the services wire together (depends_on, URLs, shared store and KEK, volumes).
docs/operations.md must name every variable, too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml  # PyYAML, from the `test` extra

from authbus.infra.settings import Settings
from tests.doc_commands import OPERATIONS, command_lines, split_comment

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "authbus.infra"]
VARIABLE = re.compile(r"\bAUTHBUS_[A-Z0-9_]+\b")
NATS_DEFAULT_PORT = 4222
POSTGRES_DEFAULT_PORT = 5432
SHELL_PREFIXES = {"{", "(", "!", "exec", "then", "else", "do"}


# ---------------------------------------------------------------- what authbus reads


@cache
def cli_variables() -> frozenset[str]:
    """Every ``envvar=`` of every option of every ``authbus`` command, sub-apps included."""
    from authbus.infra.cli import app

    found: set[str] = set()

    def walk(command: Any) -> None:  # a click command (typer vendors click): duck-typed
        for param in command.params:
            envvar = param.envvar
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return frozenset(found)


def settings_variables() -> frozenset[str]:
    return frozenset(f"AUTHBUS_{f.name.upper()}" for f in dataclasses.fields(Settings))


def known_variables() -> frozenset[str]:
    return settings_variables() | cli_variables()


@cache
def help_text(*path: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHBUS_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    done = subprocess.run([*CLI, *path, "--help"], check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"`authbus {' '.join(path)} --help` failed: {done.stderr}"
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)


# ---------------------------------------------------------------- the files


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(part[0].upper(), part[1] if len(part) > 1 else "") for line in joined.splitlines() if (part := line.split(None, 1))]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def image_default(instruction: str) -> list[str]:
    found = [args for name, args in final_stage() if name == instruction]
    assert found, f"the Dockerfile's final stage has no {instruction}"
    return json.loads(found[-1])  # exec form: a JSON array


def healthcheck_argv() -> list[str]:
    found = [args for name, args in final_stage() if name == "HEALTHCHECK"]
    assert found, "the Dockerfile has no HEALTHCHECK"
    _, cmd, test = found[-1].partition(" CMD ")
    assert cmd, "HEALTHCHECK must run a CMD (not NONE)"
    return json.loads(test)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path → (volume or host path, read-only)."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            found[volume["target"]] = (volume.get("source", ""), bool(volume.get("read_only")))
        else:
            source, target, *mode = volume.split(":")
            found[target] = (source, "ro" in (mode[0].split(",") if mode else []))
    return found


def authbus_services() -> dict[str, dict[str, Any]]:
    """The services that run the image this Dockerfile builds."""

    def context(build: Any) -> Any:
        return build.get("context") if isinstance(build, dict) else build

    return {name: s for name, s in services().items() if context(s.get("build")) in (".", "./")}


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: an entrypoint set in compose drops the image's CMD."""
    if "entrypoint" in service:
        return [*as_list(service["entrypoint"]), *as_list(service.get("command") or [])]
    command = service["command"] if "command" in service else image_default("CMD")
    return [*image_default("ENTRYPOINT"), *as_list(command)]


def as_list(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value)


def invocations(service: dict[str, Any]) -> list[list[str]]:
    """Every ``authbus …`` the container runs, as argv after ``authbus``; ``sh -c`` scripts
    are split into simple commands at their operators (``||``, ``&&``, ``;``, ``>``, …)."""
    words = argv(service)
    if words[0] == "authbus":
        return [words[1:]]
    if words[0] in ("sh", "/bin/sh", "bash", "/bin/bash") and words[1] == "-c":
        lexer = shlex.shlex(words[2], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        found, current = [], []
        for token in [*lexer, ";"]:
            if token and all(c in "();<>|&" for c in token):
                while current and (current[0] in SHELL_PREFIXES or re.match(r"\w+=", current[0])):  # or NAME=value
                    current.pop(0)
                if current and current[0] == "authbus":
                    found.append(current[1:])
                current = []
            else:
                current.append(token)
        return found
    return []


def command_path(args: list[str]) -> list[str]:
    """The words before the first option: ``["signing-key", "create"]``."""
    return args[: next((i for i, a in enumerate(args) if a.startswith("-")), len(args))]


def options(args: list[str]) -> dict[str, str | None]:
    """``--name value`` / ``--name=value`` pairs (a flag followed by an option has None)."""
    found: dict[str, str | None] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            following = args[i + 1] if i + 1 < len(args) else None
            found[name] = value if eq else (following if following is not None and not following.startswith("-") else None)
    return found


def serve_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in authbus_services().items() if any(command_path(i) == ["serve"] for i in invocations(s))}


def bootstrap_service() -> tuple[str, dict[str, Any]]:
    found = [(name, s) for name, s in authbus_services().items() if any(command_path(i) == ["bootstrap"] for i in invocations(s))]
    assert len(found) == 1, f"exactly one service should bootstrap, not {[name for name, _ in found]}"
    return found[0]


def setting(service: dict[str, Any], option: str, variable: str) -> str | None:
    """What the authbus command in this service gets for a setting: its flag, else the variable."""
    for args in invocations(service):
        value = options(args).get(option)
        if value is not None:
            return value
    return environment(service).get(variable)


def nats_service() -> tuple[str, dict[str, Any]]:
    found = [(n, s) for n, s in services().items() if str(s.get("image", "")).startswith("nats:")]
    assert len(found) == 1
    return found[0]


def nats_flag(names: tuple[str, ...]) -> str | None:
    args = as_list(nats_service()[1].get("command") or [])
    for i, arg in enumerate(args):
        if arg in names:
            return args[i + 1] if i + 1 < len(args) else ""
    return None


# ---------------------------------------------------------------- (a) variables


def test_every_authbus_variable_in_compose_and_the_dockerfile_is_one_authbus_reads() -> None:
    used = {
        "compose.yaml": set(VARIABLE.findall((ROOT / "compose.yaml").read_text())),
        "Dockerfile": set(VARIABLE.findall((ROOT / "Dockerfile").read_text())),
    }
    assert used["compose.yaml"], "compose.yaml configures authbus through AUTHBUS_* variables"
    unknown = {where: sorted(names - known_variables()) for where, names in used.items() if names - known_variables()}
    assert not unknown, f"not read by authbus (Settings fields or CLI envvars): {unknown}"


def test_the_known_variables_are_collected_from_the_code() -> None:
    # Guards the collection itself: a walk that found nothing would pass the test above.
    assert {
        "AUTHBUS_NATS_URL",
        "AUTHBUS_DATABASE_URL",
        "AUTHBUS_KEK",
        "AUTHBUS_KEK_FILE",
        "AUTHBUS_DATA_DIR",
    } <= settings_variables()
    assert {"AUTHBUS_TOKEN", "AUTHBUS_NATS_PORT", "AUTHBUS_KEK_FILE"} <= cli_variables()


def test_every_service_environment_loads_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in authbus_services().values():
        for key in [k for k in os.environ if k.startswith("AUTHBUS_")]:
            monkeypatch.delenv(key)
        for key, value in environment(service).items():
            monkeypatch.setenv(key, value)
        Settings.load()  # a number that is not one, say, would raise here


def test_every_setting_loads_from_the_environment_as_its_declared_type(monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"float": ("2.5", 2.5), "int": ("7", 7), "bool": ("off", False), "Path": ("/srv/a", Path("/srv/a"))}
    for f in dataclasses.fields(Settings):
        kind = str(f.type).removesuffix(" | None")
        text, expected = given.get(kind, ("plain", "plain"))
        monkeypatch.setenv(f"AUTHBUS_{f.name.upper()}", text)
        assert getattr(Settings.load(), f.name) == expected, f"{f.name}: {f.type}"
        monkeypatch.delenv(f"AUTHBUS_{f.name.upper()}")


def test_operations_doc_describes_every_variable() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(name for name in known_variables() if f"`{name}`" not in text)
    assert not missing, f"docs/operations.md does not describe {missing}"


# ---------------------------------------------------------------- (b) commands


def assert_real_invocation(where: str, args: list[str]) -> None:
    words = command_path(args)
    assert words, f"{where}: `authbus {' '.join(args)}` names no command"
    for n in range(1, len(words) + 1):  # the command, the words after it its arguments
        path = words[:n]
        text = help_text(*path)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        if "COMMAND" not in usage:
            break
    assert f" {' '.join(path)} [OPTIONS]" in usage and "COMMAND" not in usage, (
        f"{where}: `authbus {' '.join(words)}` is not a command"
    )
    for option in options(args):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{where}: `authbus {' '.join(path)}` has no {option}"


def test_every_authbus_invocation_is_a_real_command_with_real_options() -> None:
    checked = 0
    for name, service in authbus_services().items():
        for args in invocations(service):
            assert_real_invocation(name, args)
            checked += 1
    assert checked >= 3, "expected bootstrap and at least two serve instances"


def test_the_image_runs_authbus_serve_by_default() -> None:
    assert image_default("ENTRYPOINT") == ["authbus"]
    assert image_default("CMD") == ["serve"]


def test_the_invocation_parser_sees_through_shell_wrappers() -> None:
    service = {"entrypoint": ["sh", "-c", "test -s /x || exec authbus bootstrap --token-file /x > /dev/null; authbus serve"]}
    assert invocations(service) == [["bootstrap", "--token-file", "/x"], ["serve"]]
    assert invocations({"entrypoint": ["sh", "-c", 'T="$(cat /t)" authbus tenant create a']}) == [["tenant", "create", "a"]]


# ---------------------------------------------------------------- (c) wiring


def test_every_dependency_exists_and_its_condition_can_be_met() -> None:
    for name, service in services().items():
        for target, condition in depends_on(service).items():
            assert target in services(), f"{name} depends on {target}, which is not a service"
            other = services()[target]
            if condition == "service_healthy":
                has_check = "healthcheck" in other or (target in authbus_services() and healthcheck_argv())
                assert has_check and not (other.get("healthcheck") or {}).get("disable"), (
                    f"{target} has no healthcheck for {name} to wait on"
                )
            elif condition == "service_completed_successfully":
                assert str(other.get("restart", "no")) == "no", f"{target} must be one-shot for {name} to wait on its exit"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"


def test_there_are_two_serve_instances_after_the_store_is_ready() -> None:
    serving = serve_services()
    bootstrap_name, _ = bootstrap_service()
    nats_name, _ = nats_service()
    assert len(serving) >= 2, "run at least two instances: the queue group shares the load"
    for name, service in serving.items():
        deps = depends_on(service)
        assert deps.get(bootstrap_name) == "service_completed_successfully", name
        assert deps.get(nats_name) == "service_healthy", name
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        assert service.get("stop_grace_period"), f"{name}: SIGTERM drains; give it time"


def test_serve_instances_use_bootstraps_image_store_and_kek() -> None:
    _, bootstrap = bootstrap_service()
    database = setting(bootstrap, "--database-url", "AUTHBUS_DATABASE_URL")
    kek_file = setting(bootstrap, "--kek-file", "AUTHBUS_KEK_FILE")
    assert database and kek_file, "bootstrap needs the store and the KEK"
    for name, service in serve_services().items():
        assert (service.get("image"), service.get("build")) == (bootstrap.get("image"), bootstrap.get("build")), name
        assert setting(service, "--database-url", "AUTHBUS_DATABASE_URL") == database, name
        assert setting(service, "--kek-file", "AUTHBUS_KEK_FILE") == kek_file, name


def test_the_kek_is_made_where_bootstrap_and_serve_read_it() -> None:
    bootstrap_name, bootstrap = bootstrap_service()
    kek_file = setting(bootstrap, "--kek-file", "AUTHBUS_KEK_FILE")
    assert kek_file
    makers = [
        n for n, s in authbus_services().items() if n != bootstrap_name and kek_file in " ".join(argv(s)) and not invocations(s)
    ]
    assert len(makers) == 1, f"one one-shot service should write {kek_file}"
    assert depends_on(bootstrap).get(makers[0]) == "service_completed_successfully"
    secrets_dir = str(Path(kek_file).parent)
    volume, read_only = mounts(services()[makers[0]])[secrets_dir]
    assert not read_only
    assert mounts(bootstrap)[secrets_dir] == (volume, False)
    token_files = [options(i)["--token-file"] for i in invocations(bootstrap) if "--token-file" in options(i)]
    assert token_files and all(str(Path(t).parent) == secrets_dir for t in token_files), "keep root's token in the secrets volume"
    for name, service in serve_services().items():
        assert mounts(service).get(secrets_dir) == (volume, True), f"{name} should mount {volume} read-only at {secrets_dir}"


def test_each_serve_instance_keeps_its_snapshot_on_a_volume_of_its_own() -> None:
    sources = []
    for name, service in serve_services().items():
        data_dir = environment(service).get("AUTHBUS_DATA_DIR")
        assert data_dir, name
        assert data_dir in mounts(service), f"{name}: {data_dir} is not a volume"
        sources.append(mounts(service)[data_dir][0])
    assert len(set(sources)) == len(sources)


def test_every_named_volume_is_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for source, _ in mounts(service).values():
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_the_nats_url_is_the_nats_service_with_jetstream() -> None:
    nats_name, nats = nats_service()
    port = int(nats_flag(("-p", "--port", "-port")) or NATS_DEFAULT_PORT)
    assert nats_flag(("-js", "--jetstream", "-jetstream")) is not None, "the event feed needs JetStream"
    store_dir = nats_flag(("-sd", "--store_dir", "-store_dir"))
    assert store_dir and store_dir in mounts(nats), "JetStream's store should be on a volume"
    monitor = nats_flag(("-m", "--http_port", "-http_port"))
    assert monitor and f":{monitor}/healthz" in " ".join(as_list(nats["healthcheck"]["test"]))
    for name, service in serve_services().items():
        url = urlsplit(setting(service, "--nats-url", "AUTHBUS_NATS_URL") or "")
        assert (url.scheme, url.hostname, url.port or NATS_DEFAULT_PORT) == ("nats", nats_name, port), name


def test_the_database_url_is_the_postgres_service() -> None:
    found = [(n, s) for n, s in services().items() if str(s.get("image", "")).startswith("postgres:")]
    assert len(found) == 1
    postgres_name, postgres = found[0]
    env = environment(postgres)
    _, bootstrap = bootstrap_service()
    url = urlsplit(setting(bootstrap, "--database-url", "AUTHBUS_DATABASE_URL") or "")
    assert url.scheme in ("postgresql", "postgres")
    assert (url.hostname, url.port or POSTGRES_DEFAULT_PORT) == (postgres_name, POSTGRES_DEFAULT_PORT)
    assert url.username == env["POSTGRES_USER"]
    assert url.password == env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == env.get("POSTGRES_DB", env["POSTGRES_USER"])
    assert env["POSTGRES_USER"] in " ".join(as_list(postgres["healthcheck"]["test"]))


def test_compose_leaves_no_dollar_to_be_interpolated_by_accident() -> None:
    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    for text in strings(compose()):
        assert not re.search(r"\$(?![{$])", text.replace("$$", "")), f"compose would interpolate $ in {text!r}"


# ---------------------------------------------------------------- (d) the Dockerfile


def test_the_image_is_slim_python_and_installs_the_project_without_edit_mode() -> None:
    bases = [args.split()[0] for name, args in dockerfile() if name == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    runs = " ".join(args for name, args in dockerfile() if name == "RUN")
    assert "install" in runs and not re.search(r"\s(-e|--editable)\s", runs)


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = [args.strip() for name, args in final_stage() if name == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "10001" or any("10001" in args for name, args in final_stage() if name == "RUN")


def test_the_image_sets_pythonunbuffered() -> None:
    env = " ".join(args for name, args in final_stage() if name == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)


def test_the_healthcheck_pings_the_service_on_the_configured_nats() -> None:
    test = healthcheck_argv()
    assert test[:2] == ["python", "-c"]
    compile(test[2], "<HEALTHCHECK>", "exec")  # one line of Python that at least parses
    assert "AUTHBUS_NATS_URL" in test[2] and "$SRV.PING.authbus" in test[2]
    options = next(args for name, args in final_stage() if name == "HEALTHCHECK")
    assert re.search(r"--timeout=\d+s", options)


# ---------------------------------------------------------------- (e) the container lines of operations.md
#
# They can't run here (no container engine); tests/e2e/test_backup_restore.py runs what
# they run in the postgres container, and tests/e2e/test_readme.py the plain `authbus` lines.

# `docker compose <verb> …` as far as the shell takes it: to a redirect or the end of a `$( … )`.
COMPOSE_CALL = re.compile(r"""docker compose ((?:'[^']*'|"[^"]*"|[^<>)'"])*)""")
VALUED_OPTIONS = {"--entrypoint", "-e", "--env", "-u", "--user", "-w", "--workdir"}


@dataclass(frozen=True)
class ComposeCall:
    line: str
    verb: str
    services: list[str]
    inner: list[str]  # what exec or run runs in the container


def compose_calls() -> list[ComposeCall]:
    found = []
    for line in command_lines(OPERATIONS):
        command, _ = split_comment(line)
        for text in COMPOSE_CALL.findall(command):
            verb, *rest = shlex.split(text)
            entrypoint: list[str] = []
            named: list[str] = []
            inner: list[str] = []
            i = 0
            while i < len(rest):
                if rest[i].startswith("-"):
                    if rest[i] == "--entrypoint":
                        entrypoint = [rest[i + 1]]
                    i += 2 if rest[i] in VALUED_OPTIONS else 1
                elif verb in ("exec", "run"):
                    named, inner = [rest[i]], [*entrypoint, *rest[i + 1 :]]
                    break
                else:
                    named.append(rest[i])
                    i += 1
            found.append(ComposeCall(line, verb, named, inner))
    return found


def test_the_container_lines_of_operations_are_read_as_compose_would() -> None:
    calls = compose_calls()
    assert {call.verb for call in calls} == {"up", "exec", "run", "stop", "build", "ps"}
    (restore,) = [call for call in calls if "pg_restore" in call.inner]
    assert restore.services == ["postgres"] and restore.inner[:3] == ["pg_restore", "-U", "authbus"]
    (kek,) = [call for call in calls if call.verb == "run"]
    assert kek.services == ["kek"] and kek.inner == ["sh", "-c", "umask 077; cat > /secrets/kek"]


def test_every_container_line_of_operations_names_real_services_and_mounted_paths() -> None:
    checked: list[list[str]] = []
    for call in compose_calls():
        for name in call.services:
            assert name in services(), f"{call.line}: no service {name}"
        if not call.inner:
            continue
        service = services()[call.services[0]]
        mounted = mounts(service)
        script = " ".join(call.inner)
        for path in re.findall(r"(?<![\w.])/[\w./-]+", script):
            under = [target for target in mounted if path == target or path.startswith(target.rstrip("/") + "/")]
            assert under, f"{call.line}: {path} is on no volume of {call.services[0]}"
            written = re.search(rf">\s*{re.escape(path)}\b", script)
            assert not (written and mounted[under[0]][1]), f"{call.line}: {path} is written on a read-only mount"
        for args in invocations({"entrypoint": call.inner}):
            assert_real_invocation(call.line, args)
            checked.append(args)
        if call.inner[0] in ("pg_dump", "pg_restore"):
            env = environment(service)
            assert pg_user_and_database(call.inner[1:]) == (env["POSTGRES_USER"], env["POSTGRES_DB"]), call.line
    assert checked == [["tenant", "create", "acme-prod"]]


def pg_user_and_database(words: list[str]) -> tuple[str | None, str | None]:
    """``-U user`` and the database (``-d name``, else the last word that is no option) of a pg_dump or pg_restore."""
    given: dict[str, str] = {}
    rest: list[str] = []
    words = iter(words)
    for word in words:
        if word in ("-U", "-d"):
            given[word] = next(words)
        elif not word.startswith("-"):
            rest.append(word)
    return given.get("-U"), given.get("-d") or (rest[-1] if rest else None)
