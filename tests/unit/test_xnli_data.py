"""XNLI data pieces: the demo NLI zips read back with the real readers, pair batches, layer selection, config."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_core.config import ConfigError, load_config
from xlm_core.data import nli_stages
from xlm_core.data.binarize import BinarizedSet
from xlm_core.data.demo_nli import build_demo_nli, rule_pairs
from xlm_core.data.nli import nli_files, read_multinli, read_xnli, read_xnli_mt_set
from xlm_core.model import XLMForSequenceClassification
from xlm_core.train.finetune import NLISet, finetune_config, finetune_parameters, pair_batch
from xlm_core.train.nli_data import TrainPairs, per_worker_batch, train_indices

REPO = Path(__file__).resolve().parents[2]


def test_rule_pairs_are_balanced_and_follow_the_rule():
    rows = rule_pairs(["a b c d", "e f g h", "i j k l"])
    assert rows == [
        ("a b c d", "a b", "entailment"),
        ("e f g h", "g h", "contradiction"),
        ("i j k l", "a b", "neutral"),
    ]


def test_demo_zips_read_with_the_real_readers(tmp_path):
    urls = build_demo_nli(tmp_path / "mirror", langs=["en", "fr", "zh"], train_pairs=30, eval_pairs=6)
    counts = read_xnli(tmp_path / "mirror" / "XNLI" / "XNLI-1.0.zip", tmp_path / "text", langs=["en", "fr", "zh"])
    assert counts == {lang: {"valid": 6, "test": 6} for lang in ("en", "fr", "zh")}
    assert read_multinli(
        tmp_path / "mirror" / "multinli" / "multinli_1.0.zip", tmp_path / "text", splits=["train"]
    ) == {"train": 30}
    labels = nli_files(tmp_path / "text", "en", "train")[2].read_text().split()
    assert sorted(set(labels)) == ["contradiction", "entailment", "neutral"] and labels.count("neutral") == 10
    assert urls["xnli_url"].startswith("file://")


def _bset(sentences):
    tokens, offsets, pos = [], [], 0
    for s in sentences:
        offsets.append([pos, pos + len(s)])
        tokens += [*s, 1]
        pos += len(s) + 1
    return BinarizedSet(np.array(tokens), np.array(offsets), {}, None)


def test_pair_batch_layout_and_truncation():
    data = NLISet(_bset([[10, 11], [12, 13, 14, 15]]), _bset([[20], [21, 22, 23]]), np.array([2, 0]))
    tokens, lengths, langs, labels = pair_batch(data, np.array([0, 1]), lang_id=4, max_len=7)
    assert tokens.tolist() == [[1, 10, 11, 1, 20, 1, 2], [1, 12, 13, 14, 15, 1, 1]]
    assert lengths.tolist() == [6, 7] and labels.tolist() == [2, 0] and int(langs.unique()) == 4


def test_finetune_layers_select_encoder_parts():
    model = XLMForSequenceClassification(tiny_arch(40, n_layers=3))
    everything = finetune_parameters(model, "0:_1")
    assert len(everything) == len(list(model.transformer.parameters()))
    last = finetune_parameters(model, "_1:_1")
    encoder = model.transformer
    modules = (encoder.attentions[2], encoder.layer_norm1[2], encoder.ffns[2], encoder.layer_norm2[2])
    assert {id(p) for p in last} == {id(p) for m in modules for p in m.parameters()}
    with pytest.raises(ValueError, match="xnli.finetune_layers"):
        finetune_parameters(model, "3:1")
    assert isinstance(everything[0], torch.nn.Parameter)


def test_config_section_defaults_and_errors():
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    assert not cfg.xnli.enabled and cfg.xnli.max_len == 256 and len(cfg.xnli.langs) == 15
    with pytest.raises(ConfigError, match="xnli.langs"):
        load_config(REPO / "configs" / "tiny.yaml", {"xnli.langs": ["fr"]})
    with pytest.raises(ConfigError, match="xnli.batch_sze"):
        load_config(REPO / "configs" / "tiny.yaml", {"xnli.batch_sze": 4})


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_demo_xnli_mt_zip_has_the_real_layout_and_reads_back(tmp_path):
    langs = ["en", "fr", "zh"]
    urls = build_demo_nli(tmp_path / "m", langs=langs, train_pairs=30, eval_pairs=6, translations=True)
    mt_zip = tmp_path / "m" / "XNLI-MT" / "XNLI-MT-1.0.zip"
    assert urls["xnli_mt_url"] == mt_zip.as_uri()
    names = set(zipfile.ZipFile(mt_zip).namelist())
    assert {f"XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv" for lang in langs} <= names
    assert {f"XNLI-MT-1.0/xnli/xnli.{s}.{lang}.tsv" for s in ("dev", "test") for lang in langs} <= names
    header = zipfile.ZipFile(mt_zip).read("XNLI-MT-1.0/multinli/multinli.train.fr.tsv").decode().splitlines()
    assert header[0] == "premise\thypo\tlabel" and any(line.endswith("\tcontradictory") for line in header)
    # translate-train: the French training set; translate-test: French dev translated into English.
    text = tmp_path / "text"
    assert read_xnli_mt_set(mt_zip, text, kind="train", lang="fr", split="train_mt") > 3
    assert set(_lines(text / "fr.train_mt.label")) == {"entailment", "neutral", "contradiction"}
    assert read_xnli_mt_set(mt_zip, text, kind="dev", lang="fr", split="valid_mt") == 6
    read_xnli(tmp_path / "m" / "XNLI" / "XNLI-1.0.zip", text, langs=["fr"])
    assert _lines(text / "fr.valid_mt.label") == _lines(text / "fr.valid.label")  # the same pairs, same labels
    assert _lines(text / "fr.valid_mt.s1") != _lines(text / "fr.valid.s1")  # ... in English
    # Without translations (zero-shot) the demo set is the two zips it always was.
    plain = build_demo_nli(tmp_path / "p", langs=langs, train_pairs=30, eval_pairs=6)
    assert set(plain) == {"xnli_url", "multinli_url"} and not (tmp_path / "p" / "XNLI-MT").exists()


def _cfg(**xnli):
    return load_config(REPO / "configs" / "tiny.yaml", {f"xnli.{k}": v for k, v in xnli.items()})


def test_each_mode_reads_and_scores_its_own_sets():
    langs = ["en", "fr", "zh"]
    zero, train, test = _cfg(), _cfg(mode="translate-train"), _cfg(mode="translate-test")
    assert nli_stages.train_sets(zero, langs) == nli_stages.train_sets(test, langs) == [("train", "en")]
    assert nli_stages.train_sets(train, langs) == [("train_mt", "en"), ("train_mt", "fr"), ("train_mt", "zh")]
    per_lang = _cfg(mode="translate-train", train_langs=["fr"])
    assert nli_stages.train_sets(per_lang, langs) == [("train_mt", "fr")]  # the paper's one model per language
    assert nli_stages.eval_sets(zero, langs)[("test", "fr")] == "test"
    assert nli_stages.eval_sets(test, langs)[("test", "fr")] == "test_mt"
    assert nli_stages.text_lang("test_mt", "fr") == "en" and nli_stages.text_lang("train_mt", "fr") == "fr"
    assert nli_stages.nli_units(["en", "fr"]) == [
        {"lang": "en", "split": "train"},
        {"lang": "en", "split": "valid"},
        {"lang": "en", "split": "test"},
        {"lang": "fr", "split": "valid"},
        {"lang": "fr", "split": "test"},
    ]  # zero-shot: unchanged
    sources = {
        mode: nli_stages.nli_sources(_cfg(mode=mode)) for mode in ("zero-shot", "translate-train", "translate-test")
    }
    assert [k for k, v in sources["zero-shot"].items() if v] == ["xnli_url", "multinli_url"]
    assert [k for k, v in sources["translate-train"].items() if v] == ["xnli_url", "xnli_mt_url"]
    assert [k for k, v in sources["translate-test"].items() if v] == ["multinli_url", "xnli_mt_url"]


def test_the_global_batch_is_split_over_workers():
    assert per_worker_batch(8, 1) == 8 and per_worker_batch(8, 4) == 2
    with pytest.raises(ValueError, match=r"xnli.batch_size \(8\).*divisible by the 64 fine-tuning workers"):
        per_worker_batch(8, 64)
    # The ranks of one update take disjoint slices of the pairs one worker would take.
    one = train_indices(50, epoch=1, step=2, steps=4, batch=8, rank=0, per_worker=8, seed=3)
    four = [train_indices(50, epoch=1, step=2, steps=4, batch=8, rank=r, per_worker=2, seed=3) for r in range(4)]
    assert np.concatenate(four).tolist() == one.tolist()
    # An epoch of 20 pairs at batch 8 is 3 updates; consecutive updates never repeat a pass's pair.
    stream = np.concatenate([train_indices(24, epoch=0, step=s, steps=3, batch=8, rank=0, per_worker=8, seed=0)
                             for s in range(3)])  # fmt: skip
    assert sorted(stream.tolist()) == list(range(24))


def test_preset_fine_tunes_with_the_original_global_batch():
    cfg = load_config("xlm-mlm-tlm-xnli15-1024")
    x = cfg.xnli
    assert x.enabled and x.mode == "zero-shot" and (x.batch_size, x.lr_encoder, x.lr_classifier) == (8, 2.5e-5, 2.5e-5)
    assert (x.epoch_size, x.max_epochs, x.max_len, x.finetune_layers, x.dropout) == (20000, 250, 256, "0:_1", 0.0)
    launched = finetune_config(cfg)
    assert launched.scaling.num_workers == 1 and cfg.scaling.num_workers == 64  # pretraining keeps its 64
    cfg.xnli.num_workers = None
    with pytest.raises(ValueError, match="xnli.batch_size"):
        finetune_config(cfg)  # 64 workers cannot share a batch of 8: refused before launch
    with pytest.raises(ConfigError, match="xnli.num_workers"):
        load_config("xlm-mlm-tlm-xnli15-1024", {"xnli.num_workers": 3})
    with pytest.raises(ConfigError, match="xnli.train_langs is only used with xnli.mode=translate-train"):
        load_config(REPO / "configs" / "tiny.yaml", {"xnli.train_langs": ["fr"]})


def test_training_pairs_of_several_languages_carry_their_language_ids():
    fr = NLISet(_bset([[10], [11]]), _bset([[20], [21]]), np.array([0, 1]))
    zh = NLISet(_bset([[12, 13]]), _bset([[22]]), np.array([2]))
    pairs = TrainPairs([(fr, 6), (zh, 14)])
    tokens, lengths, langs, labels = pairs.batch(np.array([2, 0]), max_len=16)
    assert len(pairs) == 3 and labels.tolist() == [2, 0] and lengths.tolist() == [6, 5]
    assert langs[0].tolist() == [14] * 6 and langs[1, :5].tolist() == [6] * 5
    assert tokens[0].tolist() == [1, 12, 13, 1, 22, 1]
