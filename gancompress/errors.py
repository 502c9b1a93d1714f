"""One exception type for problems the user can fix.

The CLI turns a `UserError` into a single line on stderr and exit code 2, never a traceback.
Raise it with a message that names the offending file or value *and* the fix.
"""


class UserError(Exception):
    """Bad input or configuration: shown to the user as one line, exit code 2."""


def warn(message: str) -> None:
    """A one-line warning (through the "gancompress" logger: stderr by default, log.py)."""
    from .log import logger

    logger.warning(message)


# OS errors a user fixes by freeing space, choosing another place or changing permissions
_OS_FIXES = {
    "ENOSPC": "the disk is full: free some space (or choose another location) and run the same command "
              "again; a run resumes from its last checkpoint",
    "EDQUOT": "the disk quota is exhausted: free some space (or choose another location) and run the same "
              "command again; a run resumes from its last checkpoint",
    "EFBIG": "the file is too large for this file system: choose another location",
    "EROFS": "the file system is read-only: choose a writable location (for a run, another --out)",
    "EACCES": "permission denied: fix the permissions of that path or choose another location",
    "EPERM": "operation not permitted: fix the permissions of that path or choose another location",
}


def os_error_message(e: OSError) -> str | None:
    """One line naming the path and the fix for the OS errors a user can fix; None for others."""
    import errno

    name = errno.errorcode.get(e.errno or -1)
    if name not in _OS_FIXES:
        return None
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or name} ({name}); {_OS_FIXES[name]}"
