"""Published LIBERO success rates (openpi `examples/libero/README.md`, lerobot `docs/source/libero.mdx`, ...; each row names its source), as data. Shown beside measured rows, never pooled with them."""

from __future__ import annotations

from dataclasses import dataclass

LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")


@dataclass(frozen=True)
class PublishedRow:
    source: str
    model: str  # model / protocol as the source states it
    success_pct: dict[str, float]  # suite -> published success (%)
    average_pct: float | None  # as published (None: not given)
    episodes_per_suite: int | None  # None: not stated
    note: str = ""


def _row(source, model, values, average, episodes, note=""):
    return PublishedRow(source, model, dict(zip(LIBERO_SUITES, values, strict=True)), average, episodes, note)


PUBLISHED_LIBERO: tuple[PublishedRow, ...] = (
    _row(
        "openpi examples/libero/README.md", "pi05_libero @30k, 50/task", (98.8, 98.2, 98.0, 92.4), 96.85, 500
    ),
    _row("openpi README before 35106c9 (2025-09)", "pi0 @30k", (96.8, 98.8, 95.8, 85.2), 94.15, 500),
    _row("openpi README before 35106c9 (2025-09)", "pi0-FAST @30k", (96.4, 96.8, 88.6, 60.2), 85.5, 500),
    _row("vla-eval reproduction", "pi05_libero, 2000 episodes", (98.0, 99.6, 98.6, 94.6), 97.7, 500),
    _row("openpi#734 (user)", "pi05_libero", (97.4, 98.4, 97.6, 93.0), None, None),
    _row(
        "lerobot docs/source/libero.mdx, pi05.mdx",
        "pi05_libero +6k lerobot steps; 10/task, n_action_steps=10",
        (97.0, 99.0, 98.0, 96.0),
        97.5,
        100,
    ),
    _row(
        "HF card zuoxingdong/pi05_fm_libero",
        "own fine-tune, lerobot 0.6.0, 3 seeds x 50/task",
        (98.5, 99.1, 96.7, 93.3),
        96.9,
        1500,
        note="± over seeds: 0.3 / 0.6 / 0.5 / 0.7",
    ),
)
