"""The `evalkit` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from evalkit.core.errors import EvalkitError

# Subcommands implemented elsewhere: name -> module exposing <name>_arguments(parser) and <name>_main(args).
EXTERNAL_COMMANDS = {
    "suites": ("evalkit.suites.cli", "list suites, or show one with its protocol and tasks"),
    "serve": ("evalkit.serving.cli", "serve a policy over openpi's websocket protocol"),
    "report": ("evalkit.report.cli", "write a run's report (markdown, CSV, Parquet, HTML)"),
    "leaderboard": ("evalkit.report.cli", "compare checkpoints across runs"),
    "regress": ("evalkit.report.cli", "paired regression test of a candidate run against a baseline"),
    "export": (
        "evalkit.report.export",
        "export a run for leaderboards: per-episode Parquet, eval_results.json, Hugging Face .eval_results YAML",
    ),
    "watch": (
        "evalkit.watch.cli",
        "evaluate each new checkpoint of a training run as it is written (curves, gate, held-out selection)",
    ),
    "convert": ("evalkit.models.pi05.cli", "convert a pi0.5 checkpoint to evalkit's safetensors layout"),
    "make-tiny-checkpoint": (
        "evalkit.models.pi05.cli",
        "write a tiny random pi0.5 checkpoint for smoke tests",
    ),
}


def eval_arguments(parser: argparse.ArgumentParser) -> None:
    from evalkit.cli_args import add_dataclass_arguments
    from evalkit.core.policy import PolicyOptions
    from evalkit.report.config import GateConfig
    from evalkit.runner.config import EvalConfig
    from evalkit.trackers.config import TrackerOptions

    parser.add_argument("--suite", required=True, help="suite or group name (see `evalkit suites`)")
    add_dataclass_arguments(parser, PolicyOptions, title="policy")
    add_dataclass_arguments(parser, EvalConfig, helps={"protocol": protocol_help()})
    add_dataclass_arguments(parser, GateConfig)
    add_dataclass_arguments(parser, TrackerOptions)
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no plan and no progress (default: off; without a terminal, progress is a status line every 30 s)",
    )


def protocol_help() -> str:
    """`--protocol`'s help: every preset under tasks/<kind>/protocols/, by suite kind (never stale)."""
    from evalkit.suites.registry import PROTOCOL_DIR, tasks_dirs

    presets: dict[str, set[str]] = {}
    for root in tasks_dirs():
        for path in root.glob(f"*/{PROTOCOL_DIR}/*.yaml"):
            presets.setdefault(path.parent.parent.name, set()).add(path.stem)
    listed = "; ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(presets.items()))
    return f"protocol preset ({listed}) (default: the suite's own, e.g. openpi for LIBERO)"


def open_gate(config, options):
    """The sequential gate of `eval --against` (None without it), checked before anything runs or is written."""
    from evalkit.core.errors import EvalkitError

    if options.against is None:
        given = options.gate_flags_given()
        if given:
            raise EvalkitError(f"{', '.join(given)} need --against RUN_DIR (a finished baseline run)")
        return None
    from evalkit.core.protocol import balanced_order, episodes_for
    from evalkit.report.gate import SequentialGate
    from evalkit.rundir.manifest import suite_records
    from evalkit.runner.evaluate import check_config, resolve_suites

    check_config(config)
    suites = resolve_suites(config)
    records = suite_records(suites)
    plan = balanced_order(episodes_for(suites), {name: r.protocol_fingerprint for name, r in records.items()})
    return SequentialGate.open(options, plan, records, config.run_dir())


def eval_main(args: argparse.Namespace) -> int:
    """Exit codes: evalkit.runner.outcome (0 complete, 2 usage/refusal, 4 incomplete, 130/143 interrupted)."""
    from evalkit.cli_args import dataclass_from_arguments
    from evalkit.core.policy import PolicyOptions
    from evalkit.report.config import GateConfig
    from evalkit.report.report import report_link, write_report
    from evalkit.report.summary import console_summary
    from evalkit.runner import EvalConfig
    from evalkit.runner.evaluate import run_evaluation
    from evalkit.runner.outcome import EXIT_INTERRUPTED, EXIT_TERMINATED
    from evalkit.runner.runner import Terminated
    from evalkit.trackers.base import check_trackers
    from evalkit.trackers.config import TrackerOptions
    from evalkit.trackers.log import log_run

    policy = dataclass_from_arguments(PolicyOptions, args)
    if policy.api_key is not None:
        from evalkit.wire.auth import hint_if_key_on_command_line

        hint_if_key_on_command_line("eval")
    config = dataclass_from_arguments(EvalConfig, args, suite=args.suite, policy=policy)
    tracking = dataclass_from_arguments(TrackerOptions, args)
    # before anything runs: an unknown tracker or missing extra is one line
    trackers = check_trackers(tracking)
    gate = open_gate(config, dataclass_from_arguments(GateConfig, args))
    hooks = {"stop_when": gate.observe, "status": gate.status} if gate else {}
    try:
        outcome = run_evaluation(config, progress=not args.quiet, **hooks)
    except KeyboardInterrupt as exc:
        for sig in (signal.SIGINT, signal.SIGTERM):  # already exiting: a further signal changes nothing
            signal.signal(sig, signal.SIG_IGN)
        print(
            f"\nevalkit: interrupted; finished episodes are kept in {config.run_dir()}, re-run to resume",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    print(console_summary(outcome.run_dir))
    report = write_report(outcome.run_dir)
    print(f"\nrun directory: {outcome.run_dir}")
    print(f"report: {report_link(report)}")
    for line in gate.summary(outcome.run_dir) if gate else ():
        print(line)
    for line in log_run(trackers, outcome.run_dir, tracking):
        print(f"logged to {line}")
    if outcome.last_line():
        print(outcome.last_line(), file=sys.stderr)
    return outcome.exit_code


def build_parser() -> argparse.ArgumentParser:
    # No abbreviated flags: `--api SECRET` would be taken as --api-key yet escape the manifest's redaction of the
    # command line, and an abbreviation that a new flag makes ambiguous would change what old commands mean.
    parser = argparse.ArgumentParser(
        prog="evalkit", description="Simulation benchmark harness for pi0.5 policies", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)
    own = {"eval": "evaluate a policy on a suite"}
    for name, help_text in own.items():
        globals()[f"{name}_arguments"](sub.add_parser(name, help=help_text, allow_abbrev=False))
    for name, (module_name, help_text) in EXTERNAL_COMMANDS.items():
        module = importlib.import_module(module_name)
        getattr(module, f"{name.replace('-', '_')}_arguments")(
            sub.add_parser(name, help=help_text, allow_abbrev=False)
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = args.command.replace("-", "_")
    module = (
        sys.modules[__name__]
        if args.command == "eval"
        else importlib.import_module(EXTERNAL_COMMANDS[args.command][0])
    )
    try:
        return int(getattr(module, f"{name}_main")(args) or 0)
    except EvalkitError as exc:
        print(f"evalkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nevalkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
