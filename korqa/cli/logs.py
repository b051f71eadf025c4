"""Where the command line's warnings go: to stderr through `tqdm.write`, which clears the
progress bars, prints the line and draws them again, so that a warning never lands on a bar's
line (as Python's own fallback, printing straight to stderr, does)."""

from __future__ import annotations

import logging
import sys


class ProgressBarSafeHandler(logging.Handler):
    """Writes each record as its message alone, on a line of its own under the bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            from tqdm import tqdm  # only once something is logged: `korqa --help` stays fast

            # sys.stderr as it is now, not at start: tests and callers may have replaced it.
            tqdm.write(message, file=sys.stderr)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


def route_warnings_past_progress_bars() -> None:
    """Send korqa's log warnings and Python's `warnings` (through logging) to stderr past the
    progress bars; once per process, however often the command line runs in it."""
    root = logging.getLogger()
    if any(isinstance(handler, ProgressBarSafeHandler) for handler in root.handlers):
        return
    handler = ProgressBarSafeHandler(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    logging.captureWarnings(True)
