import sys


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def warn(message: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
