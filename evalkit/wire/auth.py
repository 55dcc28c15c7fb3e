"""API keys on the wire: `Authorization: Api-Key <key>`, from `--api-key` or the `EVALKIT_API_KEY` variable.

A key given as a flag is visible to every user of the machine (`ps`) for the whole run, so the commands that take
one say so once and point at the variable; the key itself is never printed, logged or written.
"""

from __future__ import annotations

import hmac
import os
import sys
from collections.abc import Mapping

API_KEY_ENV = "EVALKIT_API_KEY"
AUTH_HEADER = "Authorization"


def key_from_environment() -> str | None:
    """`EVALKIT_API_KEY`, or None when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


def auth_headers(api_key: str | None) -> dict[str, str] | None:
    """The headers a client sends (None without a key)."""
    return {AUTH_HEADER: f"Api-Key {api_key}"} if api_key else None


def is_authorized(headers: Mapping[str, str], api_key: str) -> bool:
    """Whether a request's headers carry `api_key` (compared in constant time)."""
    given = headers.get(AUTH_HEADER, "")
    return hmac.compare_digest(given.encode(), f"Api-Key {api_key}".encode())


def hint_if_key_on_command_line(command: str) -> None:
    """One line on stderr after `--api-key` was given: the key shows in `ps`; the variable does not."""
    print(
        f"evalkit {command}: note: a key given with --api-key is visible to other users (ps) while this runs; "
        f"set {API_KEY_ENV} instead",
        file=sys.stderr,
        flush=True,
    )
