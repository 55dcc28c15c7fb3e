"""Parallel, resumable evaluation: `evaluate(EvalConfig(...))`."""

from evalkit.runner.config import EvalConfig
from evalkit.runner.evaluate import evaluate, summary_table

__all__ = ["EvalConfig", "evaluate", "summary_table"]
