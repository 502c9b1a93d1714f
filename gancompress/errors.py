"""One exception type for problems the user can fix.

The CLI turns a `UserError` into a single line on stderr and exit code 2, never a traceback.
Raise it with a message that names the offending file or value *and* the fix.
"""


class UserError(Exception):
    """Bad input or configuration: shown to the user as one line, exit code 2."""


def warn(message: str) -> None:
    """Print a one-line warning to stderr (kept here so every module warns the same way)."""
    import sys

    print(f"warning: {message}", file=sys.stderr)
