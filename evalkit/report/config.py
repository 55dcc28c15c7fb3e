"""The configurations of `evalkit report`, `evalkit leaderboard` and `evalkit regress`: every default and help text
lives on a field here, and the commands' flags are generated from them (`evalkit.cli_args`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from evalkit.core.flags import flag
from evalkit.report.outcomes import OUTCOMES, Outcome

FORMATS = ("md", "csv", "parquet", "html")


@dataclass(frozen=True)
class ReportConfig:
    run: tuple[Path, ...] = field(
        metadata=flag(
            "run",
            "run directory (holds episodes.sqlite and manifest.json); two or more: a side-by-side comparison, "
            "the first run being the reference",
            type=Path,
            nargs="+",
        )
    )
    out: Path | None = field(
        default=None,
        metadata=flag(
            "--out",
            "output directory (default: RUN/report; for a comparison: <parent of RUN_A>/compare/A__vs__B)",
            type=Path,
        ),
    )
    formats: str = field(
        default="md,csv,parquet,html",
        metadata=flag(
            "--formats",
            f"comma list of {','.join(FORMATS)} (a comparison always writes compare.md and compare.html)",
        ),
    )
    embed_mb: float = field(
        default=50.0,
        metadata=flag(
            "--embed-mb", "MB of videos embedded in the HTML page; videos beyond it are linked", type=float
        ),
    )
    base: Path | None = field(
        default=None,
        metadata=flag(
            "--base",
            "a plain LIBERO run of the same checkpoint: pair each LIBERO-plus / LIBERO-PRO episode of RUN with its "
            "base task's episode of the same init state and seed, for paired robustness deltas per dimension "
            "(default: none; RUN's own LIBERO suites when it holds both)",
            type=Path,
            metavar="BASE_RUN",
        ),
    )


@dataclass(frozen=True)
class LeaderboardConfig:
    results: tuple[Path, ...] = field(
        default=(Path("results"),),
        metadata=flag(
            "results", "run directories or directories holding run directories", type=Path, nargs="*"
        ),
    )
    out: Path | None = field(
        default=None,
        metadata=flag(
            "--out",
            "write leaderboard.{md,csv,parquet,html} here (default: <first RESULTS directory>/leaderboard)",
            type=Path,
        ),
    )
    formats: str = field(
        default="md,csv,html", metadata=flag("--formats", f"comma list of {','.join(FORMATS)}")
    )
    alpha: float = field(
        default=0.05,
        metadata=flag(
            "--alpha",
            "error level of the paired ranking: every checkpoint's rank set holds its true rank, all at once, "
            "with probability >= 1 - alpha",
            type=float,
        ),
    )


# The default margin, 5 percentage points, is larger than the 1-2 pp spread between published reproductions of the
# same pi0.5 LIBERO checkpoint (openpi examples/libero/README.md against independent harnesses), so an unchanged
# checkpoint can pass; smaller than the drops a broken setup causes (10 pp and more); and within reach of the openpi
# LIBERO protocol: 500 paired episodes per suite at ~97% success give a 90% interval about +-1.6 pp wide.
DEFAULT_MAX_DROP = 5.0
# the regression gate's one-sided error level (each of its two questions), `evalkit regress` and `eval --against`
DEFAULT_ALPHA = 0.05
OUTCOME_HELP = (
    "the statistic the verdict rests on: success (binary) or progress (each episode's mean of its partial progress "
    "flags: LIBERO's BDDL goal predicates, DROID's stages)"
)


@dataclass(frozen=True)
class RegressConfig:
    baseline: Path = field(
        metadata=flag("--baseline", "run directory of the reference checkpoint", type=Path, required=True)
    )
    candidate: Path = field(
        metadata=flag("--candidate", "run directory of the checkpoint under test", type=Path, required=True)
    )
    alpha: float = field(
        default=DEFAULT_ALPHA, metadata=flag("--alpha", "one-sided significance level", type=float)
    )
    max_drop: float = field(
        default=DEFAULT_MAX_DROP,
        metadata=flag(
            "--max-drop",
            "non-inferiority margin: the largest acceptable drop, in percentage points",
            type=float,
        ),
    )
    outcome: Outcome = field(
        default="success",
        metadata=flag(
            "--outcome",
            OUTCOME_HELP + "; progress is judged with the anytime-valid test in the planned order "
            "(a run that stopped by decision: the statistic it stopped on)",
            choices=OUTCOMES,
        ),
    )
    min_episodes: int = field(
        default=10,
        metadata=flag(
            "--min-episodes", "a row with fewer pairs (and episodes) is not tested", type=int, metavar="N"
        ),
    )
    force: bool = field(
        default=False,
        metadata=flag("--force", "compare runs with different protocol fingerprints", action="store_true"),
    )
    allow_partial: bool = field(
        default=False,
        metadata=flag(
            "--allow-partial",
            "judge a candidate that has error episodes or lacks some of the baseline's episodes on the pairs "
            "it has (without it such a candidate never passes)",
            action="store_true",
        ),
    )


GATE = "regression gate (evalkit regress's question, asked while the run goes)"


@dataclass(frozen=True)
class GateConfig:
    """`evalkit eval --against RUN_DIR`: pair the run with a finished baseline as it goes (`evalkit.report.gate`)."""

    against: Path | None = field(
        default=None,
        metadata=flag(
            "--against",
            "a finished baseline run of the same protocol: pair this run with it as it goes and show the "
            "anytime-valid gate's verdict and interval in the progress line (default: none)",
            GATE,
            type=Path,
            metavar="RUN_DIR",
        ),
    )
    stop_when_decided: bool = field(
        default=False,
        metadata=flag(
            "--stop-when-decided",
            "with --against: end the run as soon as the verdict is decided (a significant drop in a row, or a "
            "drop larger than --max-drop ruled out in every row) and record it; `evalkit regress` then gives the "
            "same verdict",
            GATE,
            action="store_true",
        ),
    )
    alpha: float = field(
        default=DEFAULT_ALPHA,
        metadata=flag("--alpha", "with --against: one-sided level of each question", GATE, type=float),
    )
    max_drop: float = field(
        default=DEFAULT_MAX_DROP,
        metadata=flag(
            "--max-drop",
            "with --against: non-inferiority margin, the largest acceptable drop in percentage points",
            GATE,
            type=float,
        ),
    )
    outcome: Outcome = field(
        default="success",
        metadata=flag("--outcome", "with --against: " + OUTCOME_HELP, GATE, choices=OUTCOMES),
    )

    def gate_flags_given(self) -> list[str]:
        """The gate's flags given other than --against, by name (without --against they would do nothing)."""
        return [
            f.metadata["flag"]
            for f in fields(self)
            if f.name != "against" and getattr(self, f.name) != f.default
        ]
