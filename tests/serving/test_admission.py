"""Admission on loopback with real sockets: connections that stall in their handshake (slow-loris), the per-address
share, the handshake timeout, and the memory that held messages take against --max-buffered."""

import socket
import tracemalloc

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from evalkit.policies.simple import ZeroPolicy
from evalkit.serving.config import MESSAGE_COPIES
from evalkit.serving.server import ServerThread
from evalkit.wire import SEED_FIELD
from evalkit.wire.msgpack_numpy import packb, unpackb
from tests.fakes import SlowPolicy
from tests.helpers import wait_until
from tests.serving.wire_helpers import (
    CEILING_S,
    RawClient,
    closed_by_peer,
    libero_obs,
    local_server,
    server_side,
    stalled_connection,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)


def good_client(url: str, source: str = "127.0.0.1") -> tuple:
    """An openpi-style client from `source`: connect, read the metadata, one request; the actions' shape."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=CEILING_S, source_address=(source, 0))
    with connect(url, sock=sock, compression=None, max_size=None, open_timeout=CEILING_S) as ws:
        ws.recv(timeout=CEILING_S)
        ws.send(packb({**libero_obs(0), SEED_FIELD: 0}))
        return unpackb(ws.recv(timeout=CEILING_S))["actions"].shape


@pytest.mark.parametrize("attacker", ["127.0.0.1", "127.0.0.2"])
def test_stalled_handshakes_do_not_lock_out_a_good_client(attacker):
    """300 connections that stall in their handshake (more than the 256-connection cap), from the good client's
    own address or another: the good client is still served (each newcomer takes the place of a stalled one)."""
    with ServerThread(local_server(ZeroPolicy(7))) as srv:
        admission = srv.server.admission
        stalled = [stalled_connection(srv.port, attacker) for _ in range(300)]
        try:
            wait_until(lambda: admission.arrived == 300)
            assert len(admission.open) <= 256 and admission.per_address[attacker] <= 64
            assert good_client(srv.url) == (10, 7)
        finally:
            for sock in stalled:
                sock.close()


def test_at_the_cap_a_newcomer_replaces_the_oldest_stalled_handshake():
    """Four stalled connections from four addresses fill a 4-connection server: a good client takes the place of
    the oldest of them, which the server closes."""
    with ServerThread(local_server(ZeroPolicy(7), max_connections=4)) as srv:
        stalled = [stalled_connection(srv.port, f"127.0.0.{2 + i}") for i in range(4)]
        try:
            wait_until(lambda: srv.server.admission.arrived == 4)
            assert good_client(srv.url) == (10, 7)
            assert srv.server.admission.evicted == 1 and closed_by_peer(stalled[0])
        finally:
            for sock in stalled:
                sock.close()


def test_per_address_share():
    """An address with its share of established connections gets HTTP 503; another address is still served."""
    with ServerThread(local_server(ZeroPolicy(7), max_connections_per_address=2)) as srv:
        first, second = (connect(srv.url, open_timeout=CEILING_S) for _ in range(2))
        with first, second:
            with pytest.raises(InvalidStatus) as info:
                connect(srv.url, open_timeout=CEILING_S)
            assert info.value.response.status_code == 503
            assert b"2 connections from one address" in info.value.response.body
            assert good_client(srv.url, source="127.0.0.2") == (10, 7)


def test_handshake_timeout_closes_stalled_connections():
    with ServerThread(local_server(ZeroPolicy(7), handshake_timeout_s=0.5)) as srv:
        stalled = [stalled_connection(srv.port) for _ in range(3)]
        try:
            assert all(closed_by_peer(sock) for sock in stalled)
            wait_until(lambda: not srv.server.admission.open)
        finally:
            for sock in stalled:
                sock.close()


def test_held_messages_stay_within_the_byte_budget():
    """Messages of 20 MiB sent one after the other while the policy is busy: the memory the server allocates for
    them (receive buffers, frames, decoded arrays) stays within --max-buffered (64 MiB). Counted once, three were
    taken in and held with their decoded arrays (~120 MiB). tracemalloc sees every Python and numpy allocation,
    whatever the allocator does with freed memory, so the figure does not depend on timing or fragmentation."""
    cap = 64 << 20
    slow = SlowPolicy()
    payload = packb({**libero_obs(0), "extra": np.zeros(20 << 20, np.uint8)})
    config = {"max_size": 32 << 20, "max_buffered": cap, "max_wait_ms": 0}
    with ServerThread(local_server(slow, **config)) as srv:
        admission, batcher = srv.server.admission, srv.server.batching.batcher
        clients = [RawClient(srv.port) for _ in range(4)]
        for client in clients:
            client.read_frame()  # the metadata
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            taken = 0  # messages computing or queued
            for client in clients:  # each decoded and queued, or dropped, before the next is sent
                conn = server_side(srv, client.sock)
                client.send_frame(payload)  # False when the server cut it while it was sent
                wait_until(
                    lambda conn=conn, before=taken: (
                        conn not in admission.open or len(slow.calls) + batcher.queued() > before
                    )
                )
                taken = len(slow.calls) + batcher.queued()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
            slow.release.set()
        assert taken == 1 and admission.dropped == 3
        assert peak <= cap, f"messages took {peak / 2**20:.0f} MiB under a {cap / 2**20:.0f} MiB cap"
        assert clients[0].read_frame() == 2  # the one taken in is answered
        assert admission.peak_buffered <= cap and MESSAGE_COPIES * len(payload) <= admission.peak_buffered
        assert good_client(srv.url) == (10, 7)
