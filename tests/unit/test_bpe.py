"""fastBPE wrappers on real text (the pinned man pages), α-sampling, and id parity with transformers' XLMTokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.support.real_text import man_lines
from xlm_core.data.bpe import apply_bpe, count_lines, fast_binary, get_vocab, learn_bpe, sample_for_bpe
from xlm_core.data.dictionary import NUM_SPECIALS, Dictionary
from xlm_core.data.tokenize import normalize_and_tokenize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tokenized + lowercased en/fr text, BPE codes, BPE'd text and a vocabulary."""
    root = tmp_path_factory.mktemp("bpe")
    paths: dict[str, Path] = {"root": root}
    for lang in ("en", "fr"):
        lines = man_lines(lang, 1500)
        tok = root / f"{lang}.tok"
        tok.write_text("".join(normalize_and_tokenize(x, lang, lowercase=True) + "\n" for x in lines), encoding="utf-8")
        paths[lang] = tok
    sample_for_bpe({"en": paths["en"], "fr": paths["fr"]}, root / "sample.txt", sample_size=3000, alpha=0.5, seed=0)
    paths["codes"] = root / "codes"
    paths["n_codes"] = learn_bpe(root / "sample.txt", paths["codes"], 1000)  # type: ignore[assignment]
    for lang in ("en", "fr"):
        apply_bpe(paths[lang], root / f"{lang}.bpe", paths["codes"])
        paths[f"{lang}.bpe"] = root / f"{lang}.bpe"
    get_vocab([paths["en.bpe"], paths["fr.bpe"]], root / "vocab")
    paths["vocab"] = root / "vocab"
    return paths


def test_fast_binary_found_and_env_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert fast_binary().is_file()
    monkeypatch.setenv("XLM_FASTBPE_BIN", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="XLM_FASTBPE_BIN"):
        fast_binary()


def test_learn_and_apply(corpus: dict[str, Path]) -> None:
    codes = corpus["codes"].read_text(encoding="utf-8").splitlines()
    assert len(codes) == corpus["n_codes"] == 1000
    assert all(len(line.split(" ")) == 3 and int(line.split(" ")[2]) > 0 for line in codes)
    for lang in ("en", "fr"):
        tok = corpus[lang].read_text(encoding="utf-8").split("\n")
        bpe = corpus[f"{lang}.bpe"].read_text(encoding="utf-8").split("\n")
        assert len(tok) == len(bpe)
        undone = [re.sub(r"(@@ )|(@@ ?$)", "", line) for line in bpe]
        assert undone == tok  # BPE only splits words
        assert sum(line.count("@@") for line in bpe) > 0


def test_learn_bpe_drops_exhausted_zero_count_codes(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text("hello world\nhello there\n\nthe world\n", encoding="utf-8")
    kept = learn_bpe(tmp_path / "tiny.txt", tmp_path / "codes", 30)
    assert 0 < kept < 30
    apply_bpe(tmp_path / "tiny.txt", tmp_path / "tiny.bpe", tmp_path / "codes")  # fastBPE aborts on duplicates
    assert (tmp_path / "tiny.bpe").read_text(encoding="utf-8") == "hello world\nhello there\n\nthe world\n"


def test_apply_bpe_edge_cases(corpus: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    apply_bpe(tmp_path / "empty", tmp_path / "empty.bpe", corpus["codes"])
    assert (tmp_path / "empty.bpe").read_bytes() == b""
    (tmp_path / "nonl").write_text("no newline", encoding="utf-8")
    with pytest.raises(ValueError, match="newline"):
        apply_bpe(tmp_path / "nonl", tmp_path / "nonl.bpe", corpus["codes"])
    with pytest.raises(ValueError, match="learn_bpe"):
        apply_bpe(corpus["en"], tmp_path / "x.bpe", tmp_path / "no-codes")


def test_get_vocab_concatenates_inputs(corpus: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x y\nx", encoding="utf-8")  # no final newline: must not fuse with "y x"
    (tmp_path / "b").write_text("y x\n", encoding="utf-8")
    get_vocab([tmp_path / "a", tmp_path / "b"], tmp_path / "v")
    assert (tmp_path / "v").read_text(encoding="utf-8") == "x 3\ny 2\n"
    entries = [line.split(" ") for line in corpus["vocab"].read_text(encoding="utf-8").splitlines()]
    counts = [int(count) for _, count in entries]
    assert counts == sorted(counts, reverse=True)
    words = set(corpus["en.bpe"].read_text(encoding="utf-8").split())
    words |= set(corpus["fr.bpe"].read_text(encoding="utf-8").split())
    assert {token for token, _ in entries} == words


def test_sample_for_bpe_alpha_proportions(tmp_path: Path) -> None:
    sizes = {"aa": 9000, "bb": 900, "cc": 100}
    inputs = {}
    for lang, n in sizes.items():
        inputs[lang] = tmp_path / lang
        inputs[lang].write_text("".join(f"{lang} {i}\n" for i in range(n)), encoding="utf-8")
    counts = sample_for_bpe(inputs, tmp_path / "sample", sample_size=5000, alpha=0.5, seed=1)
    p = np.array(list(sizes.values()), dtype=float) / sum(sizes.values())
    q = p**0.5 / (p**0.5).sum()
    got = np.array([counts[lang] for lang in sizes]) / 5000
    np.testing.assert_allclose(got, q, atol=0.03)  # ~4.5 standard deviations
    assert count_lines(tmp_path / "sample") == 5000
    lines = (tmp_path / "sample").read_text(encoding="utf-8").splitlines()
    assert {lang: sum(x.startswith(lang) for x in lines) for lang in sizes} == counts
    # "aa" needs fewer lines than it has: drawn without replacement; "cc" needs more: with replacement
    aa = [x for x in lines if x.startswith("aa")]
    assert len(set(aa)) == len(aa) == counts["aa"] < sizes["aa"]
    assert counts["cc"] > sizes["cc"]
    again = sample_for_bpe(inputs, tmp_path / "sample2", sample_size=5000, alpha=0.5, seed=1)
    assert again == counts and (tmp_path / "sample2").read_bytes() == (tmp_path / "sample").read_bytes()


def _export_hf_tokenizer(dico: Dictionary, codes: Path, out: Path) -> None:
    """vocab.json from the dictionary ids (`xx@@` → `xx`, final `xx` → `xx</w>`), merges.txt = the fastBPE
    codes file verbatim (docs/transformers-compatibility.md, "Tokenizer files")."""
    vocab = {}
    for index, word in enumerate(dico.words):
        key = word if index < NUM_SPECIALS else (word[:-2] if word.endswith("@@") else f"{word}</w>")
        assert key not in vocab, f"collision on {key!r}"
        vocab[key] = index
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_bytes(codes.read_bytes())


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_ids_match_transformers_xlm_tokenizer(corpus: dict[str, Path], tmp_path: Path, lang: str) -> None:
    transformers = pytest.importorskip("transformers")
    dico = Dictionary.from_vocab(corpus["vocab"])
    _export_hf_tokenizer(dico, corpus["codes"], tmp_path / "hf")
    hf = transformers.XLMTokenizer(
        vocab_file=str(tmp_path / "hf" / "vocab.json"),
        merges_file=str(tmp_path / "hf" / "merges.txt"),
        do_lowercase_and_remove_accent=True,
    )
    extra = [
        "Wikipedia was used to train the model.",
        "Ça coûte 5,50\u00a0€ — l’été prochain, n’est-ce pas ?",
        "Zoë’s café: “naïve” résumé; ÉCOLE Straße.",
    ]
    sentences = man_lines(lang, 150, skip=1500) + extra  # held-out text: unknown pieces occur too
    raw = tmp_path / "sentences.tok"
    raw.write_text("".join(normalize_and_tokenize(s, lang, lowercase=True) + "\n" for s in sentences), encoding="utf-8")
    apply_bpe(raw, tmp_path / "sentences.bpe", corpus["codes"])
    ours = [
        [dico.index(w) for w in line.split(" ") if w]
        for line in (tmp_path / "sentences.bpe").read_text(encoding="utf-8").split("\n")[:-1]
    ]
    theirs = [hf.convert_tokens_to_ids(hf._tokenize(s, lang=lang)) for s in sentences]
    mismatches = [(s, a, b) for s, a, b in zip(sentences, ours, theirs, strict=True) if a != b]
    assert not mismatches, mismatches[:3]
    assert any(3 in ids for ids in ours)  # some <unk> exercised
    if lang == "en":  # the public API (language fixed to en): <s> … </s>
        assert hf(sentences[0])["input_ids"] == [0, *ours[0], 1]


def test_apply_bpe_shards_byte_identical(corpus: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(corpus["en"].read_bytes() + b"\n\nlast  line  with\tdoubled spaces\n")
    whole = apply_bpe(tmp_path / "in", tmp_path / "whole.bpe", corpus["codes"], shard_bytes=1 << 30)
    sharded = apply_bpe(tmp_path / "in", tmp_path / "sharded.bpe", corpus["codes"], workers=2, shard_bytes=5000)
    assert whole["shards"] == 1 and sharded["shards"] > 10
    assert (tmp_path / "sharded.bpe").read_bytes() == (tmp_path / "whole.bpe").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "sharded.bpe", "whole.bpe"]  # no shards left
