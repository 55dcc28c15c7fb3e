"""The ground floor: the facts every other part of evalkit shares, in one place each.

- `embodiment`: the wire contract of each robot (image keys, state keys and dims, action dim, control rate).
- `policy`: what a policy receives and declares (`Observation`, `PolicyRequest`, `PolicyMeta`, `Policy`, `PolicyOptions`).
- `protocol`: what an evaluation means (`EvalProtocol`, `TaskSpec`, `SuiteSpec`, `episodes_for`).
- `episode`: the unit of work and its result (`EpisodeSpec`, `EpisodeResult`).
- `errors`: `EvalkitError`, the one user-facing error.

Nothing here imports anything else of evalkit.
"""
