"""Admission: which connections the server takes in, and how many bytes of their messages it holds at once.

- **Connections.** At most `max_connections` open (TCP connections, opening handshakes included) and at most
  `max_per_address` from one client address. A newcomer beyond either limit takes the place of the oldest
  connection still in its opening handshake (of its own address, when that address has its share), so
  connections that open and stall (slow-loris) cannot lock good clients out; when every connection it could
  replace has finished its handshake, the newcomer gets HTTP 503. `/healthz` is always answered. The opening
  handshake itself is bounded by the server's handshake timeout (websockets' `open_timeout`).
- **Bytes.** Every byte of a message received and not yet answered is charged `MESSAGE_COPIES` times (a message
  is held twice at its peak) against `max_buffered`, on all connections together; a connection whose next bytes
  would exceed it is dropped. Frames over the size limit are refused from their header by websockets, before
  any of them is held.
"""

from __future__ import annotations

import collections
import http
import logging

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response
from websockets.protocol import State

from evalkit.serving.config import MESSAGE_COPIES

log = logging.getLogger("evalkit.serve")


def frame_overhead(payload: int) -> int:
    """Bytes of a client's single-frame websocket message beyond its payload (RFC 6455 §5.2, masked)."""
    return 2 + (0 if payload < 126 else 2 if payload < 2**16 else 8) + 4


class Admission:
    def __init__(self, max_connections: int, max_per_address: int, max_buffered: int):
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.max_buffered = max_buffered
        # open connections, oldest first
        self.open: dict[AdmittedConnection, None] = {}
        self.per_address: collections.Counter[str] = collections.Counter()
        # bytes charged for messages received and not yet answered, all connections
        self.buffered = 0
        self.peak_buffered = 0
        # connections taken in so far; dropped for the byte budget; closed in their handshake for a newcomer
        self.arrived = 0
        self.dropped = 0
        self.evicted = 0

    def arrive(self, conn: AdmittedConnection) -> None:
        """A new TCP connection: counted; over a limit, it replaces a stalled handshake or is marked for 503."""
        self.open[conn] = None
        self.per_address[conn.address] += 1
        over_share = self.per_address[conn.address] > self.max_per_address
        if over_share or len(self.open) > self.max_connections:
            self._make_room(conn, over_share)
        # last, so that whoever reads the count (another thread) sees this arrival's bookkeeping done
        self.arrived += 1

    def _make_room(self, conn: AdmittedConnection, over_share: bool) -> None:
        victim = self._oldest_handshake(conn, conn.address if over_share else None)
        if victim is not None:
            log.warning("closed a connection from %s that had not finished its handshake", victim.address)
            self.evicted += 1
            self.leave(victim)
            victim.transport.abort()
        elif over_share:
            conn.refusal = f"server at its limit of {self.max_per_address} connections from one address\n"
        else:
            conn.refusal = f"server at its limit of {self.max_connections} connections\n"

    def leave(self, conn: AdmittedConnection) -> None:
        if conn in self.open:
            del self.open[conn]
            self.per_address[conn.address] -= 1
            if not self.per_address[conn.address]:
                del self.per_address[conn.address]
        self.release(conn, conn.held)

    def check(self, conn: AdmittedConnection, request: Request) -> Response | None:
        """websockets' `process_request` hook, before authentication: health checks, then refusals."""
        if request.path == "/healthz":
            return conn.respond(http.HTTPStatus.OK, "OK\n")
        if conn.refusal is not None:
            log.warning("refused a connection from %s: %s", conn.address, conn.refusal.strip())
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, conn.refusal)
        return None

    def take(self, conn: AdmittedConnection, nbytes: int) -> bool:
        """Charge `nbytes` received on `conn`; False (nothing charged) if that would exceed the budget."""
        cost = MESSAGE_COPIES * nbytes
        if self.buffered + cost > self.max_buffered:
            self.dropped += 1
            log.warning(
                "dropped the connection from %s: received messages would take more than %d bytes",
                conn.address,
                self.max_buffered,
            )
            return False
        conn.held += cost
        self.buffered += cost
        self.peak_buffered = max(self.peak_buffered, self.buffered)
        return True

    def release(self, conn: AdmittedConnection, cost: int) -> None:
        cost = min(cost, conn.held)
        conn.held -= cost
        self.buffered -= cost

    def release_message(self, conn: AdmittedConnection, size: int) -> None:
        """A message of `size` bytes was answered (or refused): its bytes are no longer held."""
        self.release(conn, MESSAGE_COPIES * (size + frame_overhead(size)))

    def _oldest_handshake(
        self, newcomer: AdmittedConnection, address: str | None
    ) -> AdmittedConnection | None:
        for conn in self.open:
            if conn is not newcomer and conn.state is State.CONNECTING and address in (None, conn.address):
                return conn
        return None


class AdmittedConnection(ServerConnection):
    """A server connection counted by `Admission`: in the connection limits from its first byte, and its
    received message bytes in the byte budget."""

    def __init__(self, admission: Admission, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.admission = admission
        self.address = "?"
        # bytes charged for this connection's messages and not yet released
        self.held = 0
        # why it gets HTTP 503 (None: admitted)
        self.refusal: str | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.admission.arrive(self)

    def data_received(self, data: bytes) -> None:
        # The handshake's bytes are bounded by websockets' header limits; websockets discards what follows a close.
        if self.state is State.OPEN and not self.admission.take(self, len(data)):
            self.transport.abort()
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            # Free what websockets buffered of an unfinished frame now, before its bytes go back to the budget.
            self.protocol.reader.discard()
            self.admission.leave(self)
