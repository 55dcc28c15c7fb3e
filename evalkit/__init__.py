"""evalkit: a simulation benchmark harness for pi0.5 vision-language-action checkpoints."""

__version__ = "0.1.0"
