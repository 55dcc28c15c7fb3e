"""Whether a policy can drive a suite: checked before the first episode, never discovered mid-run."""

from __future__ import annotations

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta
from evalkit.core.protocol import SuiteSpec


def check_compatible(meta: PolicyMeta, suites: list[SuiteSpec]) -> None:
    """Reject a policy/suite mismatch (embodiment, action meaning, cameras, image size, action dim, privileged
    state) in one line."""
    for suite in suites:
        proto = suite.protocol
        if meta.embodiment is not None and meta.embodiment != suite.embodiment:
            raise EvalkitError(
                f"policy {meta.name} takes {meta.embodiment} observations but suite {suite.name} sends "
                f"{suite.embodiment} ones (a served policy: `evalkit serve --embodiment {suite.embodiment}`)"
            )
        if meta.action_mode is not None and meta.action_mode != proto.action_mode:
            raise EvalkitError(
                f"policy {meta.name} outputs {meta.action_mode} actions but protocol {proto.name} of suite "
                f"{suite.name} executes {proto.action_mode} actions; choose the matching --protocol"
            )
        missing = [c for c in meta.cameras if c not in proto.wire_cameras]
        if missing:
            raise EvalkitError(
                f"policy {meta.name} needs camera(s) {', '.join(missing)} but suite {suite.name} provides "
                f"{', '.join(proto.wire_cameras) or 'none'}"
            )
        if meta.cameras and meta.image_size is not None and tuple(meta.image_size) != tuple(proto.image_size):
            raise EvalkitError(
                f"policy {meta.name} expects {meta.image_size[0]}x{meta.image_size[1]} images but suite "
                f"{suite.name} sends {proto.image_size[0]}x{proto.image_size[1]}"
            )
        if meta.action_dim is not None and meta.action_dim != proto.action_dim:
            raise EvalkitError(
                f"policy {meta.name} returns {meta.action_dim}-dim actions but suite {suite.name} executes "
                f"{proto.action_dim}-dim actions"
            )
        if meta.privileged and not suite.privileged_obs:
            raise EvalkitError(
                f"policy {meta.name} needs privileged simulator state, which suite {suite.name} lacks"
            )
