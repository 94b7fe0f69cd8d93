"""Process pools whose workers, and the fork server behind them, end with the process that opened them.

A stage's pool (`process_pool`) is a `ProcessPoolExecutor` on the forkserver context: the fork server is
a child of the stage's process and the workers are children of the fork server. Left alone, neither ends
when the stage is killed: every worker holds a copy of the fork server's "alive" pipe, the fork server
waits for that pipe to close, and an idle worker waits forever for work. Three guards, each sufficient
on its own on Linux, end them:

* The fork server imports this module first (`set_forkserver_preload`); on import there it asks the
  kernel for SIGKILL when its parent dies (`prctl(PR_SET_PDEATHSIG)`). The kernel sends that signal when
  the *thread* that started the server ends, so the server is started from a thread of this module that
  lives as long as the process (a task thread may end while another task's pool still needs the server).
  If the stage died before the prctl call, the server finds its alive pipe closed and exits, or, when
  workers were already requested, those exit at once (next point) and then the pipe closes.
* Each worker's initializer (`exit_with`) asks for SIGKILL when the fork server dies, then exits at once
  if the stage is already gone.
* Each worker runs a watchdog thread that kills it within `_WATCH_INTERVAL_S` of the stage's end. It
  covers a fork server started elsewhere in the process without this preload, and systems without prctl.

After an exception in the stage (a failed or cancelled stage whose process lives on, e.g. a Ray worker),
`process_pool` kills its workers instead of waiting for their chunks, and stops the fork server when no
other pool of the process is open. After a success the fork server is kept: it is started once per
process (it imports the preloaded modules, torch included, which takes seconds) and dies with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

__all__ = ["exit_with", "process_pool", "set_parent_death_signal"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCH_INTERVAL_S = 0.2
# psutil start times of one process read in two processes can differ by the boot time's 1 s rounding.
_START_TIME_TOLERANCE_S = 2.0

_starter: ThreadPoolExecutor | None = None
_open_pools = 0
_lock = threading.Lock()


def set_parent_death_signal() -> bool:
    """Have the kernel SIGKILL this process when the thread that created it ends (`PR_SET_PDEATHSIG`).

    Returns False where that is unavailable (not Linux, or prctl refused).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0
    except (OSError, AttributeError) as error:
        logger.warning("cannot call prctl(PR_SET_PDEATHSIG) through libc: %s", error)
        return False
    if failed:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    return not failed


def _start_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def _is_running(pid: int, started: float) -> bool:
    """Whether the process `pid` that started at `started` still runs (a reused pid or a zombie does not)."""
    if os.getppid() == pid:  # still our parent: children of a dead process are reparented as it exits
        return True
    import psutil

    try:
        process = psutil.Process(pid)
        same = abs(process.create_time() - started) < _START_TIME_TOLERANCE_S
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _watch(pid: int, started: float) -> None:
    while _is_running(pid, started):
        time.sleep(_WATCH_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def exit_with(pid: int, started: float) -> None:
    """Pool initializer: end this worker when the process `pid` (started at `started`) ends, however it ends.

    The parent-death signal covers the worker's direct parent (the fork server, or `pid` itself with the
    fork and spawn contexts); the watchdog thread covers `pid` whatever the process tree in between.
    """
    set_parent_death_signal()
    if not _is_running(pid, started):
        os._exit(1)  # the stage ended before the prctl call: nobody will read this worker's results
    threading.Thread(target=_watch, args=(pid, started), name="xlm-exit-with-stage", daemon=True).start()


def _in_forkserver_preload() -> bool:
    """True while `multiprocessing.forkserver.main` imports its preload modules, i.e. in the fork server."""
    server_main = multiprocessing.forkserver.main.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is server_main:
            return True
        frame = frame.f_back
    return False


def _start_forkserver() -> None:
    """Start the fork server (if it is not running) from a thread that lasts as long as the process."""
    global _starter
    with _lock:
        if _starter is None:
            _starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlm-forkserver-starter")
    _starter.submit(multiprocessing.forkserver.ensure_running).result()


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    kill = getattr(pool, "kill_workers", None)  # Python >= 3.14
    if kill is not None:
        kill()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()


def _stop_forkserver() -> None:
    """Stop the process's fork server unless some process it forked still runs (another user's pool)."""
    import psutil

    server = multiprocessing.forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    try:
        if psutil.Process(pid).children():
            return
        os.kill(pid, signal.SIGTERM)
    except (psutil.Error, ProcessLookupError):
        pass
    stop = getattr(server, "_stop", None)  # closes our end of its alive pipe, reaps it, forgets it
    if stop is not None:
        with contextlib.suppress(OSError):  # ChildProcessError: it was reaped already
            stop()
    logger.debug("stopped the fork server %d after a failed pool", pid)


@contextlib.contextmanager
def process_pool(workers: int, *, preload: Sequence[str] = ()) -> Iterator[ProcessPoolExecutor]:
    """A forkserver `ProcessPoolExecutor` of `workers` processes that end with this process.

    `preload`: modules the fork server imports once so that workers start without importing them (it
    applies when this call starts the server). The pool is shut down on leaving the block; on an
    exception its workers are killed first, and the fork server is stopped if no other pool is open.
    """
    global _open_pools
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, *preload])
    with _lock:
        _open_pools += 1
    failed = False
    try:
        _start_forkserver()
        pid = os.getpid()
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=exit_with, initargs=(pid, _start_time(pid))
        )
        try:
            yield pool
        except BaseException:
            failed = True
            _kill_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        with _lock:
            _open_pools -= 1
            if failed and _open_pools == 0:
                _stop_forkserver()


if _in_forkserver_preload():
    set_parent_death_signal()
