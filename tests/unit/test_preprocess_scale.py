"""Scale and restart: a preprocessing step killed halfway leaves no output and a re-run gives the bytes of an
uninterrupted run; peak memory does not grow with the input. Inputs are real man page lines, repeated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.real_text import man_source_lines
from xlm_core.data.binarize import binarize, binarized_paths
from xlm_core.data.bpe import apply_bpe, learn_bpe
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.tokenize import tokenize_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def man_text() -> bytes:
    """Real lines of the pinned English man pages (troff markup left in, request lines dropped), non-blank."""
    return man_source_lines(20_000, min_lines=5_000)


def _repeat(text: bytes, n_bytes: int) -> bytes:
    return text * (n_bytes // len(text) + 1)


def _run_python(code: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        start_new_session=True,  # one process group: the kill reaches pool workers and fastBPE too
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if wait:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        proc.stdout = None  # type: ignore[assignment]
        proc.output = out  # type: ignore[attr-defined]
    return proc


def _kill_when(proc: subprocess.Popen[bytes], started: callable, timeout: float = 120) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not started():
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _partial(directory: Path, name: str) -> bool:
    return any(p.stat().st_size > 0 for p in directory.glob(f".{name}.tmp-*"))


def test_tokenize_killed_midway_then_rerun_is_identical(man_text: bytes, tmp_path: Path) -> None:
    (tmp_path / "raw.en").write_bytes(_repeat(man_text, 3 << 20))
    tokenize_file(tmp_path / "raw.en", tmp_path / "reference.tok", lang="en", lowercase=True, workers=2)
    code = f"""
        from xlm_core.data.tokenize import tokenize_file
        tokenize_file({str(tmp_path / "raw.en")!r}, {str(tmp_path / "out.tok")!r}, lang="en", lowercase=True,
                      workers=2, chunk_lines=200)
    """
    proc = _run_python(code, wait=False)
    _kill_when(proc, lambda: _partial(tmp_path, "out.tok"))
    assert not (tmp_path / "out.tok").exists()
    _run_python(code)
    assert (tmp_path / "out.tok").read_bytes() == (tmp_path / "reference.tok").read_bytes()


def test_binarize_killed_midway_then_rerun_is_identical(man_text: bytes, tmp_path: Path) -> None:
    text = _repeat(man_text, 60 << 20)
    (tmp_path / "train.bpe").write_bytes(text)
    words: dict[bytes, int] = {}
    for word in man_text.split():
        words[word] = words.get(word, 0) + 1
    ranked = sorted(words.items(), key=lambda item: (-item[1], item[0]))[:30000]
    (tmp_path / "vocab").write_bytes(b"".join(w + b" %d\n" % c for w, c in ranked if b"\xe2\x80\xa8" not in w))
    dico = Dictionary.from_vocab(tmp_path / "vocab")
    binarize(tmp_path / "train.bpe", dico, tmp_path / "reference")
    code = f"""
        from xlm_core.data.binarize import binarize
        from xlm_core.data.dictionary import Dictionary
        binarize({str(tmp_path / "train.bpe")!r}, Dictionary.from_vocab({str(tmp_path / "vocab")!r}),
                 {str(tmp_path / "out")!r})
    """
    proc = _run_python(code, wait=False)
    _kill_when(proc, lambda: _partial(tmp_path, "out.tokens.npy"))
    assert not any(path.exists() for path in binarized_paths(tmp_path / "out").values())
    _run_python(code)
    for key, path in binarized_paths(tmp_path / "out").items():
        assert path.read_bytes() == binarized_paths(tmp_path / "reference")[key].read_bytes(), key


# Imports (torch through xlm_core.data) peak above the steps themselves, so the process's peak RSS
# (VmHWM) is reset after them by writing 5 to /proc/self/clear_refs, then read after the call.
PEAK_RSS = """
    import json, re
    from xlm_core.data.binarize import binarize
    from xlm_core.data.bpe import apply_bpe
    from xlm_core.data.dictionary import Dictionary
    from xlm_core.data.tokenize import tokenize_file
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    {call}
    status = open("/proc/self/status").read()
    print(json.dumps({{"self_kb": int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))}}))
"""


def _peak_rss(call: str) -> dict[str, int]:
    proc = _run_python(PEAK_RSS.format(call=call))
    return json.loads(proc.output.decode().strip().splitlines()[-1])  # type: ignore[attr-defined]


def _fast_peak_kb(log: Path) -> int:
    return max(int(line) for line in log.read_text().split() if line.isdigit())


def test_peak_memory_does_not_grow_with_input(man_text: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak RSS on 1× and 4× inputs (the Python process, and each `fast applybpe` through /usr/bin/time). An
    implementation holding its input or output in memory would grow by hundreds of MB at 4×; the ratio must
    stay below 1.5."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS after imports")
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    one = _repeat(man_text, 24 << 20)[: 24 << 20]
    one = one[: one.rfind(b"\n") + 1]
    small.write_bytes(one)
    large.write_bytes(one * 4)
    head = b"".join(man_text.splitlines(keepends=True)[:20000])
    (tmp_path / "head.tok").write_bytes(head)
    learn_bpe(tmp_path / "head.tok", tmp_path / "codes", 2000)
    apply_bpe(tmp_path / "head.tok", tmp_path / "head.bpe", tmp_path / "codes")
    words: dict[bytes, int] = {}
    for word in (tmp_path / "head.bpe").read_bytes().split():
        words[word] = words.get(word, 0) + 1
    ranked = sorted(words.items(), key=lambda item: (-item[1], item[0]))
    (tmp_path / "vocab").write_bytes(b"".join(w + b" %d\n" % c for w, c in ranked))
    tok_small, tok_large = tmp_path / "tok_small.txt", tmp_path / "tok_large.txt"  # tokenize: fewer lines (slow)
    tok_small.write_bytes(head[: 1 << 20])
    tok_large.write_bytes(head[: 1 << 20] * 4)

    timed_fast = Path("/usr/bin/time").is_file()
    if timed_fast:
        from xlm_core.data.bpe import fast_binary

        wrapper = tmp_path / "fast"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/time -f %M -a -o "$FAST_RSS_LOG" {fast_binary()} "$@"\n')
        wrapper.chmod(0o755)
        monkeypatch.setenv("XLM_FASTBPE_BIN", str(wrapper))
    peaks = {}
    for name, small_call, large_call in [
        (
            "tokenize_file",
            f"tokenize_file({str(tok_small)!r}, {str(tmp_path / 'a.tok')!r}, lang='en', lowercase=True, workers=1)",
            f"tokenize_file({str(tok_large)!r}, {str(tmp_path / 'b.tok')!r}, lang='en', lowercase=True, workers=1)",
        ),
        (
            "apply_bpe",
            f"apply_bpe({str(small)!r}, {str(tmp_path / 'a.bpe')!r}, {str(tmp_path / 'codes')!r}, shard_bytes=8 << 20)",
            f"apply_bpe({str(large)!r}, {str(tmp_path / 'b.bpe')!r}, {str(tmp_path / 'codes')!r}, shard_bytes=8 << 20)",
        ),
        (
            "binarize",
            f"binarize({str(small)!r}, Dictionary.from_vocab({str(tmp_path / 'vocab')!r}), {str(tmp_path / 'a')!r})",
            f"binarize({str(large)!r}, Dictionary.from_vocab({str(tmp_path / 'vocab')!r}), {str(tmp_path / 'b')!r})",
        ),
    ]:
        monkeypatch.setenv("FAST_RSS_LOG", str(tmp_path / f"{name}.small.rss"))
        one_x = _peak_rss(small_call)
        monkeypatch.setenv("FAST_RSS_LOG", str(tmp_path / f"{name}.large.rss"))
        four_x = _peak_rss(large_call)
        if name == "apply_bpe" and timed_fast:
            one_x["fast_kb"] = _fast_peak_kb(tmp_path / f"{name}.small.rss")
            four_x["fast_kb"] = _fast_peak_kb(tmp_path / f"{name}.large.rss")
        peaks[name] = (one_x, four_x)
    print(json.dumps(peaks))
    for name, (one_x, four_x) in peaks.items():
        assert four_x["self_kb"] < 1.5 * one_x["self_kb"], (name, peaks[name])
        if "fast_kb" in one_x:
            assert four_x["fast_kb"] < 1.5 * one_x["fast_kb"], (name, peaks[name])


def test_temporaries_of_killed_processes_are_removed(tmp_path):
    from xlm_core.io import atomic_open

    dest = tmp_path / "out.txt"
    stale = tmp_path / ".out.txt.tmp-999999999"  # no such pid
    stale.write_text("half")
    with atomic_open(dest) as handle:
        handle.write("done\n")
    assert dest.read_text() == "done\n" and not stale.exists()
