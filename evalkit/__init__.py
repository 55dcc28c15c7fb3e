"""evalkit: a simulation benchmark harness for pi0.5 vision-language-action checkpoints.

`from evalkit import evaluate` is the Python API (`evalkit.api`); it is imported on first use, so `import evalkit`
stays light for the command line and the env workers.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("evaluate", "EvalResult"):
        from evalkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'evalkit' has no attribute {name!r}")
