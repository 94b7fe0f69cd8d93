"""XNLI data pieces: the demo NLI zips read back with the real readers, pair batches, layer selection, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.support.tiny import tiny_arch
from xlm_core.config import ConfigError, load_config
from xlm_core.data.binarize import BinarizedSet
from xlm_core.data.demo_nli import build_demo_nli, rule_pairs
from xlm_core.data.nli import nli_files, read_multinli, read_xnli
from xlm_core.model import XLMForSequenceClassification
from xlm_core.train.finetune import NLISet, finetune_parameters, pair_batch


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
