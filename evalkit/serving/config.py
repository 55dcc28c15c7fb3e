"""`ServeConfig`: how `evalkit serve` serves. Its fields generate the command's flags (`evalkit.cli_args`), so each
default lives here once and `--help` shows it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.errors import EvalkitError
from evalkit.core.flags import flag
from evalkit.wire import DEFAULT_MAX_SIZE

SERVE, LIMITS = "serving", "limits"
# A received message is held twice at its peak (websockets' receive buffer and its unmasked copy; then the
# message and its decoded arrays), so the byte budget charges every received byte twice.
MESSAGE_COPIES = 2
MIN_MAX_SIZE = 1024
DEFAULT_MAX_BUFFERED = 256 * 2**20


@dataclass(frozen=True)
class ServeConfig:
    """One `evalkit serve`. The policy's own flags come from `PolicyOptions`."""

    host: str = field(
        default="127.0.0.1", metadata=flag("--host", "address to bind (0.0.0.0 = all interfaces)", SERVE)
    )
    port: int = field(
        default=8000, metadata=flag("--port", "port to listen on (0 = any free port)", SERVE, type=int)
    )
    embodiment: str = field(
        default="libero",
        metadata=flag(
            "--embodiment",
            "the observations it takes and the actions it returns",
            SERVE,
            choices=tuple(EMBODIMENTS),
        ),
    )
    max_batch: int = field(
        default=16, metadata=flag("--max-batch", "most requests per policy call", SERVE, type=int)
    )
    max_wait_ms: float = field(
        default=5.0,
        metadata=flag(
            "--max-wait-ms",
            "how long a request that finds the policy idle waits for others to batch with",
            SERVE,
            type=float,
        ),
    )
    api_key: str | None = field(
        default=None,
        metadata=flag(
            "--api-key",
            "require `Authorization: Api-Key <key>` (default: $EVALKIT_API_KEY, else none; prefer the variable: "
            "a flag shows in ps)",
            SERVE,
        ),
    )
    warmup: bool = field(
        default=True,
        metadata=flag(
            "--warmup",
            "time one call on a blank observation before listening; clients size their timeouts from it",
            SERVE,
            action=argparse.BooleanOptionalAction,
        ),
    )
    max_size: int = field(
        default=DEFAULT_MAX_SIZE,
        metadata=flag(
            "--max-size",
            "most bytes per message; larger frames are refused from their header",
            LIMITS,
            type=int,
        ),
    )
    max_connections: int = field(
        default=256,
        metadata=flag(
            "--max-connections",
            "most open connections, handshakes included; beyond it a new connection takes the place of the "
            "oldest one still in its handshake, or gets HTTP 503",
            LIMITS,
            type=int,
        ),
    )
    max_connections_per_address: int = field(
        default=64,
        metadata=flag(
            "--max-connections-per-address",
            "most open connections from one client address (behind a proxy, set it to --max-connections)",
            LIMITS,
            type=int,
        ),
    )
    handshake_timeout_s: float = field(
        default=5.0,
        metadata=flag(
            "--handshake-timeout",
            "close a connection whose opening handshake takes longer",
            LIMITS,
            type=float,
            metavar="SECONDS",
        ),
    )
    max_buffered: int | None = field(
        default=None,
        metadata=flag(
            "--max-buffered",
            "most bytes of memory that received messages may take, all connections together (each message counts "
            f"{MESSAGE_COPIES}x its size); a connection that would exceed it is dropped (default: "
            f"{DEFAULT_MAX_BUFFERED}, or {MESSAGE_COPIES * 2} x --max-size if larger)",
            LIMITS,
            type=int,
        ),
    )
    # On stop, how long the running batch may take to finish and answer before it is abandoned.
    shutdown_grace_s: float = 5.0

    @property
    def buffered_cap(self) -> int:
        """`max_buffered`, or 256 MiB but at least room for two messages of `max_size` at once."""
        if self.max_buffered is not None:
            return self.max_buffered
        return max(DEFAULT_MAX_BUFFERED, MESSAGE_COPIES * 2 * self.max_size)

    def validate(self) -> None:
        """One-line errors naming the flag, before anything starts."""
        checks = [
            (
                self.embodiment in EMBODIMENTS,
                f"unknown embodiment {self.embodiment!r}; choose one of {', '.join(EMBODIMENTS)}",
            ),
            (0 <= self.port <= 65535, f"--port must be between 0 and 65535, got {self.port}"),
            (self.max_batch >= 1, f"--max-batch must be at least 1, got {self.max_batch}"),
            (self.max_wait_ms >= 0, f"--max-wait-ms must not be negative, got {self.max_wait_ms}"),
            (
                self.max_size >= MIN_MAX_SIZE,
                f"--max-size must be at least {MIN_MAX_SIZE} bytes, got {self.max_size}",
            ),
            (self.max_connections >= 1, f"--max-connections must be at least 1, got {self.max_connections}"),
            (
                self.max_connections_per_address >= 1,
                f"--max-connections-per-address must be at least 1, got {self.max_connections_per_address}",
            ),
            (
                self.handshake_timeout_s > 0,
                f"--handshake-timeout must be positive, got {self.handshake_timeout_s}",
            ),
            (
                self.buffered_cap >= MESSAGE_COPIES * self.max_size,
                f"--max-buffered ({self.buffered_cap}) must be at least {MESSAGE_COPIES} x --max-size "
                f"({self.max_size}) bytes: a message counts {MESSAGE_COPIES}x its size",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise EvalkitError(message)
