"""The `evalkit` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from evalkit.errors import EvalkitError

# Subcommands implemented elsewhere: name -> module exposing <name>_arguments(parser) and <name>_main(args).
EXTERNAL_COMMANDS = {
    "serve": ("evalkit.serving.cli", "serve a policy over openpi's websocket protocol"),
    "report": ("evalkit.report.cli", "write a run's report (markdown, CSV, Parquet, HTML)"),
    "leaderboard": ("evalkit.report.cli", "compare checkpoints across runs"),
    "regress": ("evalkit.report.cli", "paired regression test of a candidate run against a baseline"),
    "convert": ("evalkit.models.pi05.cli", "convert a pi0.5 checkpoint to evalkit's safetensors layout"),
    "make-tiny-checkpoint": (
        "evalkit.models.pi05.cli",
        "write a tiny random pi0.5 checkpoint for smoke tests",
    ),
}


def eval_arguments(parser: argparse.ArgumentParser) -> None:
    from evalkit.runner.config import VIDEO_MODES

    parser.add_argument("--suite", required=True, help="suite or group name (see `evalkit suites`)")
    parser.add_argument("--policy", required=True, help="zero, random, pi05, oracle, or ws://host:port")
    parser.add_argument("--checkpoint", help="pi0.5 checkpoint directory or hub id")
    parser.add_argument(
        "--tokenizer", help="PaliGemma SentencePiece model (default: checkpoint dir, openpi cache)"
    )
    parser.add_argument("--episodes-per-task", type=int, help="default: the protocol's (50 for LIBERO)")
    parser.add_argument("--tasks", type=int, nargs="+", help="task ids (default: all)")
    parser.add_argument("--workers", type=int, help="env worker processes (default: available cores)")
    parser.add_argument("--batch-size", type=int, default=16, help="max observations per policy call")
    parser.add_argument("--out", type=Path, help="run directory (default: results/<suite>__<policy>)")
    parser.add_argument("--video", choices=VIDEO_MODES, default="none")
    parser.add_argument("--seed", type=int, help="default: the protocol's (7 for openpi LIBERO)")
    parser.add_argument("--max-steps", type=int, help="override the per-suite step budget")
    parser.add_argument("--protocol", help="protocol preset, e.g. openpi (default) or lerobot")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--api-key", help="API key for a remote policy server")
    parser.add_argument(
        "--save-actions", action="store_true", help="also store executed actions (actions/*.npz)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def eval_main(args: argparse.Namespace) -> int:
    from evalkit.policies.base import PolicyUnavailableError
    from evalkit.report.summary import console_summary
    from evalkit.runner import EvalConfig, evaluate

    config = EvalConfig(
        suite=args.suite,
        policy=args.policy,
        out=args.out,
        checkpoint=args.checkpoint,
        tokenizer=args.tokenizer,
        episodes_per_task=args.episodes_per_task,
        tasks=tuple(args.tasks) if args.tasks else None,
        workers=args.workers,
        batch_size=args.batch_size,
        video=args.video,
        seed=args.seed,
        max_steps=args.max_steps,
        protocol=args.protocol,
        device=args.device,
        dtype=args.dtype,
        api_key=args.api_key,
        save_actions=args.save_actions,
    )
    try:
        run_dir = evaluate(config, progress=not args.quiet)
    except PolicyUnavailableError as exc:
        raise EvalkitError(
            f"{exc}; waiting episodes were recorded as errors, re-run the same command to resume"
        ) from exc
    except KeyboardInterrupt:
        print(
            f"\nevalkit: interrupted; finished episodes are kept in {config.run_dir()}, re-run to resume",
            file=sys.stderr,
        )
        return 130
    print(console_summary(run_dir))
    print(f"\nrun directory: {run_dir}")
    return 0


def suites_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def suites_main(args: argparse.Namespace) -> int:
    from evalkit.suites.registry import list_suites

    infos = list_suites()
    width = max(len(info.name) for info in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.kind:<7} {info.n_tasks:>4} tasks  {info.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalkit", description="Simulation benchmark harness for pi0.5 policies"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    own = {"eval": "evaluate a policy on a suite", "suites": "list suites and their task counts"}
    for name, help_text in own.items():
        globals()[f"{name}_arguments"](sub.add_parser(name, help=help_text))
    for name, (module_name, help_text) in EXTERNAL_COMMANDS.items():
        module = importlib.import_module(module_name)
        getattr(module, f"{name.replace('-', '_')}_arguments")(sub.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = args.command.replace("-", "_")
    module = (
        sys.modules[__name__]
        if args.command in ("eval", "suites")
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
