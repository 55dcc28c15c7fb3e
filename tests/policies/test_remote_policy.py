"""The ws:// client adapter against real loopback servers: ours, a minimal openpi-style one, and faults."""

import asyncio
import threading

import numpy as np
import pytest
from websockets.asyncio.server import serve

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyOptions, PolicyUnavailableError
from evalkit.policies.registry import make_policy
from evalkit.policies.remote import RemotePolicy, RemotePolicyError
from evalkit.policies.simple import RandomPolicy, ZeroPolicy
from evalkit.serving.server import ServerThread
from evalkit.wire import EPISODE_ID_FIELD, SEED_FIELD
from evalkit.wire.msgpack_numpy import packb, unpackb
from tests.fakes import EchoPolicy, RaisingPolicy, SleepPolicy, SlowPolicy
from tests.helpers import wait_until
from tests.serving.wire_helpers import CEILING_S, ServerProcess, libero_request, local_server

FAST = {"retries": 2, "backoff_s": 0.05, "timeout_s": 5.0}


class ScriptedServer:
    """A bare openpi-style server: metadata `{}` (as openpi's LIBERO/DROID servers), replies from `reply(obs)`."""

    def __init__(self, reply, metadata=None):
        self.reply = reply
        self.metadata = {} if metadata is None else metadata
        self.requests: list[dict] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _handler(self, ws):
        await ws.send(packb(self.metadata))
        async for message in ws:
            obs = unpackb(message)
            self.requests.append(obs)
            out = self.reply(obs)
            await ws.send(out if isinstance(out, str) else packb(out))

    async def _main(self):
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            self.url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
            self._ready.set()
            await self._stop.wait()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(CEILING_S)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def remote(url: str, **kwargs) -> RemotePolicy:
    return RemotePolicy(
        url,
        embodiment=kwargs.pop("embodiment", "libero"),
        action_dim=kwargs.pop("action_dim", 7),
        **{**FAST, **kwargs},
    )


def test_batch_equals_in_process_policy():
    requests = [libero_request(i) for i in range(12)]
    with ServerThread(local_server(EchoPolicy(), max_wait_ms=20)) as srv, remote(srv.url) as policy:
        got = policy.infer(requests)
        again = policy.infer(requests[:3])
    want = EchoPolicy().infer(requests)
    for a, b in zip(got + again, want + want[:3], strict=True):
        assert a.dtype == np.float32 and a.flags.writeable
        np.testing.assert_array_equal(a, b)


def test_meta_from_server_metadata():
    with ServerThread(local_server(EchoPolicy())) as srv, remote(srv.url) as policy:
        assert policy.meta.name == "remote:echo" and policy.meta.fingerprint == "echo-v1"
        assert policy.meta.cameras == ("observation/image", "observation/wrist_image")
        assert policy.meta.image_size == (224, 224) and policy.meta.action_dim == 7
    with (
        ServerThread(local_server(RandomPolicy(8), embodiment="droid")) as srv,
        remote(srv.url, embodiment="droid", action_dim=8) as policy,
    ):
        assert policy.meta.name == "remote:random" and policy.meta.cameras == ()  # it renders nothing


def test_embodiment_mismatch_refused_on_connect():
    with ServerThread(local_server(EchoPolicy())) as srv:
        with pytest.raises(EvalkitError) as info:
            remote(srv.url, embodiment="droid", action_dim=8)
        assert srv.server.admission.arrived == 1  # refused at once, not retried
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "serves libero observations but the suite is droid" in message
    assert "evalkit serve --embodiment droid" in message


def test_server_restarted_with_another_policy_is_another_identity():
    """zero and random both have fingerprint "none": the served name tells them apart, also mid-run."""
    with ServerThread(local_server(ZeroPolicy(7))) as srv:
        port = srv.port
        policy = remote(srv.url, backoff_s=0.2)
        zero_meta = policy.meta
        policy.infer([libero_request(0)])
    try:
        with ServerThread(local_server(RandomPolicy(7), port=port)) as srv:
            with remote(srv.url) as fresh:
                assert (fresh.meta.name, fresh.meta.fingerprint) == ("remote:random", "none")
            assert (zero_meta.name, zero_meta.fingerprint) == ("remote:zero", "none")
            with pytest.raises(RemotePolicyError, match="now serves a different policy"):
                policy.infer([libero_request(1)])  # its pooled connection is gone: reconnects, sees random
    finally:
        policy.close()


def test_openpi_style_server_wider_actions_and_passthrough():
    """openpi servers send `{}` metadata and may send more action dims (and float64): keep the first action_dim."""
    wide = np.arange(80, dtype=np.float64).reshape(10, 8)
    with ScriptedServer(lambda obs: {"actions": wide, "policy_timing": {"infer_ms": 1.0}}) as srv:
        with remote(srv.url) as policy:
            assert policy.meta.fingerprint == f"remote:{srv.url}" and policy.meta.image_size is None
            assert policy.meta.name == f"remote:{srv.url}"  # openpi's servers send no identity
            req = libero_request(4)
            (chunk,) = policy.infer([req])
        np.testing.assert_array_equal(chunk, wide[:, :7].astype(np.float32))
        sent = srv.requests[0]
        assert sent[SEED_FIELD] == req.seed and sent["prompt"] == req.obs["prompt"]
        assert sent[EPISODE_ID_FIELD] == req.episode_id
        np.testing.assert_array_equal(sent["observation/image"], req.obs["observation/image"])
        np.testing.assert_array_equal(sent["observation/state"], req.obs["observation/state"])


@pytest.mark.parametrize(
    "reply, match",
    [
        ({"actions": np.full((10, 7), np.nan)}, "non-finite"),
        ({"actions": np.zeros(7)}, "shape"),
        ({"actions": np.zeros((10, 6))}, "shape"),
        ({"actions": np.array([["a"] * 7])}, "numeric"),
        ({"action": np.zeros((10, 7))}, "'actions'"),
        ([1, 2], "'actions'"),
        ("Traceback (most recent call last):\nValueError: boom", "ValueError: boom"),
    ],
)
def test_invalid_replies_raise_clear_errors(reply, match):
    with ScriptedServer(lambda obs: reply) as srv, remote(srv.url) as policy:
        with pytest.raises(RemotePolicyError, match=match):
            policy.infer([libero_request(0)])
        assert len(srv.requests) == 1  # a bad answer is not retried


def test_server_error_frame_raises_remote_policy_error():
    with ServerThread(local_server(RaisingPolicy())) as srv, remote(srv.url) as policy:
        with pytest.raises(RemotePolicyError, match=RaisingPolicy.MESSAGE) as info:
            policy.infer([libero_request(0)])
        assert not isinstance(info.value, PolicyUnavailableError)
        assert "Traceback" in str(info.value)


def test_no_server_at_start():
    with ServerThread(local_server(RandomPolicy(7))) as srv:
        url = srv.url
    with pytest.raises(PolicyUnavailableError, match="connect failed 3 times"):
        remote(url)  # bounded retries, not a hang


@pytest.mark.slow
def test_server_killed_mid_run():
    with ServerProcess("--policy", "random") as server:
        policy = remote(server.url, retries=2, backoff_s=0.1)
        try:
            first = policy.infer([libero_request(i) for i in range(4)])
            want = RandomPolicy(7).infer([libero_request(i) for i in range(4)])
            for a, b in zip(first, want, strict=True):
                np.testing.assert_array_equal(a, b)
            server.kill()
            with pytest.raises(PolicyUnavailableError, match="failed 3 times"):
                policy.infer([libero_request(i) for i in range(4)])  # bounded retries, not a hang
        finally:
            policy.close()


def test_slow_server_times_out(caplog):
    slow = SlowPolicy()
    with ServerThread(local_server(slow)) as srv:
        try:
            policy = remote(srv.url, timeout_s=0.3, retries=1)
            with pytest.raises(PolicyUnavailableError, match=r"last: timed out after 0.3 s"):
                policy.infer([libero_request(0)])
            policy.close()
        finally:
            slow.release.set()
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "evalkit.remote" and r.levelname == "WARNING"
    ]
    # both attempts waited out their timeout
    assert warnings == [f"request {srv.url} timed out after 0.3 s (attempt {k}/2)" for k in (1, 2)]


def test_retry_after_a_timeout_is_computed_once():
    """The retry of a timed-out request waits for the server's running computation instead of a second one."""
    slow = SlowPolicy()
    with ServerThread(local_server(slow, max_wait_ms=0)) as srv:

        def release_once_a_retry_joined() -> None:
            wait_until(lambda: srv.server.batching.retries_joined >= 1)
            slow.release.set()

        releaser = threading.Thread(target=release_once_a_retry_joined, daemon=True)
        releaser.start()
        # The first attempt times out while the call computes; a retry joins it, and a retry after the answer
        # (if the joined one timed out too) is answered from the finished call.
        with remote(srv.url, timeout_s=0.4, retries=20, backoff_s=0.05) as policy:
            (chunk,) = policy.infer([libero_request(5)])
        releaser.join(CEILING_S)
        np.testing.assert_array_equal(chunk, np.full((10, 7), libero_request(5).seed % 1000, np.float32))
        assert slow.calls == [[libero_request(5).episode_id]]
        assert list(srv.server.batching.computed_episodes) == [libero_request(5).episode_id]


def test_timeout_sized_from_server_latency():
    # a call of 1 s against a timeout of 4x the warm-up's: seconds to spare on a loaded machine
    server = local_server(SleepPolicy(1.0))
    server.warmup()
    with ServerThread(server) as srv:
        with remote(srv.url, timeout_s=None, min_timeout_s=0.1) as policy:
            assert policy.timeout_s == pytest.approx(4 * server.warmup_ms / 1000)
            assert policy.infer([libero_request(0)])[0].shape == (10, 7)  # 1 s, within the sized timeout
        with remote(srv.url, timeout_s=None) as policy:
            assert policy.timeout_s == 60.0  # never below the floor
        with remote(srv.url, timeout_s=7.0) as policy:
            assert policy.timeout_s == 7.0  # --policy-timeout wins
    with (
        ScriptedServer(lambda obs: {"actions": np.zeros((10, 7))}) as srv,
        remote(srv.url, timeout_s=None) as policy,
    ):
        assert policy.timeout_s == 60.0  # an openpi server states no latency


def test_api_key():
    with ServerThread(local_server(RandomPolicy(7), api_key="k3y")) as srv:
        with pytest.raises(EvalkitError, match="HTTP 401"):
            remote(srv.url)
        with pytest.raises(EvalkitError, match="HTTP 401"):
            remote(srv.url, api_key="wrong")
        with remote(srv.url, api_key="k3y") as policy:
            assert policy.infer([libero_request(0)])[0].shape == (10, 7)


def test_reply_size_limit():
    big = np.zeros((4000, 7), np.float32)  # 112 kB reply
    with (
        ScriptedServer(lambda obs: {"actions": big}) as srv,
        remote(srv.url, max_size=64 * 1024) as policy,
        pytest.raises(RemotePolicyError, match="over the 65536-byte limit"),
    ):
        policy.infer([libero_request(0)])


def test_api_key_from_environment(monkeypatch):
    with ServerThread(local_server(RandomPolicy(7), api_key="k3y")) as srv:
        options = PolicyOptions(name=srv.url, embodiment="libero", action_dim=7, timeout_s=5)
        monkeypatch.setenv("EVALKIT_API_KEY", "k3y")
        policy = make_policy(options)
        try:
            assert policy.infer([libero_request(0)])[0].shape == (10, 7)
        finally:
            policy.close()
        monkeypatch.setenv("EVALKIT_API_KEY", "wrong")
        with pytest.raises(EvalkitError, match="HTTP 401"):
            make_policy(options)


def test_registry_builds_remote_policy():
    with ServerThread(local_server(RandomPolicy(7))) as srv:
        policy = make_policy(PolicyOptions(name=srv.url, embodiment="libero", action_dim=7, timeout_s=5))
        try:
            assert isinstance(policy, RemotePolicy)
            np.testing.assert_array_equal(
                policy.infer([libero_request(1)])[0], RandomPolicy(7).infer([libero_request(1)])[0]
            )
        finally:
            policy.close()
    with pytest.raises(EvalkitError):
        RemotePolicy("http://x", embodiment="libero", action_dim=7)


def test_server_batches_one_request_per_connection():
    """A batch of 8 over 8 pooled connections becomes one policy call as soon as every connection has its request
    in: with the server's max wait then raised to an hour, the call returning at all (within the client's timeout,
    without retries) shows it."""
    echo = EchoPolicy()
    requests = [libero_request(i) for i in range(8)]
    with (
        ServerThread(local_server(echo, max_batch=16, max_wait_ms=5)) as srv,
        remote(srv.url, max_connections=8, retries=0, timeout_s=CEILING_S) as policy,
    ):
        policy.infer([libero_request(i + 8) for i in range(8)])  # opens the 8 connections
        echo.batch_sizes.clear()
        srv.server.batching.batcher.max_wait_s = 3600.0
        got = policy.infer(requests)
    assert echo.batch_sizes == [8]
    for a, b in zip(got, EchoPolicy().infer(requests), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_eval_with_a_key_on_the_command_line_says_to_use_the_variable():
    """The key shows in ps while `evalkit eval` runs: one line says so; the key itself is never printed."""
    import subprocess
    import sys

    key = "canary-Zq81-eval-key"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit.cli",
            "eval",
            "--suite",
            "no-such-suite",
            "--policy",
            "ws://127.0.0.1:9",
        ]
        + ["--api-key", key],
        capture_output=True,
        text=True,
        timeout=CEILING_S,
    )
    notes = [line for line in run.stderr.splitlines() if line.startswith("evalkit eval: note:")]
    assert len(notes) == 1 and "EVALKIT_API_KEY" in notes[0]
    assert key not in run.stderr + run.stdout and run.returncode == 2
