"""robosuite prints three "no private macro file" warnings when first imported; suites import it through this."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_robosuite_import() -> Iterator[None]:
    logger = logging.getLogger("robosuite_logs")
    level = logger.level
    if "robosuite" not in sys.modules:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
