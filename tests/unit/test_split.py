"""split_lines(): deterministic, aligned across sides, sized as asked (or shrunk for tiny corpora)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlm_core.data.split import SplitError, count_lines, split_lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _outputs(tmp_path: Path, tag: str, names: list[str]) -> dict[str, list[Path]]:
    return {split: [tmp_path / f"{tag}.{name}.{split}" for name in names] for split in ("train", "valid", "test")}


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_parallel_split_is_aligned_and_sized(tmp_path):
    en = _write(tmp_path / "en", [f"sentence {i}" for i in range(1000)])
    fr = _write(tmp_path / "fr", [f"phrase {i}" for i in range(1000)])
    outputs = _outputs(tmp_path, "a", ["en", "fr"])
    stats = split_lines([en, fr], outputs, valid_size=50, test_size=30, seed=7)
    assert stats == {"lines": 1000, "train": 920, "valid": 50, "test": 30}
    seen = []
    for split, (out_en, out_fr) in outputs.items():
        left, right = _read(out_en), _read(out_fr)
        assert len(left) == stats[split] == len(right)
        assert [line.split()[1] for line in left] == [line.split()[1] for line in right]
        seen += left
    assert sorted(seen) == sorted(_read(en))  # a partition: nothing lost or duplicated


def test_split_is_deterministic_and_seeded(tmp_path):
    src = _write(tmp_path / "mono", [f"line {i}" for i in range(500)])
    runs = []
    for tag, seed in (("x", 1), ("y", 1), ("z", 2)):
        outputs = _outputs(tmp_path, tag, ["mono"])
        split_lines([src], outputs, valid_size=20, test_size=20, seed=seed)
        runs.append([outputs[s][0].read_bytes() for s in ("train", "valid", "test")])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_small_corpus_shrinks_held_out_sets(tmp_path, caplog):
    src = _write(tmp_path / "small", [f"l{i}" for i in range(30)])
    stats = split_lines([src], _outputs(tmp_path, "s", ["small"]), valid_size=5000, test_size=5000, seed=0)
    assert stats == {"lines": 30, "train": 24, "valid": 3, "test": 3}
    assert "only 30 lines" in caplog.text


def test_last_line_without_newline_and_missing_split(tmp_path):
    src = tmp_path / "nonl"
    src.write_bytes(b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nlast")
    assert count_lines(src) == 12
    outputs = {"train": [tmp_path / "t"], "valid": [tmp_path / "v"]}
    stats = split_lines([src], outputs, valid_size=2, test_size=2, seed=0)
    assert stats["train"] == 8 and not (tmp_path / "test").exists()
    assert len(_read(tmp_path / "t")) + len(_read(tmp_path / "v")) == 10


def test_errors(tmp_path):
    empty = _write(tmp_path / "empty", [])
    with pytest.raises(SplitError, match="empty"):
        split_lines([empty], _outputs(tmp_path, "e", ["x"]), valid_size=1, test_size=1, seed=0)
    a = _write(tmp_path / "a", ["1", "2", "3"])
    b = _write(tmp_path / "b", ["1", "2"])
    with pytest.raises(SplitError, match=r"not line-aligned: .*a \(3 lines\), .*b \(2 lines\)"):
        split_lines([a, b], _outputs(tmp_path, "m", ["a", "b"]), valid_size=1, test_size=1, seed=0)
    with pytest.raises(SplitError, match="one per input"):
        split_lines([a, b], _outputs(tmp_path, "n", ["a"]), valid_size=1, test_size=1, seed=0)
    with pytest.raises(SplitError, match="unknown split"):
        split_lines([a], {"dev": [tmp_path / "d"]}, valid_size=1, test_size=1, seed=0)
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob("n.*"))
