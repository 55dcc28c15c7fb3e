"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class EvalkitError(Exception):
    """A user-facing error: bad input, a mismatch, a missing backend. Printed as one line, exit code 2."""
