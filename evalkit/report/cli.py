"""The `report`, `leaderboard` and `regress` subcommands. Heavy imports happen inside the *_main functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run",
        type=Path,
        nargs="+",
        help="run directory (holds episodes.sqlite and manifest.json); two or more: a side-by-side comparison, "
        "the first run being the reference",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: RUN/report; for a comparison: <parent of RUN_A>/compare/A__vs__B)",
    )
    parser.add_argument(
        "--formats",
        default="md,csv,parquet,html",
        help="comma list of md,csv,parquet,html (a comparison writes compare.md and compare.html)",
    )
    parser.add_argument(
        "--embed-mb",
        type=float,
        default=50.0,
        help="MB of videos embedded in the HTML page; the rest are linked",
    )


def report_main(args: argparse.Namespace) -> int:
    from evalkit.core.errors import EvalkitError
    from evalkit.report.report import parse_formats, report_link, write_report

    if args.embed_mb < 0:
        raise EvalkitError(f"--embed-mb must be >= 0, got {args.embed_mb}")
    if len(args.run) > 1:
        from evalkit.report.compare import write_comparison

        _, markdown, files = write_comparison(args.run, args.out, int(args.embed_mb * 2**20))
        print(markdown)
        print(f"report: {files[-1].resolve().as_uri()}")
        return 0
    result = write_report(args.run[0], args.out, parse_formats(args.formats), int(args.embed_mb * 2**20))
    print(result.markdown)
    print(f"report written to {result.out_dir} ({', '.join(p.name for p in result.files)})", file=sys.stderr)
    print(f"report: {report_link(result)}")
    return 0


def leaderboard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        type=Path,
        nargs="*",
        default=[Path("results")],
        help="run directories or directories holding run directories (default: results/)",
    )
    parser.add_argument("--out", type=Path, help="write leaderboard.{md,csv,parquet,html} here")
    parser.add_argument("--formats", default="md,csv,html", help="comma list of md,csv,parquet,html")


def leaderboard_main(args: argparse.Namespace) -> int:
    from evalkit.report.leaderboard import write_leaderboard
    from evalkit.report.report import parse_formats

    markdown, files = write_leaderboard(list(args.results), args.out, parse_formats(args.formats))
    print(markdown)
    if files:
        print(f"leaderboard written to {args.out} ({', '.join(p.name for p in files)})", file=sys.stderr)
    return 0


REGRESS_EPILOG = """\
Episodes pair on (suite, task_id, init_state, seed); error episodes are excluded. With at least --min-episodes
pairs a row uses the exact McNemar test and Newcombe's paired interval; with fewer pairs but at least
--min-episodes episodes per run, Fisher's exact test and Newcombe's independent interval on all episodes.
Per-suite rows test at alpha / number of suites (Bonferroni); the overall row at alpha. Intervals are at
1 - 2*alpha, so each bound is one-sided at alpha.
Exit codes (use `evalkit regress` in CI, not `make regress`: make turns every failure into 2):
  0  pass: every row rules out a drop larger than --max-drop pp and none shows a significant drop
  1  regression: a significant drop (one-sided p < alpha) in some row
  2  bad input or refusal: unreadable run, bad argument, different protocol fingerprints without --force
  3  inconclusive: no significant drop, but the data cannot rule out a drop larger than --max-drop pp
The last line of the output states the verdict with both success rates."""


def regress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = REGRESS_EPILOG
    parser.add_argument(
        "--baseline", type=Path, required=True, help="run directory of the reference checkpoint"
    )
    parser.add_argument(
        "--candidate", type=Path, required=True, help="run directory of the checkpoint under test"
    )
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="one-sided significance level (default 0.05)"
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        help="non-inferiority margin: the largest acceptable drop, in pp (default 5)",
    )
    parser.add_argument(
        "--min-episodes",
        type=int,
        default=10,
        help="fewer pairs/episodes: the row is not tested (default 10)",
    )
    parser.add_argument(
        "--force", action="store_true", help="compare runs with different protocol fingerprints"
    )


def regress_main(args: argparse.Namespace) -> int:
    from evalkit.report.regress import DEFAULT_MAX_DROP, compare_runs, render
    from evalkit.rundir.run import load_run

    baseline, candidate = load_run(args.baseline), load_run(args.candidate)
    max_drop = DEFAULT_MAX_DROP if args.max_drop is None else args.max_drop
    result = compare_runs(baseline, candidate, args.alpha, max_drop, args.min_episodes, args.force)
    print(render(result, baseline, candidate))
    return result.exit_code
