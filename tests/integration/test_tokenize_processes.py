"""The tokenizer's worker pool and fork server end with the stage that started them.

Each test runs the real tokenize stage (`stages.tokenize_unit` on the tiny config, real man-page text)
in a subprocess, the way a Prefect or Ray worker runs it, and ends that process while its pool is busy:
with SIGKILL (no cleanup runs) or with an exception raised in it (a cancelled stage).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.support.real_text import man_lines

REPO = Path(__file__).resolve().parents[2]
BUSY_CPU_S = 1.0  # CPU time the pool's workers must have spent tokenizing before the stage is ended
START_TIMEOUT_S = 120  # the fork server imports torch once: seconds on a slow machine
GONE_TIMEOUT_S = 15

STAGE = textwrap.dedent(
    """
    import json, shutil, signal, sys, time
    from pathlib import Path

    import psutil

    from xlm_core.config import load_config
    from xlm_core.data import stages
    from xlm_core.paths import WorkLayout

    mode, repo, workdir, text = sys.argv[1:]

    class Cancelled(Exception):
        pass

    def cancel(signum, frame):  # as Prefect turns SIGTERM into an exception in the flow's process
        raise Cancelled()

    signal.signal(signal.SIGTERM, cancel)
    cfg = load_config(Path(repo) / "configs" / "tiny.yaml", {"experiment.workdir": workdir, "tokenization.workers": 2})
    unit = next(u for u in stages.text_units(cfg) if u["pair"] is None and u["split"] == "train")
    split = WorkLayout(cfg.workdir).mono("split", unit["lang"], "train")
    split.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(text, split)
    try:
        stages.tokenize_unit(cfg, unit)
        print(json.dumps({"finished": True}), flush=True)
    except Cancelled:
        left = [p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
        trackers = [p.pid for p in psutil.Process().children() if "resource_tracker" in " ".join(p.cmdline())]
        print(json.dumps({"cancelled": True, "left": left, "resource_trackers": trackers}), flush=True)
        time.sleep(60)  # a process that lives on after the cancelled stage, as a Ray worker does
    """
)


@pytest.fixture(scope="module")
def big_text(tmp_path_factory) -> Path:
    """About 500,000 lines of real English prose: tens of seconds of work for two workers."""
    lines = man_lines("en", 20000)
    path = tmp_path_factory.mktemp("tok-lifetime") / "en.txt"
    path.write_text("\n".join(lines * 25) + "\n", encoding="utf-8")
    return path


def _start_stage(mode: str, text: Path, workdir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STAGE, mode, str(REPO), str(workdir / "{name}"), str(text)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_until_busy(stage: subprocess.Popen[str]) -> list[psutil.Process]:
    """The stage's descendants once its pool workers (grandchildren, under the fork server) are busy."""
    root = psutil.Process(stage.pid)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert stage.poll() is None, "the stage ended before its pool was busy"
        descendants = root.children(recursive=True)
        try:
            workers = [p for p in descendants if _alive(p) and p.ppid() != stage.pid]
            busy = len(workers) >= 2 and sum(p.cpu_times().user for p in workers) >= BUSY_CPU_S
        except psutil.NoSuchProcess:
            busy = False
        if busy:
            return descendants
        time.sleep(0.2)
    raise AssertionError(f"the stage's pool was not busy within {START_TIMEOUT_S} s")


def _wait_gone(processes: list[psutil.Process]) -> list[psutil.Process]:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while time.monotonic() < deadline:
        alive = [p for p in processes if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in processes if _alive(p)]


def test_sigkilled_stage_takes_its_forkserver_and_workers_with_it(big_text: Path, tmp_path: Path) -> None:
    stage = _start_stage("kill", big_text, tmp_path)
    try:
        descendants = _wait_until_busy(stage)
        assert len(descendants) >= 3  # fork server and two workers (and the resource tracker)
        killed = time.monotonic()
        os.kill(stage.pid, signal.SIGKILL)
        stage.wait(timeout=10)
        left = _wait_gone(descendants)
        print(f"descendants of the killed stage gone {time.monotonic() - killed:.2f} s after SIGKILL")
        assert not left, [(p.pid, p.cmdline()) for p in left]
    finally:
        stage.kill()
        stage.wait()


def test_cancelled_stage_leaves_no_pool_processes(big_text: Path, tmp_path: Path) -> None:
    stage = _start_stage("cancel", big_text, tmp_path)
    try:
        descendants = _wait_until_busy(stage)
        cancelled = time.monotonic()
        stage.send_signal(signal.SIGTERM)
        report = json.loads(stage.stdout.readline())
        print(f"cancelled stage returned {time.monotonic() - cancelled:.2f} s after SIGTERM")
        assert report["cancelled"]
        # Only multiprocessing's resource tracker (a few MB, it ends with the process) may remain.
        assert set(report["left"]) <= set(report["resource_trackers"]), report
        pool = [p for p in descendants if p.pid not in report["resource_trackers"]]
        assert pool and not [p for p in pool if _alive(p)]
        assert stage.poll() is None  # the process itself lives on
    finally:
        stage.kill()
        stage.wait()
