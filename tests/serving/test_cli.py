"""`evalkit serve` as a command: start-up line, health check, API key, clean shutdown, one-line errors."""

import signal
import subprocess
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from evalkit.policies.simple import ZeroPolicy
from evalkit.serving.server import ServerThread
from evalkit.wire import EPISODE_ID_FIELD, SEED_FIELD
from evalkit.wire.msgpack_numpy import packb, unpackb
from tests.serving.wire_helpers import (
    CEILING_S,
    REPO,
    SERVE_COMMAND,
    SLEEP_SERVE_COMMAND,
    ServerProcess,
    libero_obs,
    local_server,
)

# slow: evalkit serve in subprocesses
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]


KEY = "canary-Zq81-serve-key"
HINT = (
    "evalkit serve: note: a key given with --api-key is visible to other users (ps) while this runs; "
    "set EVALKIT_API_KEY instead"
)


def test_serve_with_api_key_and_sigterm():
    with ServerProcess("--policy", "zero", "--api-key", KEY, "--max-batch", "4") as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=CEILING_S) as resp:
            assert resp.read() == b"OK\n"
        with pytest.raises(InvalidStatus) as info:
            connect(server.url, open_timeout=CEILING_S).close()
        assert info.value.response.status_code == 401
        with connect(
            server.url, additional_headers={"Authorization": f"Api-Key {KEY}"}, open_timeout=CEILING_S
        ) as ws:
            assert isinstance(ws.recv(timeout=CEILING_S), bytes)  # the metadata frame
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(CEILING_S) == 0
        log = server.read_log()
    # The key shows in ps while the server runs: one line says so, and the key itself is never printed.
    assert log.splitlines().count(HINT) == 1 and KEY not in log


def test_api_key_from_the_environment_gives_no_hint():
    with ServerProcess("--policy", "zero", env={"EVALKIT_API_KEY": KEY}) as server:
        with pytest.raises(InvalidStatus):
            connect(server.url, open_timeout=CEILING_S).close()
        with connect(
            server.url, additional_headers={"Authorization": f"Api-Key {KEY}"}, open_timeout=CEILING_S
        ) as ws:
            assert isinstance(ws.recv(timeout=CEILING_S), bytes)
        log = server.read_log()
    assert "--api-key" not in log and KEY not in log


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE_COMMAND, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "no-such-policy"], "unknown policy"),
        (["--policy", "zero", "--max-batch", "0"], "--max-batch must be at least 1"),
        (["--policy", "zero", "--max-size", "10"], "--max-size must be at least 1024"),
        (["--policy", "zero", "--max-connections", "0"], "--max-connections must be at least 1"),
        (
            ["--policy", "zero", "--max-connections-per-address", "0"],
            "--max-connections-per-address must be at least 1",
        ),
        (["--policy", "zero", "--handshake-timeout", "-1"], "--handshake-timeout must be positive"),
        (
            ["--policy", "zero", "--max-buffered", "2000", "--max-size", "4000"],
            "--max-buffered (2000) must be",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    run = _serve("--port", "0", *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_port_in_use():
    with ServerThread(local_server(ZeroPolicy(7))) as srv:
        run = _serve("--policy", "zero", "--port", str(srv.port))
    assert run.returncode == 2
    assert f"cannot listen on 127.0.0.1:{srv.port}" in run.stderr and "Traceback" not in run.stderr


def test_port_out_of_range():
    run = _serve("--policy", "zero", "--port", "70000")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [
        "evalkit: error: --port must be between 0 and 65535, got 70000"
    ]


def test_all_interfaces_without_api_key_warns_once():
    with ServerProcess("--policy", "zero", "--host", "0.0.0.0", env={"EVALKIT_API_KEY": ""}) as server:
        server.wait_for_log("listening on 0.0.0.0 without an API key")
        warnings = [line for line in server.read_log().splitlines() if "without an API key" in line]
        assert len(warnings) == 1
    with ServerProcess("--policy", "zero", "--host", "0.0.0.0", env={"EVALKIT_API_KEY": "k"}) as server:
        assert "without an API key" not in server.read_log()
    with ServerProcess("--policy", "zero", env={"EVALKIT_API_KEY": ""}) as server:  # loopback: no warning
        assert "without an API key" not in server.read_log()


def _sleep_server(seconds: float) -> ServerProcess:
    """`evalkit serve` of a policy whose every call takes `seconds` (as a large model on a CPU)."""
    return ServerProcess(
        "--policy", "sleep", "--no-warmup", command=SLEEP_SERVE_COMMAND, env={"SLEEP_POLICY_S": str(seconds)}
    )


def _send_and_wait_for_batch(server: ServerProcess):
    ws = connect(server.url, open_timeout=CEILING_S, max_size=None)
    ws.recv(timeout=CEILING_S)  # metadata
    ws.send(packb({**libero_obs(0), SEED_FIELD: 1, EPISODE_ID_FIELD: "libero_spatial/0/0/0"}))
    server.wait_for_log("sleep policy: computing a batch of 1")
    return ws


def test_sigint_with_a_batch_in_flight_exits_after_the_grace_period():
    """The policy call would take an hour: the server abandons it after its 5 s grace and exits 0."""
    with _sleep_server(3600) as server:
        ws = _send_and_wait_for_batch(server)
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(CEILING_S) == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=CEILING_S)
        assert "stopping" in server.read_log() and "abandoned the running batch" in server.read_log()


def test_sigint_lets_a_short_batch_answer():
    with _sleep_server(1.5) as server:
        ws = _send_and_wait_for_batch(server)
        server.proc.send_signal(signal.SIGINT)
        server.wait_for_log("no new connections")
        # It stopped accepting at once, and the running batch answered within the grace period.
        with pytest.raises(ConnectionRefusedError):
            connect(server.url, open_timeout=CEILING_S)
        reply = unpackb(ws.recv(timeout=CEILING_S))
        assert reply["actions"].shape == (10, 7)
        assert server.proc.wait(CEILING_S) == 0


def test_second_sigint_exits_at_once():
    """A second Ctrl-C exits with 130 at once; the graceful path would exit 0 after its grace period."""
    with _sleep_server(3600) as server:
        _send_and_wait_for_batch(server)
        server.proc.send_signal(signal.SIGINT)
        server.wait_for_log("stopping")
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(CEILING_S) == 128 + signal.SIGINT
        assert "abandoned the running batch" not in server.read_log()
