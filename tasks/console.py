"""What a pipeline run prints in the terminal: lines that name their run, without bookkeeping.

Prefect's console handler (on the root logger) shows every log record of a run. Four things make
that hard to read: a "Finished in state Completed()" line for each of the dozens of task runs, a
warning per download task that Prefect's timeout cannot interrupt a thread (the download enforces
its own deadline), library lines (the `xlm_core` loggers) that do not say which task they come
from, and a traceback for errors that already carry their own one-line explanation. These filters
act on the console only: the records reach the Prefect API (the UI's logs) unchanged, because
Prefect's API handler sits on the run loggers and sees each record before it propagates to the
console handler.
"""

from __future__ import annotations

import logging

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import PrefectConsoleHandler

__all__ = ["install_console_filters"]

# Errors whose message names the file or setting and the fix: the traceback adds nothing for the
# terminal (the UI keeps it; `xlm --debug` re-raises it).
_SELF_EXPLAINING = ("TrainingFailedError", "ConfigError", "DemoCorpusError", "DownloadError")


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        finished = message.startswith("Finished in state") and "Failed" not in message
        if record.name == "prefect.task_runs" and record.levelno == logging.INFO and finished:
            return False  # one per task run; the flow's own line and the UI show the states
        if "Timeouts in worker threads cannot interrupt" in message:
            return False  # downloads enforce their own deadline (data.download); Prefect's is a backstop
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if type(error).__name__ in _SELF_EXPLAINING or isinstance(error, ValueError):
                record.exc_info, record.exc_text = None, None
                record.msg, record.args = f"{message.splitlines()[0]}: {error}", None
        return True


class _RunNameFilter(logging.Filter):
    """Prefixes library lines logged inside a task or flow run with the run's name."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("xlm_core") and not getattr(record, "_xlm_named", False):
            task, flow = TaskRunContext.get(), FlowRunContext.get()
            name = task.task_run.name if task else (flow.flow_run.name if flow and flow.flow_run else None)
            if name:
                record.msg, record.args = f"{name} | {record.getMessage()}", None
                record._xlm_named = True
        return True


def install_console_filters() -> None:
    """Attach the filters to Prefect's console handler (on the root logger once Prefect has set up
    logging, i.e. after `import prefect`) and let the library's INFO lines through to it."""
    logging.getLogger("xlm_core").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _ConsoleFilter) for f in handler.filters
        ):
            handler.addFilter(_ConsoleFilter())
            handler.addFilter(_RunNameFilter())
