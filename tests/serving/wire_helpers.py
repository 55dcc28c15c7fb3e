"""Shared pieces of the serving tests: LIBERO-shaped observations, a server subprocess, raw sockets (the test
policies are in tests/fakes.py)."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalkit.core.policy import Policy, PolicyRequest
from evalkit.serving.config import ServeConfig
from evalkit.serving.server import PolicyServer
from tests.helpers import CEILING_S

REPO = Path(__file__).resolve().parents[2]
# `evalkit serve` as installed (the console script next to this interpreter), else the module itself.
_CONSOLE = Path(sys.executable).with_name("evalkit")
SERVE_COMMAND = (
    [str(_CONSOLE), "serve"] if _CONSOLE.exists() else [sys.executable, "-m", "evalkit.serving.cli"]
)


def local_server(policy: Policy, **config) -> PolicyServer:
    """A PolicyServer of `policy` on loopback, on any free port unless `port` is given."""
    return PolicyServer(policy, ServeConfig(**{"port": 0, **config}))


def libero_obs(i: int, prompt: str = "put the bowl on the plate") -> dict:
    rng = np.random.default_rng(1000 + i)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": prompt,
    }


def libero_request(i: int, action_dim: int = 7) -> PolicyRequest:
    return PolicyRequest(
        libero_obs(i), episode_id=f"libero_spatial/0/{i}/7", seed=10_000 + 17 * i, action_dim=action_dim
    )


# `evalkit serve` with the test policies registered, `sleep` among them (a stand-in for a model that takes minutes
# per call on a CPU); run from the repository root
SLEEP_SERVE_COMMAND = [sys.executable, "-m", "tests.fakes", "serve"]


class ServerProcess:
    """`evalkit serve ...` (or another serve `command`) in a subprocess on a free loopback port."""

    def __init__(self, *args: str, command: Sequence[str] = tuple(SERVE_COMMAND), env: dict | None = None):
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        # Server logs go to a file (a pipe could fill up and block the server); O_APPEND so that reading it here
        # never moves the server's write position.
        self.log = tempfile.TemporaryFile("a+")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            [*command, "--port", "0", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"listening on (ws://\S+):(\d+)", line)
            if match:
                self.url, self.port = f"{match.group(1)}:{match.group(2)}", int(match.group(2))
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        self.log.seek(0)
        raise RuntimeError(f"server did not start: {line!r} {self.log.read()}")

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_for_log(self, text: str, timeout: float = CEILING_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.read_log():
            if time.monotonic() > deadline:
                raise AssertionError(f"server never logged {text!r}: {self.read_log()[-2000:]}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self.proc.stdout.close()
        self.log.close()


# ------------------------------------------------------------------ raw sockets (misbehaving clients)


def stalled_connection(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection from `source` that sends half an HTTP request and stalls (slow-loris)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=CEILING_S, source_address=(source, 0))
    sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (reads until it does, or CEILING_S passes)."""
    sock.settimeout(CEILING_S)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


class RawClient:
    """A websocket client by hand (RFC 6455), so that nothing but the socket holds what it sends."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CEILING_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.pending = b""
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._recv()
        self.pending = self.pending.split(b"\r\n\r\n", 1)[1]

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("closed by the server")
        return data

    def _read(self, n: int) -> bytes:
        while len(self.pending) < n:
            self.pending += self._recv()
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def read_frame(self) -> int:
        """The next frame's opcode (2: binary, 1: text, 8: close); its payload is skipped."""
        head = self._read(2)
        n = head[1] & 0x7F
        if n >= 126:
            n = int.from_bytes(self._read(2 if n == 126 else 8), "big")
        self._read(n)
        return head[0] & 0x0F

    def send_frame(self, payload: bytes) -> bool:
        """One binary frame, 1 MiB at a time (a zero masking key leaves the payload as it is); False if the
        server cut the connection before all of it was sent."""
        view = memoryview(payload)
        try:
            self.sock.sendall(bytes([0x82, 0x80 | 127]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0")
            for start in range(0, len(payload), 1 << 20):
                self.sock.sendall(view[start : start + (1 << 20)])
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True


def server_side(srv, sock: socket.socket):
    """The server's end (an `AdmittedConnection`) of the client socket `sock`, None once the server let it go."""
    port = sock.getsockname()[1]
    return next((c for c in srv.server.admission.open if c.remote_address[1] == port), None)
