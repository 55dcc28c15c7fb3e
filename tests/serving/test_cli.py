"""`evalkit serve` as a command: start-up line, health check, API key, clean shutdown, one-line errors."""

import signal
import subprocess
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from evalkit.policies.simple import ZeroPolicy
from evalkit.serving.server import PolicyServer, ServerThread
from tests.serving.wire_helpers import REPO, SERVE_COMMAND, ServerProcess


def test_serve_with_api_key_and_sigterm():
    with ServerProcess("--policy", "zero", "--api-key", "abc", "--max-batch", "4") as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as resp:
            assert resp.read() == b"OK\n"
        with pytest.raises(InvalidStatus) as info:
            connect(server.url, open_timeout=5).close()
        assert info.value.response.status_code == 401
        with connect(server.url, additional_headers={"Authorization": "Api-Key abc"}, open_timeout=5) as ws:
            assert isinstance(ws.recv(timeout=5), bytes)  # the metadata frame
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE_COMMAND, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "no-such-policy"], "unknown policy"),
        (["--policy", "zero", "--max-batch", "0"], "--max-batch must be at least 1"),
        (["--policy", "zero", "--max-size", "10"], "--max-size must be at least 1024"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    run = _serve("--port", "0", *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_port_in_use():
    with ServerThread(PolicyServer(ZeroPolicy(7), port=0)) as srv:
        run = _serve("--policy", "zero", "--port", str(srv.port))
    assert run.returncode == 2
    assert f"cannot listen on 127.0.0.1:{srv.port}" in run.stderr and "Traceback" not in run.stderr
