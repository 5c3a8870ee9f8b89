"""Run one function on a fixed interval (apscheduler) until SIGTERM/SIGINT or a stop event."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from apscheduler.schedulers.blocking import BlockingScheduler


class _SkipOverlaps(logging.Filter):
    """Drop apscheduler's "skipped: maximum number of running instances reached": a pass that outlasts the
    interval is expected under load (the next one starts when it ends), not worth a WARNING every tick."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def quiet_scheduler_logs() -> None:
    """Keep apscheduler's per-run INFO lines and overlap warnings out of the logs; errors still show."""
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkipOverlaps) for f in scheduler_log.filters):
        scheduler_log.addFilter(_SkipOverlaps())


def run_every(seconds: float, job: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Call ``job`` now, then every ``seconds`` (never two at once; missed runs coalesce), until a signal or
    ``stop``. Blocks the calling thread."""
    quiet_scheduler_logs()
    scheduler = BlockingScheduler()
    scheduler.add_job(job, "interval", seconds=seconds, max_instances=1, coalesce=True, misfire_grace_time=None)

    def shutdown(*_: object) -> None:
        scheduler.shutdown(wait=False)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
    if stop is not None:
        threading.Thread(target=lambda: (stop.wait(), shutdown()), daemon=True).start()
    job()
    scheduler.start()
