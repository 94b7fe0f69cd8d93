"""State-dict contract: transformers' XLM key names, tying by identity, parameter counts.

A rename here breaks export and import; these anchors catch it without transformers installed.
"""

from __future__ import annotations

import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_core.model import (
    XLMArchitecture,
    XLMForSequenceClassification,
    XLMModel,
    XLMWithLMHeadModel,
    count_parameters,
)


def make_arch(**overrides: object) -> XLMArchitecture:
    return tiny_arch(overrides.pop("vocab_size", 40), **({"emb_dim": 16, "n_heads": 2} | overrides))


def encoder_keys(n_layers: int, *, lang_emb: bool) -> list[str]:
    keys = ["position_embeddings.weight"]
    keys += ["lang_embeddings.weight"] if lang_emb else []
    keys += ["embeddings.weight", "layer_norm_emb.weight", "layer_norm_emb.bias"]
    for i in range(n_layers):
        keys += [
            f"attentions.{i}.{lin}.{p}" for lin in ("q_lin", "k_lin", "v_lin", "out_lin") for p in ("weight", "bias")
        ]
    for i in range(n_layers):
        keys += [f"layer_norm1.{i}.weight", f"layer_norm1.{i}.bias"]
    for i in range(n_layers):
        keys += [f"ffns.{i}.{lin}.{p}" for lin in ("lin1", "lin2") for p in ("weight", "bias")]
    for i in range(n_layers):
        keys += [f"layer_norm2.{i}.weight", f"layer_norm2.{i}.bias"]
    return keys


def test_encoder_keys_in_order() -> None:
    assert list(XLMModel(make_arch()).state_dict()) == encoder_keys(2, lang_emb=True)


@pytest.mark.parametrize(("n_langs", "use_lang_emb"), [(1, True), (3, False)])
def test_no_lang_embeddings_without_langs(n_langs: int, use_lang_emb: bool) -> None:
    keys = list(XLMModel(make_arch(n_langs=n_langs, use_lang_emb=use_lang_emb)).state_dict())
    assert keys == encoder_keys(2, lang_emb=False)


def test_lm_keys_and_shapes() -> None:
    arch = make_arch()
    state = XLMWithLMHeadModel(arch).state_dict()
    assert list(state) == [f"transformer.{k}" for k in encoder_keys(2, lang_emb=True)] + [
        "pred_layer.proj.weight",
        "pred_layer.proj.bias",
    ]
    assert "transformer.position_ids" not in state  # non-persistent buffer
    d, v = arch.emb_dim, arch.vocab_size
    assert state["transformer.position_embeddings.weight"].shape == (512, d)
    assert state["transformer.lang_embeddings.weight"].shape == (2, d)
    assert state["transformer.embeddings.weight"].shape == (v, d)
    assert state["transformer.attentions.0.q_lin.weight"].shape == (d, d)
    assert state["transformer.ffns.1.lin1.weight"].shape == (4 * d, d)
    assert state["transformer.ffns.1.lin2.weight"].shape == (d, 4 * d)
    assert state["pred_layer.proj.bias"].shape == (v,)


def test_classifier_keys() -> None:
    keys = list(XLMForSequenceClassification(make_arch(), num_labels=3).state_dict())
    assert keys[-2:] == ["sequence_summary.summary.weight", "sequence_summary.summary.bias"]
    assert keys[0] == "transformer.position_embeddings.weight"


def test_tying_is_identity() -> None:
    tied = XLMWithLMHeadModel(make_arch())
    assert tied.pred_layer.proj.weight is tied.transformer.embeddings.weight
    untied = XLMWithLMHeadModel(make_arch(tie_word_embeddings=False))
    assert untied.pred_layer.proj.weight is not untied.transformer.embeddings.weight


def test_init_like_the_original() -> None:
    torch.manual_seed(0)
    arch = make_arch(emb_dim=64, n_heads=4, vocab_size=2000)
    model = XLMModel(arch)
    assert model.embeddings.weight[arch.pad_index].abs().max() == 0
    std = model.embeddings.weight[3:].std().item()
    assert abs(std - 64**-0.5) < 0.01
    sinusoidal = XLMModel(make_arch(sinusoidal_embeddings=True))
    assert not sinusoidal.position_embeddings.weight.requires_grad
    assert sinusoidal.position_embeddings.weight[0, 0::2].abs().max() == 0  # sin(0)
    assert torch.allclose(sinusoidal.position_embeddings.weight[0, 1::2], torch.ones(8))  # cos(0)


def test_count_parameters_matches_real_model() -> None:
    for arch in (make_arch(), make_arch(tie_word_embeddings=False, n_langs=1)):
        assert count_parameters(arch) == sum(p.numel() for p in XLMWithLMHeadModel(arch).parameters())


@pytest.mark.parametrize(
    ("n_layers", "emb_dim", "n_heads", "vocab_size", "n_langs", "use_lang_emb", "target"),
    [
        (6, 1024, 8, 64139, 2, True, 142e6),  # xlm-clm-enfr-1024
        (12, 2048, 16, 30145, 1, True, 665e6),  # xlm-mlm-en-2048
        (16, 1280, 16, 200000, 100, False, 570e6),  # xlm-mlm-100-1280
        (12, 1024, 8, 95000, 15, True, 250e6),  # xlm-mlm-tlm-xnli15-1024
    ],
)
def test_full_size_parameter_counts(
    n_layers: int, emb_dim: int, n_heads: int, vocab_size: int, n_langs: int, use_lang_emb: bool, target: float
) -> None:
    arch = make_arch(
        n_layers=n_layers,
        emb_dim=emb_dim,
        n_heads=n_heads,
        vocab_size=vocab_size,
        n_langs=n_langs,
        use_lang_emb=use_lang_emb,
    )
    assert abs(count_parameters(arch) - target) / target < 0.01
