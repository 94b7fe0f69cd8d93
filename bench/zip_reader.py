"""Throughput of the zip line reader (`archives.read_zip_member`) next to zipfile's own reading.

Writes a crafted moses zip (two sides of random words, `--mib` MiB of text in all) to a temporary
directory and times: zipfile's line iteration and its 1 MiB block reads (the ceiling), the reader's
line iteration, and `opus.read_moses_zip` end to end (decoding and writing both sides).

    .venv/bin/python bench/zip_reader.py --mib 100
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from xlm_core.data import archives, opus

MiB = 1 << 20


def _crafted_zip(path: Path, mib: int) -> Path:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzéè") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    lines, size = [], 0
    while size < mib * MiB // 2:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
        lines.append(line)
        size += len(line.encode()) + 1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Bench.en-fr.en", "\n".join(lines) + "\n")
        archive.writestr("Bench.en-fr.fr", "\n".join(line[::-1] for line in lines) + "\n")
    return path


def _timed(label: str, megabytes: float, run: Callable[[], object]) -> None:
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    print(f"{label:40s} {elapsed:6.2f} s  {megabytes / elapsed:7.1f} MiB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="MiB of text in the crafted zip (both sides)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zip-reader-bench-") as tmp:
        path = _crafted_zip(Path(tmp) / "bench.zip", args.mib)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            mib = sum(info.file_size for info in infos) / MiB

            def blocks(info: zipfile.ZipInfo) -> int:
                with archive.open(info) as handle:
                    return sum(1 for _ in iter(lambda: handle.read(MiB), b""))

            _timed("zipfile: iterate lines", mib, lambda: [sum(1 for _ in archive.open(i)) for i in infos])
            _timed("zipfile: read 1 MiB blocks", mib, lambda: [blocks(i) for i in infos])
            _timed(
                "archives.read_zip_member: iterate lines",
                mib,
                lambda: [sum(1 for _ in archives.read_zip_member(archive, i, path=path)) for i in infos],
            )
        _timed(
            "opus.read_moses_zip (decode + write)",
            mib,
            lambda: opus.read_moses_zip(path, "en-fr", Path(tmp) / "en", Path(tmp) / "fr", max_line_bytes=MiB),
        )


if __name__ == "__main__":
    main()
