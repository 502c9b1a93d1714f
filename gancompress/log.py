"""gancompress's messages go through stdlib `logging` (the logger "gancompress"), so a library user
can route or silence them, and the CLI's -v/-q set one level.

By default the logger writes its messages to stderr itself (level INFO, "warning: " before
warnings) and does not pass them on, so a script that never configures logging still sees a
long run's progress. `use_root_handlers()` hands them to the application's own logging instead;
`logging.getLogger("gancompress").setLevel(logging.WARNING)` keeps only warnings. Progress bars
(tqdm) are separate: `quiet=True` turns them off.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("gancompress")


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (redirections and test capture see it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the run
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"{record.levelname.lower()}: {msg}" if record.levelno >= logging.WARNING else msg


def _install() -> None:
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        h = _StderrHandler()
        h.setFormatter(_Formatter())
        logger.addHandler(h)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def use_root_handlers() -> None:
    """Send gancompress's messages to the application's handlers (the root logger's) instead of
    writing them to stderr."""
    for h in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(h)
    logger.propagate = True


def set_verbosity(verbose: int = 0, quiet: bool = False) -> None:
    """The CLI's -v (DEBUG) and -q (warnings and errors only); INFO otherwise."""
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def info(msg: str) -> None:
    """A message for the user (rank 0 only under torchrun)."""
    from .distributed import is_main

    if is_main():
        logger.info(msg)


def debug(msg: str) -> None:
    """Detail shown with -v: stage times, cache hits."""
    from .distributed import is_main

    if is_main():
        logger.debug(msg)


_install()
