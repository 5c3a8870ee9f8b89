"""The relayer's loop keeps apscheduler's overlap warnings and per-run lines out of the logs."""

from __future__ import annotations

import logging

import pytest

from relayer.schedule import quiet_scheduler_logs


def test_overlap_warnings_are_dropped_and_errors_kept(caplog: pytest.LogCaptureFixture) -> None:
    quiet_scheduler_logs()
    caplog.set_level(logging.DEBUG)
    scheduler = logging.getLogger("apscheduler.scheduler")
    scheduler.warning('Execution of job "tick" skipped: maximum number of running instances reached (1)')
    scheduler.error("something else went wrong")
    logging.getLogger("apscheduler.executors.default").info('Job "tick" executed successfully')
    assert "maximum number of running instances" not in caplog.text
    assert "executed successfully" not in caplog.text
    assert "something else went wrong" in caplog.text
