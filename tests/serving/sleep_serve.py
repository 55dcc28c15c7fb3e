"""`evalkit serve` with one test-only policy added, `sleep`, whose every call sleeps SLEEP_POLICY_S seconds.

A stand-in for a model that takes minutes per call on a CPU, to test shutdown with a batch in flight through the
real command (`python -m tests.serving.sleep_serve --policy sleep --no-warmup ...`, run from the repository root).
"""

import sys

from evalkit.policies import registry
from evalkit.serving.cli import main

registry.BUILDERS["sleep"] = "tests.serving.wire_helpers:make_sleep_policy"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
