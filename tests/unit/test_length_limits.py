"""Length safety: no split feeds the model a position past its table; what is removed is counted;
configs whose lengths cannot fit fail at load with the keys and the fix named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.support.tiny import tiny_arch
from xlm_core.config import ConfigError, load_config
from xlm_core.data import stages
from xlm_core.data.binarize import BinarizedSet, binarize, load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.length_filter import filter_pairs, pair_stats
from xlm_core.model import XLMWithLMHeadModel
from xlm_core.objectives.inputs import StepSpec, prepare_inputs
from xlm_core.paths import WorkLayout

TINY = REPO / "configs" / "tiny.yaml"
N_WORDS = 50
DICO = Dictionary([f"w{i}" for i in range(N_WORDS)], [N_WORDS - i for i in range(N_WORDS)])


def _write(path: Path, lines: list[str]) -> BinarizedSet:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.with_name(path.name + ".bpe")
    text.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    binarize(text, DICO, path)
    return load_binarized(path)


def _words(n: int, start: int = 0) -> str:
    return " ".join(f"w{(start + i) % N_WORDS}" for i in range(n))


# Side A / side B of a validation set: 2,000-token pairs (on either or both sides), empty and
# blank sides (a line of spaces binarizes to zero tokens), and ordinary pairs.
SIDE_A = [_words(5), _words(2000), "", _words(3), "   ", _words(2000, 7), _words(8), "", _words(30), _words(62)]
SIDE_B = [
    _words(6),
    _words(4),
    _words(4),
    _words(2000),
    _words(9),
    _words(2000, 3),
    _words(7),
    "",
    _words(2),
    _words(1),
]
# With MAX_LEN: kept 0, 6, 8, 9 (a side of exactly MAX_LEN stays); empty 2, 4, 7; long 1, 3, 5.
MAX_LEN = 62


def test_filter_pairs_counts_each_reason_once() -> None:
    len1 = np.array([5, 2000, 0, 3, 0, 2000, 8, 0, 30, 62])
    len2 = np.array([6, 4, 4, 2000, 9, 2000, 7, 0, 2, 1])
    kept, counts = filter_pairs(len1, len2, MAX_LEN)
    assert kept.tolist() == [0, 6, 8, 9]
    assert counts.as_dict() == {"pairs": 10, "removed_empty": 3, "removed_long": 3, "kept": 4, "max_len": MAX_LEN}
    assert counts.metrics("data_valid_en_fr")["data_valid_en_fr_removed_long"] == 3.0
    unlimited, counts = filter_pairs(len1, len2, 0)  # 0: no length limit (empty pairs still go)
    assert unlimited.tolist() == [0, 1, 3, 5, 6, 8, 9] and counts.removed_long == 0
    assert pair_stats(len1, len2, MAX_LEN) == {
        "pairs": 10,
        "removed_empty": 3,
        "removed_long": 3,
        "kept": 4,
        "max_len": MAX_LEN,
        "longest_side": 2000,
        "longest_kept_side": 62,
    }
    with pytest.raises(ValueError, match="aligned"):
        filter_pairs(len1, len2[:3], MAX_LEN)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_every_split_removes_and_counts_long_and_empty_pairs(tmp_path: Path, split: str) -> None:
    set1 = _write(tmp_path / f"{split}.en-fr.en", SIDE_A)
    set2 = _write(tmp_path / f"{split}.en-fr.fr", SIDE_B)
    assert set1.stats["empty_sentences"] == 3 and set1.stats["longest_sentence"] == 2000
    data = ParallelDataset(set1, set2, batch_size=4, tokens_per_batch=None, max_len=MAX_LEN)
    assert (data.counts.pairs, data.counts.removed_empty, data.counts.removed_long, data.counts.kept) == (10, 3, 3, 4)
    assert data.pairs.tolist() == [0, 6, 8, 9] and data.num_train_pairs == 4

    # Real model, 64 positions (= MAX_LEN + 2): every evaluation and training batch of TLM and
    # CLM-on-pairs stays inside the table (positions restart for the second side).
    arch = tiny_arch(N_WORDS + 14, max_position_embeddings=MAX_LEN + 2)
    model = XLMWithLMHeadModel(arch).eval()
    batches = [*data.eval_batches(3), *(next(data) for _ in range(4))]
    for objective in ("mlm", "clm"):
        for index, batch in enumerate(batches):
            inputs = prepare_inputs(
                StepSpec(objective, "en", "fr"),
                batch,
                lang2id={"en": 0, "fr": 1},
                vocab_size=len(DICO),
                word_pred=0.15,
                keep_rand=(0.8, 0.1, 0.1),
                generator=torch.Generator().manual_seed(0),
                evaluation=True,
                eval_seed=index,
            )
            assert int(inputs.positions_BT.max()) < arch.max_position_embeddings
            with torch.no_grad():
                model(
                    inputs.tokens_BT,
                    lengths_B=inputs.lengths_B,
                    positions_BT=inputs.positions_BT,
                    langs_BT=inputs.langs_BT,
                )


def test_stream_chunks_never_exceed_bptt(tmp_path: Path) -> None:
    """Empty and 2,000-token lines in a stream are harmless: chunks are bptt long, the tail shorter."""
    bset = _write(tmp_path / "valid.en", ["", _words(2000), "", "   ", _words(3)])
    data = StreamDataset(bset, batch_size=4, bptt=64)
    widths = {batch.shape[1] for batch in data.eval_batches(4)}
    assert max(widths) == 64 and sum(b.numel() for b in data.eval_batches(4)) == bset.tokens.shape[0] + 1


def test_model_refuses_an_input_longer_than_its_positions() -> None:
    model = XLMWithLMHeadModel(tiny_arch(N_WORDS + 14, max_position_embeddings=16)).eval()
    with pytest.raises(ValueError, match="17 tokens is longer than max_position_embeddings=16"):
        model(torch.ones(1, 17, dtype=torch.long))


def test_filter_pairs_stage_writes_and_returns_counts_per_split(tmp_path: Path) -> None:
    overrides = {"objectives.max_len": MAX_LEN, "objectives.eval_max_len": MAX_LEN}
    cfg = load_config(TINY, {"experiment.workdir": str(tmp_path / "{name}"), **overrides})
    layout = WorkLayout(cfg.workdir)
    for split in ("train", "valid", "test"):
        extra = 0 if split == "train" else 1  # valid/test get one more empty pair
        _write(layout.binarized(split, "en", "en-fr"), SIDE_A + [""] * extra)
        _write(layout.binarized(split, "fr", "en-fr"), SIDE_B + [_words(3)] * extra)
    units = stages.plan_data(cfg)["pair_units"]
    assert [u["label"] for u in units] == ["en-fr.train", "en-fr.valid", "en-fr.test"]
    results = [stages.filter_pairs_unit(cfg, unit) for unit in units]
    valid = results[1]
    assert {k: valid[k] for k in ("pair", "split", "pairs", "removed_empty", "removed_long", "kept")} == {
        "pair": "en-fr",
        "split": "valid",
        "pairs": 11,
        "removed_empty": 4,
        "removed_long": 3,
        "kept": 4,
    }
    assert results[0]["removed_empty"] == 3 and valid["longest_side"] == 2000 and valid["longest_kept_side"] == 62
    written = json.loads((layout.root / "bin" / "valid.en-fr.pairs.json").read_text())
    assert written == {k: v for k, v in valid.items() if k not in ("pair", "split", "path")}
    assert stages.cache_key("filter-pairs", cfg, units[1]) is not None  # finished: reusable
    changed = cfg.model_copy(deep=True)
    changed.objectives.eval_max_len = 10
    assert stages.cache_key("filter-pairs", changed, units[1]) is None  # another limit: recount
    assert stages.cache_key("filter-pairs", changed, units[0]) is not None  # train keeps objectives.max_len


def test_valid_and_test_keep_every_pair_the_positions_hold_by_default(tmp_path: Path) -> None:
    """The original XLM filters train only; by default valid/test lose only what no model could read."""
    cfg = load_config(TINY, {"experiment.workdir": str(tmp_path / "{name}"), "objectives.max_len": MAX_LEN})
    layout = WorkLayout(cfg.workdir)
    positions = cfg.model.max_position_embeddings
    sides_a = [_words(MAX_LEN + 50), _words(positions - 2), _words(positions - 1), _words(5)]
    sides_b = [_words(4), _words(4), _words(4), ""]
    for split in ("train", "valid"):
        _write(layout.binarized(split, "en", "en-fr"), sides_a)
        _write(layout.binarized(split, "fr", "en-fr"), sides_b)
    units = {u["split"]: u for u in stages.plan_data(cfg)["pair_units"]}
    train, valid = (stages.filter_pairs_unit(cfg, units[split]) for split in ("train", "valid"))
    assert (train["removed_long"], train["removed_empty"], train["kept"]) == (3, 1, 0)
    assert (valid["removed_long"], valid["removed_empty"], valid["kept"]) == (1, 1, 2)
    assert valid["max_len"] == positions - 2 and train["max_len"] == MAX_LEN


def _error(overrides: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(TINY, overrides)
    return str(info.value)


def test_bptt_longer_than_positions_fails_at_load() -> None:
    message = _error({"objectives.bptt": 600})
    assert (
        "objectives.bptt (600) > model.max_position_embeddings (512): a stream chunk of bptt tokens uses "
        "positions 0..bptt-1; set objectives.bptt <= 512 or raise model.max_position_embeddings"
    ) in message
    assert load_config(TINY, {"objectives.bptt": 512}).objectives.bptt == 512
    # Pair steps only: bptt is never used, so it is not checked.
    assert load_config(TINY, {"objectives.bptt": 600, "objectives.mlm_steps": ["en-fr"]}).objectives.bptt == 600


def test_pair_max_len_longer_than_positions_fails_at_load() -> None:
    message = _error({"objectives.max_len": 511})
    assert (
        "objectives.max_len (511) + 2 > model.max_position_embeddings (512): each side of a pair is "
        "`</s> w1 .. wn </s>` with positions restarting at 0; set objectives.max_len <= 510 or raise "
        "model.max_position_embeddings"
    ) in message
    assert load_config(TINY, {"objectives.max_len": 510}).objectives.max_len == 510
    assert load_config(TINY, {"objectives.max_len": 511, "objectives.mlm_steps": ["en", "fr"]})


def test_xnli_max_len_longer_than_positions_fails_at_load() -> None:
    message = _error({"xnli.enabled": True, "model.max_position_embeddings": 128, "objectives.bptt": 64})
    assert (
        "xnli.max_len (256) > model.max_position_embeddings (128): an XNLI row `</s> premise </s> hypothesis "
        "</s>` of xnli.max_len tokens uses positions 0..max_len-1; set xnli.max_len <= 128 or raise "
        "model.max_position_embeddings"
    ) in message
    assert load_config(TINY, {"model.max_position_embeddings": 128, "objectives.max_len": 100})  # XNLI off


def test_all_length_problems_in_one_error() -> None:
    message = _error({"model.max_position_embeddings": 32, "xnli.enabled": True})
    assert message.startswith(f"invalid configuration in {TINY}:")
    assert re.findall(r"(objectives\.bptt|objectives\.max_len|xnli\.max_len) \(\d+\)", message) == [
        "objectives.bptt",
        "objectives.max_len",
        "xnli.max_len",
    ]
