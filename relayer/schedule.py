"""Run one function on a fixed interval (apscheduler) until SIGTERM/SIGINT or a stop event."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from apscheduler.schedulers.blocking import BlockingScheduler


def run_every(seconds: float, job: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Call ``job`` now, then every ``seconds`` (never two at once; missed runs coalesce), until a signal or
    ``stop``. Blocks the calling thread."""
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
