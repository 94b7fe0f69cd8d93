"""Wall time of a first pipeline run and of an unchanged rerun (the caching bound: rerun < 10%).

    .venv/bin/python bench/rerun.py                      # configs/demo.yaml in a fresh work directory
    .venv/bin/python bench/rerun.py --config configs/tiny.yaml --keep

Runs `xlm run CONFIG` twice as separate processes (as a user would), in a new work directory under
/tmp, and prints both wall times and their ratio on the last line as `ratio=<x>`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed_run(config: str, workdir: Path, log: Path) -> float:
    command = [str(REPO / ".venv" / "bin" / "xlm"), "run", config, "--set", f"experiment.workdir={workdir}"]
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as handle:
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"xlm run failed (exit {result.returncode}); see {log}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="xlm-rerun-"))
    workdir = root / "work"
    try:
        first = timed_run(args.config, workdir, root / "first.log")
        print(f"first run:      {first:7.1f} s", flush=True)
        second = timed_run(args.config, workdir, root / "second.log")
        print(f"unchanged rerun: {second:6.1f} s")
        cached = (root / "second.log").read_text(encoding="utf-8").count("Finished in state Cached")
        print(f"cached task runs in the rerun: {cached}")
        print(f"ratio={second / first:.3f}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
