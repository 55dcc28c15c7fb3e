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
pairs a row uses the exact McNemar test; with fewer pairs but at least --min-episodes episodes per run, Fisher's
exact test on all episodes (unpaired). Differences carry Newcombe's hybrid score 95% interval (paired or
independent). Per-suite rows test at alpha / number of suites (Bonferroni); the overall row at alpha.
Exit codes: 0 no regression; 1 regression (one-sided p < alpha for a drop, or a drop > --max-drop pp, in any
tested row); 2 usage error or refusal (protocol fingerprints differ and no --force); 3 inconclusive (no
regression found, but the overall row had too few episodes)."""


def regress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = REGRESS_EPILOG
    parser.add_argument(
        "--baseline", type=Path, required=True, help="run directory of the reference checkpoint"
    )
    parser.add_argument(
        "--candidate", type=Path, required=True, help="run directory of the checkpoint under test"
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="one-sided significance level for a drop")
    parser.add_argument(
        "--max-drop", type=float, help="also fail when success drops by more than this many pp"
    )
    parser.add_argument("--min-episodes", type=int, default=10, help="fewer pairs/episodes → inconclusive")
    parser.add_argument(
        "--force", action="store_true", help="compare runs with different protocol fingerprints"
    )


def regress_main(args: argparse.Namespace) -> int:
    from evalkit.report.regress import compare_runs, render
    from evalkit.rundir.run import load_run

    baseline, candidate = load_run(args.baseline), load_run(args.candidate)
    result = compare_runs(baseline, candidate, args.alpha, args.max_drop, args.min_episodes, args.force)
    print(render(result, baseline, candidate))
    return result.exit_code
