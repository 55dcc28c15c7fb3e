"""The metadata frame: the first frame of every connection, a msgpack map the server sends and the client reads.

`evalkit serve` sends the served policy's identity (`policy`, `fingerprint`, `provenance`, `embodiment`,
`action_dim`, `action_mode`, `cameras`, `image_size`), `max_batch`, and `latency_ms`: the measured duration of its
policy calls in ms (`warmup`: the warm-up call; `p95` and `max` over recent calls; `count`: calls so far), from
which clients size their timeouts. openpi's servers send `{}` and openpi's clients ignore keys they do not use, so
every key is optional to the reader, which checks each value's type before trusting it.
"""

from __future__ import annotations

from typing import Any

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.policy import PolicyMeta

IDENTITY_KEYS = ("policy", "fingerprint", "embodiment")


def policy_metadata(meta: PolicyMeta, embodiment: str, action_dim: int, max_batch: int) -> dict[str, Any]:
    """What the server says about the policy it serves (everything but the latency, which changes)."""
    metadata: dict[str, Any] = {
        "policy": meta.name,
        "fingerprint": meta.fingerprint,
        "embodiment": embodiment,
        "action_dim": action_dim,
        "cameras": list(meta.cameras),
        "max_batch": max_batch,
        "provenance": dict(meta.provenance),
    }
    if meta.image_size is not None:
        metadata["image_size"] = list(meta.image_size)
    if meta.action_mode is not None:
        metadata["action_mode"] = meta.action_mode
    return metadata


def latency_metadata(warmup_ms: float | None, p95_ms: float | None, max_ms: float | None, count: int) -> dict:
    return {"latency_ms": {"warmup": warmup_ms, "p95": p95_ms, "max": max_ms, "count": count}}


# ------------------------------------------------------------------ reading (the client)


def metadata_str(metadata: dict, key: str) -> str | None:
    value = metadata.get(key)
    return value if isinstance(value, str) and value else None


def served_policy_meta(metadata: dict, url: str, embodiment: str, action_dim: int) -> PolicyMeta:
    """The served policy as a client sees it: `remote:<served name>` with the served fingerprint; a server that
    states no identity (openpi's) is `remote:<url>` with fingerprint `remote:<url>`."""
    return PolicyMeta(
        name=f"remote:{metadata_str(metadata, 'policy') or url}",
        fingerprint=metadata_str(metadata, "fingerprint") or f"remote:{url}",
        cameras=_cameras(metadata, embodiment),
        image_size=_image_size(metadata),
        action_dim=action_dim,
        embodiment=metadata_str(metadata, "embodiment"),  # None (any) from openpi's servers
        action_mode=metadata_str(metadata, "action_mode"),
        provenance=_provenance(metadata),
    )


def served_identity(metadata: dict) -> tuple:
    """What tells two served policies apart (a server restarted with another policy is another identity)."""
    return tuple(metadata.get(k) for k in IDENTITY_KEYS)


def describe_identity(identity: tuple) -> str:
    return ", ".join(f"{k} {v!r}" for k, v in zip(IDENTITY_KEYS, identity, strict=True))


def served_latency_s(metadata: dict) -> float | None:
    """The slowest policy call the server measured (warm-up or recent), in seconds; None if it says nothing."""
    value = metadata.get("latency_ms")
    if not isinstance(value, dict):
        return None
    times = [v for k in ("warmup", "max") if isinstance(v := value.get(k), int | float) and v > 0]
    return max(times) / 1000.0 if times else None


def _provenance(metadata: dict) -> dict[str, str]:
    value = metadata.get("provenance")
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    return {}


def _cameras(metadata: dict, embodiment: str) -> tuple[str, ...]:
    """The image keys the served policy reads (`evalkit serve` says; none = it needs no rendering), else all."""
    value = metadata.get("cameras")
    known = EMBODIMENTS[embodiment].cameras
    if isinstance(value, list) and all(isinstance(c, str) and c in known for c in value):
        return tuple(value)
    return EMBODIMENTS[embodiment].policy_cameras


def _image_size(metadata: dict) -> tuple[int, int] | None:
    value = metadata.get("image_size")
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None
