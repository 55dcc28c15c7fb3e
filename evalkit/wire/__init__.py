"""openpi's websocket policy protocol, shared by the server (`evalkit.serving`) and the `ws://` client
(`evalkit.policies.remote`), which import it and not each other.

Wire format (openpi `websocket_policy_server.py` / `openpi_client`): on connect the server sends one binary
msgpack frame of metadata; then each client message is msgpack(observation) and each reply msgpack(
{"actions": f32[H, A], "server_timing": {...}, "policy_timing": {...}}); a text frame is a server-side error,
followed by close code 1011. Arrays use openpi's msgpack-numpy extension (`evalkit.wire.msgpack_numpy`).
"""

from __future__ import annotations

# Extra request fields our client sends (openpi clients send neither; the server strips both before inference).
SEED_KEY = "__evalkit_seed__"  # the PolicyRequest seed, so a remote run samples like an in-process one
EPISODE_KEY = "__evalkit_episode__"  # the episode id, for logs and stateful policies

DEFAULT_MAX_SIZE = 64 * 2**20  # bytes per message
