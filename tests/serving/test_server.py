"""PolicyServer on loopback: protocol frames, dynamic batching, faults on one connection, API keys."""

import socket
import threading
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from evalkit.core.policy import PolicyRequest
from evalkit.policies.simple import RandomPolicy, ZeroPolicy
from evalkit.serving.server import ServerThread
from evalkit.wire import EPISODE_ID_FIELD, SEED_FIELD
from evalkit.wire.msgpack_numpy import packb, unpackb
from tests.fakes import EchoPolicy, PoisonPolicy, RaisingPolicy, SleepPolicy, SlowPolicy
from tests.helpers import wait_until
from tests.serving.wire_helpers import CEILING_S, libero_obs, libero_request, local_server, server_side

# openpi's client calls websockets' connect() without `with`, as these tests do; websockets 17 warns about it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)


def open_client(url: str, **kwargs):
    ws = connect(url, compression=None, max_size=None, **kwargs)
    metadata = unpackb(ws.recv(timeout=CEILING_S))
    return ws, metadata


def ask(ws, obs: dict) -> dict:
    ws.send(packb(obs))
    reply = ws.recv(timeout=CEILING_S)
    assert isinstance(reply, bytes), reply
    return unpackb(reply)


def expect_error_frame(ws, message, match: str) -> str:
    """The server answers a bad message with a text frame, then closes with 1011."""
    ws.send(message)
    text = ws.recv(timeout=CEILING_S)
    assert isinstance(text, str) and match in text, text
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=CEILING_S)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    return text


@pytest.fixture()
def echo_server():
    policy = EchoPolicy()
    with ServerThread(local_server(policy, max_batch=8, max_wait_ms=20)) as srv:
        srv.policy = policy
        yield srv


def test_healthz_and_metadata_frame(echo_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{echo_server.port}/healthz", timeout=CEILING_S) as resp:
        assert resp.status == 200 and resp.read() == b"OK\n"
    ws, metadata = open_client(echo_server.url)
    ws.close()
    assert metadata["policy"] == "echo" and metadata["fingerprint"] == "echo-v1"
    assert metadata["image_size"] == [224, 224] and metadata["action_dim"] == 7
    assert metadata["cameras"] == ["observation/image", "observation/wrist_image"]


def test_reply_format_and_timing_fields(echo_server):
    ws, _ = open_client(echo_server.url)
    with ws:
        obs = libero_obs(3)
        first = ask(ws, {**obs, SEED_FIELD: 5})
        second = ask(ws, {**obs, SEED_FIELD: 5})
    actions = first["actions"]
    assert actions.dtype == np.float32 and actions.shape == (10, 7)
    expected = EchoPolicy().infer([PolicyRequest(obs, "", 5, 7)])[0]
    np.testing.assert_array_equal(actions, expected)
    np.testing.assert_array_equal(second["actions"], expected)
    assert set(first["server_timing"]) == {"infer_ms", "batch_size"}  # no prev_total_ms on the first reply
    assert {"infer_ms", "prev_total_ms"} <= set(second["server_timing"])
    assert first["policy_timing"]["infer_ms"] > 0 and second["server_timing"]["prev_total_ms"] > 0


def test_seed_counter_without_evalkit_seed():
    """openpi clients send no seed: the server numbers requests 0, 1, 2, ..."""
    with ServerThread(local_server(RandomPolicy(7))) as srv:
        ws, _ = open_client(srv.url)
        with ws:
            got = [ask(ws, libero_obs(i))["actions"] for i in range(3)]
    ref = RandomPolicy(7).infer([PolicyRequest({}, "", s, 7) for s in range(3)])
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)


# longer than any test waits: batches go by the other rules (a full batch, every connection waiting)
NO_MAX_WAIT_MS = 1000 * 3600


def _concurrent_answers(url: str, n_clients: int, per_client: int) -> dict[int, np.ndarray]:
    answers: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_clients)

    def client(c: int) -> None:
        try:
            ws, _ = open_client(url)
            with ws:
                start.wait(CEILING_S)
                for k in range(per_client):
                    i = c * per_client + k
                    answers[i] = ask(ws, {**libero_obs(i), SEED_FIELD: libero_request(i).seed})["actions"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CEILING_S)
    assert not errors, errors
    return answers


def test_batched_answers_equal_unbatched_and_in_process():
    n_clients, per_client = 12, 3
    unbatched_policy, batched_policy = EchoPolicy(), EchoPolicy()
    with ServerThread(local_server(unbatched_policy, max_batch=1)) as srv:
        unbatched = _concurrent_answers(srv.url, n_clients, per_client)
    # no max-wait rule in play: a batch goes when every connection has a request in (or at 16), whatever the load
    with ServerThread(local_server(batched_policy, max_batch=16, max_wait_ms=NO_MAX_WAIT_MS)) as srv:
        batched = _concurrent_answers(srv.url, n_clients, per_client)
    assert set(unbatched_policy.batch_sizes) == {1}
    assert max(batched_policy.batch_sizes) > 1  # requests from several connections shared a call
    assert max(batched_policy.batch_sizes) <= 16 and sum(batched_policy.batch_sizes) == n_clients * per_client
    n = n_clients * per_client
    in_process = EchoPolicy().infer([libero_request(i) for i in range(n)])
    for i in range(n):
        np.testing.assert_array_equal(batched[i], unbatched[i])
        np.testing.assert_array_equal(batched[i], in_process[i])


def test_many_concurrent_clients():
    with ServerThread(local_server(RandomPolicy(7), max_batch=16, max_wait_ms=NO_MAX_WAIT_MS)) as srv:
        answers = _concurrent_answers(srv.url, 48, 2)
        assert srv.server.stats().requests == 96 and srv.server.stats().batches < 96
    ref = RandomPolicy(7).infer([libero_request(i) for i in range(96)])
    for i in range(96):
        np.testing.assert_array_equal(answers[i], ref[i])


def _assert_still_serving(url: str) -> None:
    ws, _ = open_client(url)
    with ws:
        assert ask(ws, {**libero_obs(0), SEED_FIELD: 1})["actions"].shape == (10, 7)


@pytest.mark.parametrize(
    "message, match",
    [
        (b"\xc1\xff\x00garbage", "not a msgpack message"),
        (packb([1, 2, 3]), "expected a map"),
        (packb({"foo": 1, "prompt": "x"}), "missing key(s) observation/state"),
        (
            packb({k: v for k, v in libero_obs(0).items() if k != "observation/wrist_image"}),
            "observation/wrist_image",
        ),
        (packb({**libero_obs(0), "observation/image": np.zeros((224, 224), np.uint8)}), "(H, W, 3)"),
        (packb({k: v for k, v in libero_obs(0).items() if k != "prompt"}), "missing key prompt"),
        (packb({**libero_obs(0), "prompt": 3}), "prompt must be a string"),
        (packb({**libero_obs(0), SEED_FIELD: -1}), SEED_FIELD),
        (packb({**libero_obs(0), "observation/state": np.full(8, np.nan)}), "not finite"),
        (packb({**libero_obs(0), "observation/state": np.zeros(3)}), "has 3 values, expected 8"),
        (packb({**libero_obs(0), "observation/state": ["a"] * 8}), "numeric"),
        (packb({**libero_obs(0), "observation/image": np.zeros((4, 4, 3), bool)}), "uint8 or float image"),
        (msgpack.packb({1: 2}), "not a msgpack message"),
        (
            msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]}),
            "not allowed",
        ),
        ("a text frame", "expected a binary msgpack frame"),
    ],
)
def test_malformed_messages_close_only_that_connection(echo_server, message, match):
    bystander, _ = open_client(echo_server.url)
    with bystander:
        ws, _ = open_client(echo_server.url)
        expect_error_frame(ws, message, match)
        assert ask(bystander, {**libero_obs(1), SEED_FIELD: 2})["actions"].shape == (10, 7)
    _assert_still_serving(echo_server.url)


def test_oversized_messages_are_refused_from_their_header():
    """A frame over --max-size is refused with 1009 and a readable reason, before the server buffers it."""
    limit = 1024 * 1024
    with ServerThread(local_server(ZeroPolicy(7), max_size=limit)) as srv:
        ws, _ = open_client(srv.url)
        ws.send(packb({**libero_obs(0), "extra": np.zeros(limit, np.uint8)}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=CEILING_S)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert f"exceeds limit of {limit} bytes" in info.value.rcvd.reason
        assert srv.server.admission.peak_buffered < limit  # the refused frame was never held whole
        _assert_still_serving(srv.url)


def test_policy_exception_sends_traceback_then_1011():
    with ServerThread(local_server(RaisingPolicy())) as srv:
        ws, _ = open_client(srv.url)
        text = expect_error_frame(ws, packb(libero_obs(0)), RaisingPolicy.MESSAGE)
        assert "Traceback" in text
        # The server itself is fine.
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=CEILING_S) as resp:
            assert resp.status == 200


def test_api_key_required():
    with ServerThread(local_server(ZeroPolicy(7), api_key="s3cret")) as srv:
        for headers in (None, {"Authorization": "Api-Key wrong"}, {"Authorization": "s3cret"}):
            with pytest.raises(InvalidStatus) as info:
                open_client(srv.url, additional_headers=headers)
            assert info.value.response.status_code == 401
        ws, metadata = open_client(srv.url, additional_headers={"Authorization": "Api-Key s3cret"})
        with ws:
            assert ask(ws, libero_obs(0))["actions"].shape == (10, 7)
        # Health checks need no key.
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=CEILING_S) as resp:
            assert resp.status == 200


def _outward_ip() -> str:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]


def test_binds_loopback_by_default():
    ip = _outward_ip()
    if ip.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    server = local_server(ZeroPolicy(7))
    assert server.host == "127.0.0.1"
    with ServerThread(server) as srv, pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{ip}:{srv.port}/healthz", timeout=2)
    # Control: bound to all interfaces, the same address does answer.
    with (
        ServerThread(local_server(ZeroPolicy(7), host="0.0.0.0")) as srv,
        urllib.request.urlopen(f"http://{ip}:{srv.port}/healthz", timeout=CEILING_S) as resp,
    ):
        assert resp.status == 200


def _keyed(i: int, episode: str) -> dict:
    """A request as our client sends it: with the episode id and the call's seed."""
    return {**libero_obs(i), SEED_FIELD: 100 + i, EPISODE_ID_FIELD: episode}


def test_request_of_a_closed_connection_is_never_computed():
    slow = SlowPolicy()
    with ServerThread(local_server(slow, max_batch=4, max_wait_ms=0)) as srv:
        a, _ = open_client(srv.url)
        a.send(packb(_keyed(0, "A")))
        assert slow.entered.wait(
            CEILING_S
        )  # A's batch is computing; B's request must wait for the next batch
        b, _ = open_client(srv.url)
        b.send(packb(_keyed(1, "B")))
        wait_until(lambda: srv.server.batching.batcher.queued() == 1)
        b.close()
        wait_until(lambda: srv.server.batching.batcher.queued() == 0)
        slow.release.set()
        with a:
            assert unpackb(a.recv(timeout=CEILING_S))["actions"].shape == (10, 7)
            ask(a, _keyed(2, "C"))
    assert slow.calls == [["A"], ["C"]]  # B left before its turn: never computed
    assert list(srv.server.batching.computed_episodes) == ["A", "C"]


def test_retry_of_a_running_request_is_computed_once():
    """A client that timed out and retried the same call gets the answer of the first computation."""
    slow = SlowPolicy()
    with ServerThread(local_server(slow, max_wait_ms=0)) as srv:
        message = packb(_keyed(3, "libero_spatial/0/0/0"))
        first, _ = open_client(srv.url)
        first.send(message)
        assert slow.entered.wait(CEILING_S)
        first.close()  # the client gave up on this connection...
        retry, _ = open_client(srv.url)
        with retry:
            retry.send(message)  # ...and retried the same call on a new one
            wait_until(lambda: srv.server.batching.retries_joined == 1)
            slow.release.set()
            reply = unpackb(retry.recv(timeout=CEILING_S))
            again = ask(retry, unpackb(message))  # a later retry of a finished call: from the recent answers
        np.testing.assert_array_equal(reply["actions"], np.full((10, 7), 103, np.float32))
        np.testing.assert_array_equal(again["actions"], reply["actions"])
    assert slow.calls == [["libero_spatial/0/0/0"]]


def test_bad_request_in_a_batch_fails_alone():
    """A request that breaks the batched call gets its own traceback; its batch-mates get their actions."""
    policy = PoisonPolicy()
    with ServerThread(local_server(policy, max_batch=8, max_wait_ms=2000)) as srv:
        good, _ = open_client(srv.url)
        bad, _ = open_client(srv.url)
        with good, bad:
            good.send(packb({**libero_obs(1), SEED_FIELD: 11}))
            bad.send(packb({**libero_obs(2, prompt="poison"), SEED_FIELD: 12}))
            reply = good.recv(timeout=CEILING_S)
            text = bad.recv(timeout=CEILING_S)
            assert isinstance(reply, bytes), reply  # not the other client's traceback
            assert isinstance(text, str) and "poisoned request" in text and "Traceback" in text
            assert "During handling" not in text  # only its own call's traceback
            with pytest.raises(ConnectionClosed) as info:
                bad.recv(timeout=CEILING_S)
            assert info.value.rcvd.code == 1011
            assert ask(good, {**libero_obs(3), SEED_FIELD: 13})["actions"].shape == (10, 7)  # still served
    assert policy.calls[:3] == [2, 1, 1]  # batched together, then each alone
    assert unpackb(reply)["server_timing"]["batch_size"] == 2  # the size of the call that settled it
    want = EchoPolicy().infer([PolicyRequest(libero_obs(1), "", 11, 7)])[0]
    np.testing.assert_array_equal(unpackb(reply)["actions"], want)


def test_connection_cap():
    with ServerThread(local_server(ZeroPolicy(7), max_connections=2)) as srv:
        first, _ = open_client(srv.url)
        second, _ = open_client(srv.url)
        with pytest.raises(InvalidStatus) as info:
            open_client(srv.url)
        assert info.value.response.status_code == 503
        assert b"limit of 2 connections" in info.value.response.body
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=CEILING_S) as resp:
            assert resp.status == 200  # health checks still answered
        first.close()
        wait_until(lambda: len(srv.server.admission.open) <= 1)
        third, _ = open_client(srv.url)
        with second, third:
            assert ask(third, libero_obs(0))["actions"].shape == (10, 7)


def test_buffered_bytes_cap():
    """Messages held across connections (here waiting on a busy policy), each counted twice, never take more than
    --max-buffered: a connection whose message would exceed it is dropped, the others are answered."""
    limit, budget = 1 << 20, 6 << 20
    slow = SlowPolicy()
    with ServerThread(local_server(slow, max_size=limit, max_buffered=budget, max_wait_ms=0)) as srv:
        clients = [open_client(srv.url)[0] for _ in range(6)]
        payload = packb(
            {**libero_obs(0), "extra": np.zeros(limit - 400_000, np.uint8)}
        )  # ~0.95 MB, 1.9 MB held
        for ws in (
            clients
        ):  # each taken in whole or dropped before the next is sent: which ones fit is deterministic
            conn = server_side(srv, ws.socket)
            ws.send(payload)
            wait_until(
                lambda conn=conn: conn not in srv.server.admission.open or conn.held >= 2 * len(payload)
            )
        slow.release.set()
        answered, dropped = 0, 0
        for ws in clients:
            try:
                assert unpackb(ws.recv(timeout=CEILING_S))["actions"].shape == (10, 7)
                answered += 1
            except ConnectionClosed:
                dropped += 1
            ws.close()
        assert answered == 3 and dropped == 3 and srv.server.admission.dropped == 3
        assert srv.server.admission.peak_buffered <= budget
        _assert_still_serving(srv.url)
        wait_until(lambda: srv.server.admission.buffered == 0)  # everything released once answered or closed


def test_metadata_reports_measured_latency():
    server = local_server(SleepPolicy(0.2))
    assert server.warmup() >= 200
    with ServerThread(server) as srv:
        ws, metadata = open_client(srv.url)
        assert metadata["latency_ms"]["count"] == 0 and metadata["latency_ms"]["max"] is None
        assert metadata["latency_ms"]["warmup"] == server.warmup_ms
        with ws:
            ask(ws, libero_obs(0))
        ws, metadata = open_client(srv.url)
        ws.close()
    latency = metadata["latency_ms"]
    assert latency["count"] == 1 and 200 <= latency["p95"] <= latency["max"]
    assert metadata["policy"] == "sleep" and metadata["fingerprint"] == "sleep-0.2s"
    assert metadata["embodiment"] == "libero"


def test_stop_with_a_batch_in_flight_is_bounded():
    slow = SlowPolicy()
    thread = ServerThread(local_server(slow, shutdown_grace_s=0.5)).start()
    try:
        ws, _ = open_client(thread.url)
        ws.send(packb(libero_obs(0)))
        assert slow.entered.wait(CEILING_S)
        thread.stop()
        # stop() returned while the call still runs: it was abandoned after the 0.5 s grace, not waited for
        assert thread.server.busy and not slow.release.is_set()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=CEILING_S)
    finally:
        slow.release.set()


def test_same_call_with_another_observation_is_not_a_retry():
    """Only the very same bytes count as a retry: another observation under the same episode and seed is computed."""
    with ServerThread(local_server(EchoPolicy())) as srv:
        ws, _ = open_client(srv.url)
        with ws:
            first = ask(ws, _keyed(0, "ep"))["actions"]
            again = ask(ws, _keyed(0, "ep"))["actions"]  # the very same call: answered from the finished one
            assert srv.server.stats().requests == 1
            other_obs = {**_keyed(1, "ep"), SEED_FIELD: 100}  # the same episode and seed as the first
            other = ask(ws, other_obs)["actions"]
            assert srv.server.stats().requests == 2
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(first, EchoPolicy().infer([PolicyRequest(libero_obs(0), "ep", 100, 7)])[0])
    np.testing.assert_array_equal(other, EchoPolicy().infer([PolicyRequest(libero_obs(1), "ep", 100, 7)])[0])
