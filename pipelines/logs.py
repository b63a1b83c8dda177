"""Logging: one format, configured in one place.

`configure_logging()` is called by the `tootlake` command and by each job's `main()` (the `spark-submit`
scripts). Progress and diagnostics (a job's batches, the services, the supervisor, the sync, the producer)
are logger calls and go to stderr in FORMAT; `print` is kept for what a command was asked to show (its
summary, tables, JSON results, `--help`) on stdout. Under `tootlake run` both streams go to the stage's log.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (a test's capture, a redirected stream),
    not to the stream of the moment logging was configured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - a text stream
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001 - StreamHandler.__init__ sets it; always sys.stderr
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Send INFO and above of every logger to stderr in FORMAT (once per process; later calls only set the
    level). Noisy libraries stay at WARNING."""
    root = logging.getLogger()
    if not any(isinstance(handler, _StderrHandler) for handler in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("py4j", "urllib3", "great_expectations", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
