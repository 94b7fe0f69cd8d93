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


# --------------------------------------------------------------------------- by article


def _articles(n_articles: int, per_article: int) -> list[list[str]]:
    """Real man page lines grouped into articles whose first line names them (like a title line)."""
    from tests.support.real_text import man_lines

    lines = list(dict.fromkeys(man_lines("en", n_articles * per_article * 2, min_words=5)))
    assert len(lines) >= n_articles * per_article
    return [[f"Article {i}", *lines[i * per_article : (i + 1) * per_article - 1]] for i in range(n_articles)]


def _write_articles(tmp_path: Path, articles: list[list[str]]) -> tuple[Path, Path]:
    text = _write(tmp_path / "en.all", [line for article in articles for line in article])
    docs = _write(tmp_path / "en.docs", [str(len(article)) for article in articles])
    return text, docs


def _whole_articles(lines: list[str], articles: list[list[str]]) -> list[int]:
    """The indices of the articles `lines` consists of, each whole and in corpus order."""
    starts = {article[0]: index for index, article in enumerate(articles)}
    found, position = [], 0
    while position < len(lines):
        index = starts[lines[position]]
        assert lines[position : position + len(articles[index])] == articles[index]
        found.append(index)
        position += len(articles[index])
    return found


def test_article_split_keeps_whole_articles_apart(tmp_path):
    from xlm_core.data.split import split_articles

    articles = _articles(40, 6)
    text, docs = _write_articles(tmp_path, articles)
    outputs = _outputs(tmp_path, "a", ["en"])
    stats = split_articles(text, docs, outputs, valid_size=20, test_size=14, seed=3)
    chosen = {split: _whole_articles(_read(outputs[split][0]), articles) for split in outputs}
    assert sorted(chosen["train"] + chosen["valid"] + chosen["test"]) == list(range(40))  # a partition
    assert chosen["valid"] == sorted(chosen["valid"])  # corpus order inside a split
    assert 20 <= stats["valid"] < 20 + 6 and 14 <= stats["test"] < 14 + 6  # budget met, by < 1 article
    assert stats["valid_articles"] == len(chosen["valid"]) and stats["articles"] == 40
    assert stats["train"] + stats["valid"] + stats["test"] == stats["lines"] == 240

    again = _outputs(tmp_path, "b", ["en"])
    split_articles(text, docs, again, valid_size=20, test_size=14, seed=3)
    assert all(again[s][0].read_bytes() == outputs[s][0].read_bytes() for s in outputs)


def test_article_split_of_a_small_corpus_and_bad_counts(tmp_path, caplog):
    from xlm_core.data.split import split_articles

    text, docs = _write_articles(tmp_path, _articles(2, 5))
    stats = split_articles(text, docs, _outputs(tmp_path, "s", ["en"]), valid_size=5, test_size=5, seed=0)
    assert stats["train"] == 10 and stats["valid"] == stats["test"] == 0  # 2 articles: nothing held out
    text, docs = _write_articles(tmp_path, _articles(5, 4))
    stats = split_articles(text, docs, _outputs(tmp_path, "t", ["en"]), valid_size=500, test_size=500, seed=0)
    assert "only 20 lines" in caplog.text and stats["valid_articles"] == stats["test_articles"] == 1
    assert stats["train_articles"] == 3
    _write(docs, ["4", "4"])
    with pytest.raises(SplitError, match=r"add up to 8 but the text has 20 lines; re-run the extract"):
        split_articles(text, docs, _outputs(tmp_path, "u", ["en"]), valid_size=1, test_size=1, seed=0)
    with pytest.raises(SplitError, match="is missing; re-run the extract stage"):
        split_articles(text, tmp_path / "none.docs", _outputs(tmp_path, "v", ["en"]), valid_size=1, test_size=1, seed=0)


def test_demo_wikipedia_splits_share_no_article_and_no_sentence(tmp_path):
    """Real WikiExtractor output of the demo mirror, cleaned and split: no article of valid/test is in train,
    and (cleaning deduplicated the corpus before the split) no normalised sentence either."""
    from xlm_core.config import load_config
    from xlm_core.data import stages
    from xlm_core.data.dedup import normalize
    from xlm_core.paths import WorkLayout

    tiny = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    overrides = {
        "experiment.workdir": str(tmp_path / "{name}"),
        "data.demo_max_pages": 25,
        "data.valid_size": 60,
        "data.test_size": 60,
        "data.parallel": [],
        "objectives.mlm_steps": ["en", "fr"],
        "cleaning.enabled": True,
    }
    cfg = load_config(tiny, overrides)
    sources = stages.prepare_sources(cfg)
    extracted = stages.extract_wikipedia(cfg, "en", stages.fetch_wikipedia(cfg, "en", sources["wikipedia"]))
    cleaned = stages.clean_mono(cfg, "en")
    split = stages.split_mono(cfg, "en")
    layout = WorkLayout(cfg.workdir)
    sizes = [int(n) for n in _read(layout.articles("text", "en"))]
    assert len(sizes) == extracted["articles"] and sum(sizes) == extracted["lines"]
    assert cleaned["kept"] == split["lines"] and cleaned["removed_duplicate"] > 0  # man pages repeat headings
    assert split["valid"] >= 60 and split["test"] >= 60 and split["valid_articles"] >= 1

    text = _read(layout.mono("clean", "en"))
    counts = [int(n) for n in _read(layout.articles("clean", "en"))]
    bounds = [sum(counts[:i]) for i in range(len(counts) + 1)]
    articles = [text[bounds[i] : bounds[i + 1]] for i in range(len(counts))]
    by_split = {s: _read(layout.mono("split", "en", s)) for s in ("train", "valid", "test")}
    owner = {line: index for index, article in enumerate(articles) for line in article}  # lines are unique
    ids = {s: {owner[line] for line in lines} for s, lines in by_split.items()}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"] and not ids["valid"] & ids["test"]
    for index in ids["valid"] | ids["test"]:  # held-out articles are whole
        assert set(articles[index]) <= set(by_split["valid"]) | set(by_split["test"])
    train_keys = {normalize(line) for line in by_split["train"]}
    assert not any(normalize(line) in train_keys for line in by_split["valid"] + by_split["test"])
