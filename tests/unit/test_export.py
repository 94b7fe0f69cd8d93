"""Export files without transformers: vocab rule, merges, configs, atomic replace, load_lm, model card."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.support.tiny import tiny_arch
from xlm_core.export import export_lm, load_lm, render_model_card, vocab_from_words
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
WORDS = SPECIALS + [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + ["th@@", "the"]
LANG2ID = {"en": 0, "fr": 1}


def make_arch(**overrides: object) -> XLMArchitecture:
    return tiny_arch(len(WORDS), **({"emb_dim": 16, "n_layers": 1, "n_heads": 2} | overrides))


def export(tmp_path: Path, arch: XLMArchitecture | None = None, **kwargs: object) -> tuple[Path, XLMWithLMHeadModel]:
    arch = arch or make_arch()
    torch.manual_seed(0)
    model = XLMWithLMHeadModel(arch)
    tmp_path.mkdir(parents=True, exist_ok=True)
    codes = tmp_path / "codes"
    codes.write_text("t h 50\nth e</w> 40", encoding="utf-8")  # no final newline on purpose
    options = dict(words=WORDS, codes_path=codes, lang2id=LANG2ID, do_lowercase_and_remove_accent=True, causal=True)
    options.update(kwargs)
    return export_lm(model, arch, tmp_path / "export", **options), model


def test_vocab_rule() -> None:
    vocab = vocab_from_words(WORDS)
    assert vocab["<special1>"] == 5 and vocab["a"] == 14 and vocab["a</w>"] == 40
    assert vocab["th"] == len(WORDS) - 2 and vocab["the</w>"] == len(WORDS) - 1
    with pytest.raises(ValueError, match="collision"):
        vocab_from_words([*WORDS, "the"])
    with pytest.raises(ValueError, match="specials"):
        vocab_from_words(["<s>", "a"])


def test_export_files(tmp_path: Path) -> None:
    out, _ = export(tmp_path, card={"perplexity": {"en": 10.0, "fr": 20.0}})
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "merges.txt",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.json",
    ]
    assert not list(tmp_path.glob(".export.*"))  # no temporary leftovers
    assert (out / "merges.txt").read_text() == "t h 50\nth e</w> 40\n"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "xlm" and config["architectures"] == ["XLMWithLMHeadModel"]
    assert config["causal"] is True and config["tie_word_embeddings"] is True
    assert config["lang2id"] == LANG2ID and config["id2lang"] == {"0": "en", "1": "fr"}
    assert (config["vocab_size"], config["n_langs"], config["mask_index"], config["lang_id"]) == (len(WORDS), 2, 5, 0)
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"], config["unk_index"]) == (0, 1, 2, 3)
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok["bos_token"] == "</s>" and tok["mask_token"] == "<special1>" and tok["model_max_length"] == 512
    assert tok["id2lang"] == {"0": "en", "1": "fr"} and tok["do_lowercase_and_remove_accent"] is True
    tensors = load_file(str(out / "model.safetensors"))
    assert torch.equal(tensors["pred_layer.proj.weight"], tensors["transformer.embeddings.weight"])
    assert "pred_layer.proj.bias" in tensors and all(k.startswith(("transformer.", "pred_layer.")) for k in tensors)
    assert "| valid | fr | 20.00 |" in (out / "README.md").read_text()


def test_load_lm_round_trip(tmp_path: Path) -> None:
    out, model = export(tmp_path, arch=make_arch(tie_word_embeddings=False, sinusoidal_embeddings=True))
    loaded, arch, meta = load_lm(out)
    assert arch == model.arch and meta["causal"] is True and meta["id2lang"] == {0: "en", 1: "fr"}
    for (key, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    tied, _, _ = load_lm(export(tmp_path / "tied")[0])
    assert tied.pred_layer.proj.weight is tied.transformer.embeddings.weight


def test_load_lm_strict_errors(tmp_path: Path) -> None:
    out, _ = export(tmp_path)
    tensors = load_file(str(out / "model.safetensors"))
    del tensors["transformer.layer_norm_emb.bias"]
    tensors["transformer.extra"] = torch.zeros(1)
    tensors["transformer.ffns.0.lin1.bias"] = torch.zeros(3)
    save_file(tensors, str(out / "model.safetensors"))
    with pytest.raises(ValueError, match="layer_norm_emb.bias") as info:
        load_lm(out)
    assert "transformer.extra" in str(info.value) and "ffns.0.lin1.bias: file (3,)" in str(info.value)


def test_export_replaces_previous_export_only(tmp_path: Path) -> None:
    out, _ = export(tmp_path)
    (out / "stale.txt").write_text("old")
    export(tmp_path)
    assert not (out / "stale.txt").exists()
    other = tmp_path / "not-an-export"
    other.mkdir()
    (other / "data.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        export_lm(
            XLMWithLMHeadModel(make_arch()),
            make_arch(),
            other,
            words=WORDS,
            codes_path=tmp_path / "codes",
            lang2id=LANG2ID,
            do_lowercase_and_remove_accent=True,
            causal=False,
        )
    assert (other / "data.txt").read_text() == "keep"


def test_export_rejects_vocab_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        export(tmp_path, words=WORDS[:-1])
    assert not (tmp_path / "export").exists()


def test_model_card_layout() -> None:
    card = render_model_card(
        {
            "model_name": "xlm-mlm-tlm-test",
            "languages": ["en", "fr"],
            "lang2id": LANG2ID,
            "objectives": ["MLM", "TLM"],
            "architecture": make_arch().to_dict(),
            "perplexity": {"valid": {"en": 12.345}, "test": {"fr": 20.0}},
            "local_path": "/models/x",
        }
    )
    assert card.startswith("---\nlanguage:\n- multilingual\n- en\n- fr\nlicense: unknown\n")
    for heading in (
        "# xlm-mlm-tlm-test",
        "# Table of Contents",
        "# Model Details",
        "# Uses",
        "# Training",
        "# Evaluation",
        "# Technical Specifications",
        "# Citation",
        "# How to Get Started",
    ):
        assert heading in card
    assert "| valid | en | 12.35 |" in card and "@article{lample2019cross" in card
    assert 'XLMWithLMHeadModel.from_pretrained("/models/x")' in card and "langs=langs" in card
    assert "translation language modeling" in card and "not recorded" in card
    mono = render_model_card({"languages": ["en"], "architecture": make_arch(n_langs=1).to_dict()})
    assert "langs" not in mono.split("# How to Get Started")[1].split("```python")[1]
    assert "Per-language perplexity: not recorded" in mono
