"""evalkit's suites as gymnasium environments: `import evalkit.gym` registers `evalkit/<suite>-v0` for every suite.

    import gymnasium, evalkit.gym
    env = gymnasium.make("evalkit/libero_spatial-v0", task=3, init_state=7, protocol="openpi")

Keyword arguments of `gymnasium.make`: `task` (task id), `init_state`, `protocol` (a preset such as `openpi`,
`lerobot`, `droid_jointpos`; default: the suite's), `max_steps` (step budget; default: the protocol's), `images`
(`every_step` or `policy_steps`), `render_mode` (`rgb_array`). See `evalkit.gym.env.EvalkitEnv`.
"""

from __future__ import annotations

import re

import gymnasium

from evalkit.gym.env import EvalkitEnv

NAMESPACE = "evalkit"
ENTRY_POINT = "evalkit.gym.env:EvalkitEnv"
_ID_NAME = re.compile(r"^[\w.-]+$")

__all__ = ["ENTRY_POINT", "NAMESPACE", "EvalkitEnv", "env_id", "register_suites"]


def env_id(suite: str) -> str:
    return f"{NAMESPACE}/{suite}-v0"


def register_suites() -> list[str]:
    """Register one id per suite (groups excluded): the YAML suites and those the simulator packages register."""
    from evalkit.suites import registry

    entries = registry.yaml_entries()
    entries.update(registry.discovered_entries(entries))
    ids = []
    for name, entry in sorted(entries.items()):
        if entry.is_group or not _ID_NAME.match(name):
            continue
        ids.append(env_id(name))
        if ids[-1] not in gymnasium.registry:
            gymnasium.register(id=ids[-1], entry_point=ENTRY_POINT, kwargs={"suite": name})
    return ids


register_suites()
