"""The terminal filters of a pipeline run: bookkeeping lines dropped, library lines named after
their run, one-line errors without traceback; records keep their content for the Prefect API."""

from __future__ import annotations

import logging

from tasks.console import _ConsoleFilter


def _record(name: str, level: int, msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    return logging.LogRecord(name, level, __file__, 1, msg, None, exc_info)


def test_completed_task_lines_and_thread_timeout_warnings_are_dropped() -> None:
    keep = _ConsoleFilter().filter
    assert not keep(_record("prefect.task_runs", logging.INFO, "Finished in state Completed()"))
    assert not keep(_record("prefect.task_runs", logging.INFO, "Finished in state Cached(type=COMPLETED)"))
    assert keep(_record("prefect.task_runs", logging.ERROR, "Finished in state Failed('boom')"))
    assert keep(_record("prefect.flow_runs", logging.INFO, "Finished in state Completed()"))
    warning = "Timeout of 45000.0 seconds configured ... Timeouts in worker threads cannot interrupt blocking"
    assert not keep(_record("prefect.task_runs", logging.WARNING, warning))


def test_self_explaining_errors_lose_their_traceback_only() -> None:
    keep = _ConsoleFilter().filter
    record = _record("prefect.task_runs", logging.ERROR, "Task run failed with exception", ValueError("bad key x"))
    assert keep(record) and record.exc_info is None
    assert record.getMessage() == "Task run failed with exception: bad key x"
    other = _record("prefect.task_runs", logging.ERROR, "Task run failed", KeyError("k"))
    assert keep(other) and other.exc_info is not None  # a bug keeps its traceback


def test_flow_run_url_falls_back_to_the_local_ui_when_prefect_has_none(monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    from tasks import tracking

    monkeypatch.setattr(tracking.flow_run, "id", "abc", raising=False)
    with temporary_settings(restore_defaults={PREFECT_UI_URL, PREFECT_API_URL}):  # no server: no UI address
        assert tracking.prefect_run_url() == "http://127.0.0.1:4200/runs/flow-run/abc"
    with temporary_settings({PREFECT_UI_URL: "http://127.0.0.1:4321"}):
        assert tracking.prefect_run_url() == "http://127.0.0.1:4321/runs/flow-run/abc"
