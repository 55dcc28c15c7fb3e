"""openpi's websocket policy protocol, shared by the server (`evalkit.serving`) and the `ws://` client
(`evalkit.policies.remote`), which import it and not each other.

Wire format (openpi `websocket_policy_server.py` / `openpi_client`): on connect the server sends one binary
msgpack frame of metadata (`evalkit.wire.metadata`); then each client message is msgpack(observation) and each reply
msgpack({"actions": f32[H, A], "server_timing": {...}, "policy_timing": {...}}); a text frame is a server-side
error, followed by close code 1011. Arrays use openpi's msgpack-numpy extension (`evalkit.wire.msgpack_numpy`).
API keys travel in an `Authorization: Api-Key <key>` header (`evalkit.wire.auth`).
"""

from __future__ import annotations

# Extra request fields our client sends (openpi clients send neither; the server strips both before inference).
# The PolicyRequest seed, so a remote run samples like an in-process one:
SEED_FIELD = "__evalkit_seed__"
# The episode id (`EpisodeSpec.episode_id`), for logs, stateful policies and recognising a retried request:
EPISODE_ID_FIELD = "__evalkit_episode__"
# The largest seed a request may carry: msgpack's largest unsigned integer. (A protocol's run seed, checked in
# `evalkit.core.protocol`, stays below 2**63 because numpy and torch seeds are int64; request seeds derived from it
# do too.)
MAX_REQUEST_SEED = 2**64 - 1

DEFAULT_MAX_SIZE = 64 * 2**20  # bytes per message
