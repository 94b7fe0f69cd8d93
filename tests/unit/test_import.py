"""`xlm import`: original XLM .pth (safe unpickling) and transformers directories -> project exports."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_core.export import export_lm, load_lm
from xlm_core.export.importer import import_model, load_pretrained
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
CODES = "t h 50\nth e</w> 40\nc a 30\nca t</w> 20\n"
WORDS = SPECIALS + [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + ["th@@", "the", "cat"]
LANG2ID = {"en": 0, "fr": 1}


class NotAllowed:
    """A custom class in `params`: only loadable with --trust-pickle."""

    def __init__(self, value: int) -> None:
        self.value = value


def make_model(*, seed: int = 0, **overrides: object) -> tuple[XLMWithLMHeadModel, XLMArchitecture]:
    arch = tiny_arch(len(WORDS), **overrides)
    torch.manual_seed(seed)
    model = XLMWithLMHeadModel(arch).eval()
    with torch.no_grad():
        model.pred_layer.proj.bias.normal_()  # a non-zero bias, so a lost bias is caught
    return model, arch


def original_checkpoint(model: XLMWithLMHeadModel, arch: XLMArchitecture, **params: object) -> dict:
    """The dict XLM's trainer saves: `module.`-prefixed encoder keys, vars(params), dico_*."""
    state = {"module." + key.removeprefix("transformer."): value.clone() for key, value in model.state_dict().items()}
    state["module.pred_layer.proj.weight"] = state["module.embeddings.weight"]  # tied: one tensor, two keys
    base = {
        "emb_dim": arch.emb_dim,
        "n_layers": arch.n_layers,
        "n_heads": arch.n_heads,
        "dropout": np.float64(0.1),
        "attention_dropout": 0.1,
        "gelu_activation": True,
        "sinusoidal_embeddings": False,
        "use_lang_emb": True,
        "share_inout_emb": True,
        "asm": False,
        "n_langs": np.int64(2),
        "langs": ["en", "fr"],
        "lang2id": LANG2ID,
        "id2lang": {0: "en", 1: "fr"},
        "clm_steps": [],
        "mlm_steps": [("en", None), ("fr", None)],
        "n_words": len(WORDS),
        "bos_index": 0,
        "eos_index": 1,
        "pad_index": 2,
        "unk_index": 3,
        "mask_index": 5,
        "mask_scores": np.linspace(0.0, 1.0, len(WORDS)),
        "word_pred": 0.15,
        "dump_path": "/checkpoint/xlm/dumped",
    }
    base.update(params)
    return {
        "model": state,
        "params": base,
        "dico_id2word": dict(enumerate(WORDS)),
        "dico_word2id": {w: i for i, w in enumerate(WORDS)},
        "dico_counts": {w: (0 if i < 14 else 1000 - i) for i, w in enumerate(WORDS)},
        "epoch": 3,
    }


def sample_ids() -> tuple[torch.Tensor, torch.Tensor]:
    input_ids_BT = torch.tensor([[1, 20, 45, 66, 67, 1], [1, 30, 31, 50, 1, 2]])
    langs_BT = torch.tensor([[0] * 6, [1] * 6])
    return input_ids_BT, langs_BT


def hf_logits(export_dir: Path, input_ids_BT: torch.Tensor, langs_BT: torch.Tensor) -> torch.Tensor:
    from transformers import XLMWithLMHeadModel as HFXLMWithLMHeadModel

    hf_model = HFXLMWithLMHeadModel.from_pretrained(str(export_dir)).eval()
    with torch.no_grad():
        return hf_model(input_ids_BT, langs=langs_BT).logits


def write_codes(tmp_path: Path) -> Path:
    codes = tmp_path / "codes"
    codes.write_text(CODES, encoding="utf-8")
    return codes


def test_original_pth_imports_safely_and_matches_transformers(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    model, arch = make_model()
    pth = tmp_path / "mlm_tiny.pth"
    torch.save(original_checkpoint(model, arch), pth)

    out = import_model(pth, tmp_path / "export", codes_path=write_codes(tmp_path))  # no trust_pickle

    config = json.loads((out / "config.json").read_text())
    assert config["causal"] is False and config["lang2id"] == LANG2ID and config["vocab_size"] == len(WORDS)
    assert json.loads((out / "vocab.json").read_text())["the</w>"] == WORDS.index("the")
    input_ids_BT, langs_BT = sample_ids()
    with torch.no_grad():
        ours_BTV = model(input_ids_BT, langs_BT=langs_BT)
    assert (hf_logits(out, input_ids_BT, langs_BT) - ours_BTV).abs().max() <= 1e-5

    # load_pretrained reads the .pth directly (for continued training) with weights equal to the source.
    loaded, loaded_arch, meta = load_pretrained(pth)
    assert loaded_arch == arch and meta["words"] == WORDS and meta["format"] == "original"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.pred_layer.proj.weight is loaded.transformer.embeddings.weight


def test_causal_inferred_from_clm_steps_and_overridable(tmp_path: Path) -> None:
    model, arch = make_model()
    pth = tmp_path / "clm.pth"
    torch.save(original_checkpoint(model, arch, clm_steps=[("en", None), ("fr", None)], mlm_steps=[]), pth)
    codes = write_codes(tmp_path)
    assert json.loads((import_model(pth, tmp_path / "a", codes_path=codes) / "config.json").read_text())["causal"]
    forced = import_model(pth, tmp_path / "b", codes_path=codes, causal=False)
    assert json.loads((forced / "config.json").read_text())["causal"] is False
    with pytest.raises(ValueError, match="--codes"):
        import_model(pth, tmp_path / "c")


def test_hf_dir_import_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import XLMWithLMHeadModel as HFXLMWithLMHeadModel

    model, arch = make_model(seed=1)
    first = export_lm(
        model,
        arch,
        tmp_path / "first",
        words=WORDS,
        codes_path=write_codes(tmp_path),
        lang2id=LANG2ID,
        do_lowercase_and_remove_accent=False,
        causal=True,
    )
    # A transformers-written directory, as on the hub: tied weight stored once, hub-style `causal: false`.
    hub = tmp_path / "xlm-clm-tiny"
    hf_model = HFXLMWithLMHeadModel.from_pretrained(str(first))
    hf_model.config.causal = False
    hf_model.save_pretrained(str(hub))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (hub / name).write_bytes((first / name).read_bytes())

    out = import_model(hub, tmp_path / "imported", causal=True)

    config = json.loads((out / "config.json").read_text())
    assert config["causal"] is True and config["lang2id"] == LANG2ID
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lowercase_and_remove_accent"] is False
    assert (out / "merges.txt").read_text() == CODES
    assert (out / "vocab.json").read_text() == (first / "vocab.json").read_text()
    input_ids_BT, langs_BT = sample_ids()
    with torch.no_grad():
        ours_BTV = model(input_ids_BT, langs_BT=langs_BT, causal=True)
    assert (hf_logits(out, input_ids_BT, langs_BT) - ours_BTV).abs().max() <= 1e-5
    loaded, _, meta = load_pretrained(out)
    assert meta["causal"] is True and meta["words"] == WORDS and meta["codes_path"] == out / "merges.txt"
    for key, value in load_lm(first)[0].state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_custom_pickled_class_needs_trust_pickle(tmp_path: Path) -> None:
    model, arch = make_model()
    pth = tmp_path / "custom.pth"
    torch.save(original_checkpoint(model, arch, custom=NotAllowed(3)), pth)
    with pytest.raises(ValueError, match=r"NotAllowed.*--trust-pickle"):
        import_model(pth, tmp_path / "out", codes_path=write_codes(tmp_path))
    assert not (tmp_path / "out").exists()
    out = import_model(pth, tmp_path / "out", codes_path=write_codes(tmp_path), trust_pickle=True)
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ck: ck.update(encoder=ck.pop("model"), decoder={"layer_norm15.0.weight": torch.ones(2)}), "decoder"),
        (lambda ck: ck["params"].update(asm=True), "asm"),
        (lambda ck: ck["model"].update({"module.memories.0.keys": torch.ones(2)}), "memor"),
        (lambda ck: ck.pop("params"), "'params' is missing"),
    ],
    ids=["encoder-decoder", "asm", "pkm", "no-params"],
)
def test_unrepresentable_checkpoints_refused(tmp_path: Path, edit, message: str) -> None:
    model, arch = make_model()
    checkpoint = original_checkpoint(model, arch)
    edit(checkpoint)
    pth = tmp_path / "bad.pth"
    torch.save(checkpoint, pth)
    with pytest.raises(ValueError, match=message):
        import_model(pth, tmp_path / "out", codes_path=write_codes(tmp_path))
