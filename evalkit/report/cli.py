"""The `report`, `leaderboard` and `regress` subcommands. Their flags are generated from the config dataclasses in
`evalkit.report.config`; heavy imports happen inside the *_main functions."""

from __future__ import annotations

import argparse
import sys

from evalkit.cli_args import add_dataclass_arguments, dataclass_from_arguments
from evalkit.report.config import LeaderboardConfig, RegressConfig, ReportConfig


def report_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, ReportConfig)


def report_main(args: argparse.Namespace) -> int:
    from evalkit.core.errors import EvalkitError
    from evalkit.report.report import parse_formats, report_link, write_report

    config = dataclass_from_arguments(ReportConfig, args)
    if not config.embed_mb >= 0:
        raise EvalkitError(f"--embed-mb must be >= 0, got {config.embed_mb}")
    budget = int(config.embed_mb * 2**20)
    if len(config.run) > 1:
        from evalkit.report.compare import write_comparison

        if config.base is not None:
            raise EvalkitError("--base is for one run; a comparison pairs perturbed and plain runs itself")

        _, markdown, files = write_comparison(list(config.run), config.out, budget)
        print(markdown)
        print(f"report: {files[-1].resolve().as_uri()}")
        return 0
    result = write_report(config.run[0], config.out, parse_formats(config.formats), budget, config.base)
    print(result.markdown)
    print(f"report written to {result.out_dir} ({', '.join(p.name for p in result.files)})", file=sys.stderr)
    print(f"report: {report_link(result)}")
    return 0


def leaderboard_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, LeaderboardConfig)


def leaderboard_main(args: argparse.Namespace) -> int:
    from evalkit.report.leaderboard import leaderboard_link, write_leaderboard
    from evalkit.report.report import parse_formats

    config = dataclass_from_arguments(LeaderboardConfig, args)
    out, markdown, files = write_leaderboard(
        list(config.results), config.out, parse_formats(config.formats), config.alpha
    )
    print(markdown)
    print(f"leaderboard written to {out} ({', '.join(p.name for p in files)})", file=sys.stderr)
    print(f"leaderboard: {leaderboard_link(out, files)}")
    return 0


REGRESS_EPILOG = """\
Episodes pair on (suite, task_id, init_state, seed); error episodes are excluded. With at least --min-episodes
pairs a row uses the exact McNemar test and Newcombe's paired interval; with fewer pairs but at least
--min-episodes episodes per run, Fisher's exact test and Newcombe's independent interval on all episodes;
otherwise the row is not tested. Per-suite rows test at alpha / number of suites (Bonferroni); the overall row at
alpha. Intervals are at 1 - 2*alpha, so each bound is one-sided at alpha.
A candidate with error episodes, or without some of the baseline's episodes, never passes unless --allow-partial
is given or it stopped by decision (eval --stop-when-decided); a run that stopped by decision is judged with its
own anytime-valid test at its recorded alpha, margin and statistic, on the pairs it was fed (the first planned
episodes). --outcome progress judges each episode's mean of its progress flags with the anytime-valid test in the
planned order. The "sequential view" shows, for information, where that test would have decided on success and on
progress.
Exit codes (use `evalkit regress` in CI, not `make regress`: make turns every failure into 2):
  0  pass: every row rules out a drop larger than --max-drop pp and none shows a significant drop
  1  regression: a significant drop (one-sided p < alpha) in some row
  2  bad input or refusal: unreadable run, bad argument, the same run twice, different protocol fingerprints
     without --force
  3  inconclusive: no significant drop, but some row cannot rule out a drop larger than --max-drop pp, has too
     few pairs to test, or the candidate is incomplete
The last line of the output states the verdict with both success rates and the coverage."""


def regress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = REGRESS_EPILOG
    add_dataclass_arguments(parser, RegressConfig)


def regress_main(args: argparse.Namespace) -> int:
    from evalkit.report.regress import compare_runs, render
    from evalkit.rundir.run import load_run

    config = dataclass_from_arguments(RegressConfig, args)
    baseline, candidate = load_run(config.baseline), load_run(config.candidate)
    result = compare_runs(
        baseline,
        candidate,
        config.alpha,
        config.max_drop,
        config.min_episodes,
        config.force,
        config.allow_partial,
        config.outcome,
    )
    print(render(result, baseline, candidate))
    return result.exit_code
