"""`evalkit watch CKPT_ROOT --suite S`: evaluate every checkpoint a training run writes, as it is written.

Flags are generated from config dataclasses, as `eval`'s are: the watch's own (`WatchConfig`), `eval`'s run
options (`EvalConfig`, without --out: the watch directory holds one run directory per checkpoint), the pi0.5 loading
options (`PolicyOptions`; every checkpoint is loaded as `--policy pi05`), the gate's (`RegressConfig`) and the
trackers' (`TrackerOptions`). Exit codes: 0 every checkpoint taken was evaluated in full (--once); 2 bad input or
refusal; 4 some checkpoint failed to load or has episodes in error (watch.json and the report say which); 130 Ctrl-C,
143 SIGTERM (the same command resumes).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from evalkit.cli_args import add_dataclass_arguments, dataclass_from_arguments
from evalkit.core.policy import PolicyOptions
from evalkit.report.config import RegressConfig
from evalkit.runner.config import EvalConfig
from evalkit.trackers.config import TrackerOptions
from evalkit.watch.config import WatchConfig

if TYPE_CHECKING:
    from evalkit.trackers.base import Tracker

# PolicyOptions fields a watch sets itself (the policy is pi05, the checkpoint each one found) or has no use for
POLICY_SKIP = ("name", "checkpoint", "api_key", "timeout_s")
GATE = ("alpha", "max_drop", "min_episodes")
GATE_HEADING = "gate (with --against; as `evalkit regress`)"


def watch_arguments(parser: argparse.ArgumentParser) -> None:
    from evalkit.cli import protocol_help

    add_dataclass_arguments(parser, WatchConfig)
    add_dataclass_arguments(parser, PolicyOptions, skip=POLICY_SKIP, title="policy (each checkpoint as pi05)")
    add_dataclass_arguments(parser, EvalConfig, skip=("out",), helps={"protocol": protocol_help()})
    skip = tuple(f for f in RegressConfig.__dataclass_fields__ if f not in GATE)
    add_dataclass_arguments(parser, RegressConfig, skip=skip, title=GATE_HEADING)
    add_dataclass_arguments(parser, TrackerOptions)
    parser.add_argument(
        "--quiet", action="store_true", help="no plan and no progress per checkpoint (default: off)"
    )


def watch_main(args: argparse.Namespace) -> int:
    from evalkit.trackers.base import check_trackers

    config = dataclass_from_arguments(WatchConfig, args)
    config.check()
    tracking = dataclass_from_arguments(TrackerOptions, args)
    trackers = check_trackers(
        tracking
    )  # before anything runs: an unknown tracker or missing extra is one line
    policy = dataclass_from_arguments(PolicyOptions, args, name="pi05")
    eval_config = dataclass_from_arguments(EvalConfig, args, suite=config.suite, policy=policy)
    gate = {name: getattr(args, name) for name in GATE} | {"stop_when_decided": config.stop_when_decided}
    return run_watch(config, eval_config, gate, trackers, tracking, progress=not args.quiet)


def run_watch(
    config: WatchConfig,
    eval_config: EvalConfig,
    gate_settings: dict[str, Any],
    trackers: list[Tracker],
    tracking: TrackerOptions,
    progress: bool = True,
) -> int:
    """The watch, from resolved configs (`watch_main` parses them). Returns the exit code."""
    from evalkit.report.plots import load_matplotlib
    from evalkit.rundir.lock import RunLock
    from evalkit.runner.evaluate import EvalSession
    from evalkit.runner.outcome import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
    from evalkit.runner.runner import Terminated, stop_on_signals
    from evalkit.watch.gate import Gate
    from evalkit.watch.state import load_state, one_line
    from evalkit.watch.tracking import WatchTrackers
    from evalkit.watch.watcher import Watcher, WatchSetup, say

    watch_dir = config.watch_dir()
    # imported before any signal can land: a Ctrl-C inside matplotlib's first import leaves it half-initialised,
    # and the report written on the way out would then fail
    load_matplotlib()
    session: EvalSession | None = None
    watcher: Watcher | None = None
    with stop_on_signals(lambda: session.kill_now() if session is not None else None):
        session = EvalSession(eval_config)
        try:
            gate = Gate.open(config.against, gate_settings, session.suites) if config.against else None
            state = load_state(watch_dir, config.ckpt_root, config.suite)
            watch_dir.mkdir(parents=True, exist_ok=True)
            with RunLock(watch_dir):
                tracked = WatchTrackers(trackers, tracking, watch_dir, state)
                setup = WatchSetup(config, eval_config.policy, gate, tracked, progress)
                watcher = Watcher(setup, session, state, watch_dir)
                say(f"watching {config.ckpt_root} for {config.suite} -> {watch_dir}")
                try:
                    watcher.run()
                finally:
                    for line in tracked.close():
                        say(f"logged to {line}")
                    watcher.save()
        except KeyboardInterrupt as stop:
            for sig in (signal.SIGINT, signal.SIGTERM):  # already exiting: a further signal changes nothing
                signal.signal(sig, signal.SIG_IGN)
            session.close(graceful=False)
            link = None
            try:
                link = watcher.write_report(force=True) if watcher is not None else None
            except Exception as error:  # the signal may have landed inside the report's own writing
                say(f"report not written ({one_line(error)}); the next watch writes it")
            print(
                f"\nevalkit watch: stopped; finished checkpoints are kept in {watch_dir}, the same command resumes"
                + (f"\nreport: {link}" if link else ""),
                file=sys.stderr,
            )
            return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
        except BaseException:
            session.close(graceful=False)
            raise
        session.close()
    link = watcher.write_report(force=True)
    print(f"\nwatch directory: {watch_dir}")
    if link:
        print(f"report: {link}")
    unfinished = state.by_status("failed") + state.by_status("incomplete")
    return EXIT_INCOMPLETE if unfinished else EXIT_OK
