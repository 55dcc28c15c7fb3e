"""The ws:// client adapter against real loopback servers: ours, a minimal openpi-style one, and faults."""

import asyncio
import threading
import time

import numpy as np
import pytest
from websockets.asyncio.server import serve

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyOptions, PolicyUnavailableError
from evalkit.policies.registry import make_policy
from evalkit.policies.remote import RemotePolicy, RemotePolicyError
from evalkit.policies.simple import RandomPolicy
from evalkit.serving.server import PolicyServer, ServerThread
from evalkit.wire import SEED_KEY
from evalkit.wire.msgpack_numpy import packb, unpackb
from tests.serving.wire_helpers import EchoPolicy, FailingPolicy, ServerProcess, SlowPolicy, libero_request

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
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def remote(url: str, **kwargs) -> RemotePolicy:
    return RemotePolicy(
        url, embodiment=kwargs.pop("embodiment", "libero"), action_dim=7, **{**FAST, **kwargs}
    )


def test_batch_equals_in_process_policy():
    requests = [libero_request(i) for i in range(12)]
    with ServerThread(PolicyServer(EchoPolicy(), port=0, max_wait_ms=20)) as srv, remote(srv.url) as policy:
        got = policy.infer(requests)
        again = policy.infer(requests[:3])
        assert srv.server.batches < 12  # concurrent requests over the pool were batched by the server
    want = EchoPolicy().infer(requests)
    for a, b in zip(got + again, want + want[:3], strict=True):
        assert a.dtype == np.float32 and a.flags.writeable
        np.testing.assert_array_equal(a, b)


def test_meta_from_server_metadata_and_embodiment():
    with ServerThread(PolicyServer(EchoPolicy(), port=0)) as srv:
        with remote(srv.url) as policy:
            assert policy.meta.name == srv.url and policy.meta.fingerprint == "echo-v1"
            assert policy.meta.cameras == ("observation/image", "observation/wrist_image")
            assert policy.meta.image_size == (224, 224) and policy.meta.action_dim == 7
        with remote(srv.url, embodiment="droid") as policy:
            assert policy.meta.cameras == (
                "observation/exterior_image_1_left",
                "observation/wrist_image_left",
            )


def test_openpi_style_server_wider_actions_and_passthrough():
    """openpi servers send `{}` metadata and may send more action dims (and float64): keep the first action_dim."""
    wide = np.arange(80, dtype=np.float64).reshape(10, 8)
    with ScriptedServer(lambda obs: {"actions": wide, "policy_timing": {"infer_ms": 1.0}}) as srv:
        with remote(srv.url) as policy:
            assert policy.meta.fingerprint == f"remote:{srv.url}" and policy.meta.image_size is None
            req = libero_request(4)
            (chunk,) = policy.infer([req])
        np.testing.assert_array_equal(chunk, wide[:, :7].astype(np.float32))
        sent = srv.requests[0]
        assert sent[SEED_KEY] == req.seed and sent["prompt"] == req.obs["prompt"]
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
    with ServerThread(PolicyServer(FailingPolicy(), port=0)) as srv, remote(srv.url) as policy:
        with pytest.raises(RemotePolicyError, match="deliberate failure inside the policy") as info:
            policy.infer([libero_request(0)])
        assert not isinstance(info.value, PolicyUnavailableError)
        assert "Traceback" in str(info.value)


def test_no_server_at_start():
    with ServerThread(PolicyServer(RandomPolicy(7), port=0)) as srv:
        url = srv.url
    start = time.monotonic()
    with pytest.raises(PolicyUnavailableError, match="connect failed 3 times"):
        remote(url)
    assert time.monotonic() - start < 5


def test_server_killed_mid_run():
    with ServerProcess("--policy", "random") as server:
        policy = remote(server.url, retries=2, backoff_s=0.1)
        try:
            first = policy.infer([libero_request(i) for i in range(4)])
            want = RandomPolicy(7).infer([libero_request(i) for i in range(4)])
            for a, b in zip(first, want, strict=True):
                np.testing.assert_array_equal(a, b)
            server.kill()
            start = time.monotonic()
            with pytest.raises(PolicyUnavailableError, match="unavailable"):
                policy.infer([libero_request(i) for i in range(4)])
            assert time.monotonic() - start < 5  # bounded retries, not a hang
        finally:
            policy.close()


def test_slow_server_times_out():
    slow = SlowPolicy()
    with ServerThread(PolicyServer(slow, port=0)) as srv:
        try:
            policy = remote(srv.url, timeout_s=0.3, retries=1)
            start = time.monotonic()
            with pytest.raises(PolicyUnavailableError, match="timed out"):
                policy.infer([libero_request(0)])
            assert 0.6 <= time.monotonic() - start < 3
            policy.close()
        finally:
            slow.release.set()


def test_api_key():
    with ServerThread(PolicyServer(RandomPolicy(7), port=0, api_key="k3y")) as srv:
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


def test_registry_builds_remote_policy():
    with ServerThread(PolicyServer(RandomPolicy(7), port=0)) as srv:
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
    """A batch of 8 over 8 pooled connections becomes one policy call, without waiting out max_wait."""
    echo = EchoPolicy()
    requests = [libero_request(i) for i in range(8)]
    with (
        ServerThread(PolicyServer(echo, port=0, max_batch=8, max_wait_ms=1500)) as srv,
        remote(srv.url, max_connections=8) as policy,
    ):
        policy.infer(requests)  # opens the 8 connections
        echo.batch_sizes.clear()
        start = time.monotonic()
        got = policy.infer(requests)
        elapsed = time.monotonic() - start
    assert echo.batch_sizes == [8]
    assert elapsed < 1.0  # all open connections had a request in: the batch left before max_wait
    for a, b in zip(got, EchoPolicy().infer(requests), strict=True):
        np.testing.assert_array_equal(a, b)
