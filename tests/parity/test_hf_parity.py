"""Parity with transformers' XLM classes: same state dict (strict), same numbers, loadable exports.

Tiny random models of each seed family; no hub downloads. Shape legend: B batch · T time · V vocab.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tests.support.tiny import tiny_arch  # noqa: E402
from xlm_core.export import export_classifier, export_lm, hf_config  # noqa: E402
from xlm_core.model import (  # noqa: E402
    XLMArchitecture,
    XLMForSequenceClassification,
    XLMWithLMHeadModel,
)
from xlm_core.objectives import concat_pair  # noqa: E402

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
# Hand-made fastBPE codes ("A B count", `</w>` marks a word end) and the pieces they produce.
CODES = ["t h 50", "th e</w> 40", "c a 30", "ca t</w> 20", "h e 15", "l l 12", "he ll 10", "hell o</w> 8"]
MERGED = ["th@@", "the", "ca@@", "cat", "he@@", "ll@@", "hell@@", "hello", "."]
WORDS = SPECIALS + [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + MERGED

FAMILIES = {
    # name: (arch overrides, causal, languages)
    "clm-enfr": ({"n_langs": 2, "use_lang_emb": True}, True, ["en", "fr"]),
    "mlm-en": ({"n_langs": 1, "use_lang_emb": True}, False, ["en"]),
    "mlm-100": ({"n_langs": 100, "use_lang_emb": False}, False, [f"l{i:02d}" for i in range(99)] + ["en"]),
    "mlm-tlm-xnli15": (
        {"n_langs": 15, "use_lang_emb": True},
        False,
        ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"],
    ),
    "relu-sinusoidal-untied": (
        {
            "n_langs": 2,
            "use_lang_emb": True,
            "gelu_activation": False,
            "sinusoidal_embeddings": True,
            "tie_word_embeddings": False,
        },
        False,
        ["de", "en"],
    ),
}


def make_arch(**overrides: object) -> XLMArchitecture:
    return tiny_arch(len(WORDS), **overrides)


def lang2id_of(langs: list[str]) -> dict[str, int]:
    return {lang: i for i, lang in enumerate(sorted(langs))}


def pair_batch(arch: XLMArchitecture, generator: torch.Generator):
    """A TLM-style batch: `</s> A </s></s> B </s>` with padding, reset positions and two languages."""

    def sentences(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths_B = torch.tensor(lengths)
        tokens_BT = torch.randint(14, arch.vocab_size, (len(lengths), max(lengths)), generator=generator)
        t_BT = torch.arange(max(lengths))[None]
        tokens_BT[t_BT >= lengths_B[:, None]] = 2
        tokens_BT[:, 0] = 1
        tokens_BT[torch.arange(len(lengths)), lengths_B - 1] = 1
        return tokens_BT, lengths_B

    x1, len1 = sentences([7, 5, 4, 3])
    x2, len2 = sentences([6, 3, 4, 2])
    return concat_pair(x1, len1, 0, x2, len2, arch.n_langs - 1)


def build_pair(name: str):
    overrides, causal, langs = FAMILIES[name]
    arch = make_arch(**overrides)
    torch.manual_seed(0)
    ours = XLMWithLMHeadModel(arch).eval()
    config = transformers.XLMConfig.from_dict(
        hf_config(arch, architectures=["XLMWithLMHeadModel"], lang2id=lang2id_of(langs), causal=causal)
    )
    theirs = transformers.XLMWithLMHeadModel(config).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return arch, causal, ours, theirs


@pytest.mark.parametrize("name", list(FAMILIES))
def test_lm_logits_match_transformers(name: str) -> None:
    arch, causal, ours, theirs = build_pair(name)
    tokens_BT, lengths_B, positions_BT, langs_BT = pair_batch(arch, torch.Generator().manual_seed(1))
    mask_BT = (torch.arange(tokens_BT.shape[1])[None] < lengths_B[:, None]).long()
    with torch.no_grad():
        ref = theirs(tokens_BT, attention_mask=mask_BT, langs=langs_BT, position_ids=positions_BT).logits
        got = ours(tokens_BT, attention_mask_BT=mask_BT, langs_BT=langs_BT, positions_BT=positions_BT, causal=causal)
        assert (got - ref).abs().max() <= 1e-5
        # Default lengths (non-pad count) and explicit lengths.
        ref = theirs(tokens_BT, langs=langs_BT).logits
        assert (ours(tokens_BT, langs_BT=langs_BT, causal=causal) - ref).abs().max() <= 1e-5
        ref = theirs(tokens_BT, lengths=lengths_B).logits
        assert (ours(tokens_BT, lengths_B=lengths_B, causal=causal) - ref).abs().max() <= 1e-5
        # Predicted positions only: the same rows of the full logits.
        pred_mask_BT = torch.rand(tokens_BT.shape, generator=torch.Generator().manual_seed(2)) < 0.3
        logits_NV = ours(tokens_BT, pred_mask_BT=pred_mask_BT, lengths_B=lengths_B, causal=causal)
        assert (logits_NV - ref[pred_mask_BT]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["mlm-en", "mlm-tlm-xnli15", "relu-sinusoidal-untied"])
def test_lm_loss_gradients_match_transformers(name: str) -> None:
    """The predicted-positions-only head and last layer give transformers' gradients, parameter by parameter."""
    arch, causal, ours, theirs = build_pair(name)
    tokens_BT, lengths_B, positions_BT, langs_BT = pair_batch(arch, torch.Generator().manual_seed(4))
    real_BT = torch.arange(tokens_BT.shape[1])[None] < lengths_B[:, None]
    pred_mask_BT = real_BT & (torch.rand(tokens_BT.shape, generator=torch.Generator().manual_seed(5)) < 0.2)
    targets_N = tokens_BT[pred_mask_BT]
    logits_NV = ours(tokens_BT, pred_mask_BT=pred_mask_BT, lengths_B=lengths_B, langs_BT=langs_BT,
                     positions_BT=positions_BT, causal=causal)  # fmt: skip
    torch.nn.functional.cross_entropy(logits_NV, targets_N).backward()
    labels_BT = torch.full_like(tokens_BT, -100).masked_scatter(pred_mask_BT, targets_N)
    theirs(tokens_BT, lengths=lengths_B, langs=langs_BT, position_ids=positions_BT, labels=labels_BT).loss.backward()
    grads = {name: p.grad for name, p in theirs.named_parameters()}
    checked = 0
    for param_name, param in ours.named_parameters():
        if param.grad is None:
            continue
        assert (param.grad - grads[param_name]).abs().max() <= 1e-5, param_name
        checked += 1
    last = arch.n_layers - 1
    assert ours.transformer.ffns[last].lin2.weight.grad.abs().max() > 0  # the shortened last layer learns
    assert checked >= 16 * arch.n_layers


@pytest.mark.parametrize("name", ["clm-enfr", "mlm-100", "mlm-tlm-xnli15"])
def test_encoder_hidden_states_match_transformers(name: str) -> None:
    arch, causal, ours, theirs_lm = build_pair(name)
    theirs = transformers.XLMModel(theirs_lm.config).eval()
    encoder_state = ours.transformer.state_dict()
    theirs.load_state_dict(encoder_state, strict=True)
    tokens_BT, lengths_B, positions_BT, langs_BT = pair_batch(arch, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = theirs(tokens_BT, lengths=lengths_B, langs=langs_BT, position_ids=positions_BT).last_hidden_state
        got = ours.transformer(
            tokens_BT, lengths_B=lengths_B, langs_BT=langs_BT, positions_BT=positions_BT, causal=causal
        )
    assert (got - ref).abs().max() <= 1e-5
    assert got[tokens_BT == 2].abs().max() == 0  # padded positions are exactly zero


def test_sequence_classifier_matches_transformers() -> None:
    arch = make_arch(**FAMILIES["mlm-tlm-xnli15"][0])
    torch.manual_seed(0)
    ours = XLMForSequenceClassification(arch, num_labels=3).eval()
    config = hf_config(
        arch,
        architectures=["XLMForSequenceClassification"],
        lang2id=lang2id_of(FAMILIES["mlm-tlm-xnli15"][2]),
        causal=False,
    )
    theirs = transformers.XLMForSequenceClassification(transformers.XLMConfig.from_dict({**config, "num_labels": 3}))
    theirs.eval().load_state_dict(ours.state_dict(), strict=True)
    tokens_BT, lengths_B, _, langs_BT = pair_batch(arch, torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = theirs(tokens_BT, lengths=lengths_B, langs=langs_BT).logits
        got = ours(tokens_BT, lengths_B=lengths_B, langs_BT=langs_BT)
    assert got.shape == (4, 3)
    assert (got - ref).abs().max() <= 1e-5


def write_codes(tmp_path: Path, *, final_newline: bool = False) -> Path:
    codes = tmp_path / "codes"
    codes.write_text("\n".join(CODES) + ("\n" if final_newline else ""), encoding="utf-8")
    return codes


@pytest.mark.parametrize("name", ["clm-enfr", "mlm-en", "mlm-tlm-xnli15"])
def test_export_loads_in_transformers(name: str, tmp_path: Path) -> None:
    arch, causal, ours, _ = build_pair(name)
    langs = FAMILIES[name][2]
    lang2id = lang2id_of(langs)
    out = export_lm(
        ours,
        arch,
        tmp_path / name,
        words=WORDS,
        codes_path=write_codes(tmp_path),
        lang2id=lang2id,
        do_lowercase_and_remove_accent=True,
        causal=causal,
        card={"perplexity": {"en": 12.5}},
    )
    model = transformers.XLMWithLMHeadModel.from_pretrained(out).eval()
    assert model.config.causal is causal
    tokenizer = transformers.XLMTokenizer.from_pretrained(out)
    auto_tokenizer = transformers.AutoTokenizer.from_pretrained(out)

    # Hand-made merges reproduce fastBPE: "the", "cat", "hello" are single pieces, "that" is th@@ a@@ t.
    vocab = {w if i < 14 else (w[:-2] if w.endswith("@@") else w + "</w>"): i for i, w in enumerate(WORDS)}
    expected = [
        1,
        vocab["hello</w>"],
        vocab["the</w>"],
        vocab["cat</w>"],
        vocab["th"],
        vocab["a"],
        vocab["t</w>"],
        vocab[".</w>"],
        1,
    ]
    assert tokenizer("Hello the CAT that.")["input_ids"] == expected  # XLM layout: </s> … </s>
    assert auto_tokenizer("Hello the CAT that.")["input_ids"] == expected

    input_ids_BT = torch.tensor([expected, expected[:5] + [2] * 4])
    mask_BT = (input_ids_BT != 2).long()
    langs_BT = torch.full_like(input_ids_BT, lang2id.get("en", 0))
    with torch.no_grad():
        ref = model(input_ids_BT, attention_mask=mask_BT, langs=langs_BT).logits
        got = ours(input_ids_BT, langs_BT=langs_BT, causal=causal)
    assert (got - ref).abs().max() <= 1e-4

    fill = transformers.pipeline("fill-mask", model=str(out), tokenizer=str(out))
    predictions = fill("hello <special1> cat")
    assert len(predictions) == 5 and all("score" in p for p in predictions)


def test_export_classifier_loads_in_transformers(tmp_path: Path) -> None:
    arch = make_arch(n_langs=15, use_lang_emb=True)
    torch.manual_seed(0)
    ours = XLMForSequenceClassification(arch, num_labels=3).eval()
    out = export_classifier(
        ours,
        arch,
        tmp_path / "xnli",
        words=WORDS,
        codes_path=write_codes(tmp_path),
        lang2id=lang2id_of(FAMILIES["mlm-tlm-xnli15"][2]),
        do_lowercase_and_remove_accent=True,
    )
    model = transformers.XLMForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}
    tokens_BT, lengths_B, _, langs_BT = pair_batch(arch, torch.Generator().manual_seed(5))
    mask_BT = (tokens_BT != 2).long()
    with torch.no_grad():
        ref = model(tokens_BT, attention_mask=mask_BT, langs=langs_BT).logits
        got = ours(tokens_BT, langs_BT=langs_BT)
    assert (got - ref).abs().max() <= 1e-4
