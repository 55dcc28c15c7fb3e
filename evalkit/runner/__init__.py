"""Parallel, resumable evaluation: `evaluate(EvalConfig(...))`."""

from evalkit.runner.config import EvalConfig
from evalkit.runner.evaluate import evaluate

__all__ = ["EvalConfig", "evaluate"]
