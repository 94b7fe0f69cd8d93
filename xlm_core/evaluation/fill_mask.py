"""Fill-mask with the language id set: the top-k tokens at each mask of a sentence.

transformers' `pipeline("fill-mask")` cannot pass `langs`, so on a multilingual XLM it runs without
language embeddings, an input never seen in training. Here the sentence is encoded as in training
and evaluation (`text.encode_text`: Moses tokenisation with the model's lowercasing, fastBPE with
its codes, its dictionary), as `</s> w1 .. wn </s>`, with `langs` = the language's id on every
position when the model has several languages. A mask is written `<mask>` or as the export's mask
token `<special1>`; the text between masks is encoded piece by piece.

Shape legend: B batch (1) · T time · V vocabulary · M masks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from xlm_core.data.dictionary import EOS_INDEX, MASK_INDEX
from xlm_core.evaluation.text import encode_text

__all__ = ["MASK_MARKERS", "MaskPrediction", "encode_masked", "fill_mask"]

logger = logging.getLogger(__name__)

MASK_MARKERS = ("<mask>", "<special1>")
_MASK_SPLIT = re.compile("(" + "|".join(re.escape(marker) for marker in MASK_MARKERS) + ")")


@dataclass(frozen=True)
class MaskPrediction:
    """The `top_k` candidates at one mask: `position` in `</s> w1 .. wn </s>`, tokens as in the dictionary."""

    position: int
    tokens: list[str]
    probs: list[float]


def encode_masked(
    text: str, *, lang: str, lowercase: bool, codes_path: str | Path, word2id: Mapping[str, int]
) -> list[int]:
    """Ids of `text` (without the surrounding `</s>`), each mask marker becoming `<mask>` (id 5)."""
    ids: list[int] = []
    for piece in _MASK_SPLIT.split(text):
        if piece in MASK_MARKERS:
            ids.append(MASK_INDEX)
        elif piece.strip():
            encoded, _, _ = encode_text([piece], lang=lang, lowercase=lowercase, codes_path=codes_path, word2id=word2id)
            ids += encoded[0] if encoded else []
    if MASK_INDEX not in ids:
        raise ValueError(f"fill-mask: {text!r} has no mask; write {MASK_MARKERS[0]} where a word should be predicted")
    return ids


@torch.no_grad()
def fill_mask(
    model: torch.nn.Module,
    text: str,
    *,
    lang: str,
    words: Sequence[str],
    codes_path: str | Path,
    lang2id: Mapping[str, int],
    lowercase: bool,
    top_k: int = 5,
    device: torch.device | str = "cpu",
) -> list[MaskPrediction]:
    """The `top_k` most probable tokens and their probabilities at every mask of `text`, in order.

    Args:
        model: an MLM `XLMWithLMHeadModel` (its mode is restored afterwards).
        text: raw text with one or more `<mask>` (or `<special1>`).
        lang: the text's language; its id is passed as `langs` when the model has several languages.
        words: the model's dictionary in id order; codes_path: its fastBPE codes (or merges.txt).
        lang2id: the model's languages; lowercase: its lowercase-and-remove-accent flag for `lang`.
    """
    if top_k < 1:
        raise ValueError(f"fill-mask: top_k must be >= 1, got {top_k}")
    if lang2id and lang not in lang2id:
        raise ValueError(f"fill-mask: language {lang!r} is not one of the model's languages {sorted(lang2id)}")
    word2id = {word: index for index, word in enumerate(words)}
    ids = encode_masked(text, lang=lang, lowercase=lowercase, codes_path=codes_path, word2id=word2id)
    max_positions = model.arch.max_position_embeddings
    if len(ids) + 2 > max_positions:
        raise ValueError(
            f"fill-mask: the text is {len(ids)} BPE pieces, more than the model's {max_positions - 2}; shorten it"
        )
    tokens_BT = torch.tensor([[EOS_INDEX, *ids, EOS_INDEX]], device=device)
    langs_BT = torch.full_like(tokens_BT, lang2id[lang]) if len(lang2id) > 1 else None
    was_training = model.training
    model.eval()
    try:
        logits_BTV = model(tokens_BT, langs_BT=langs_BT)
    finally:
        model.train(was_training)
    positions_M = (tokens_BT[0] == MASK_INDEX).nonzero().squeeze(1)
    probs_MV = logits_BTV[0, positions_M].float().softmax(dim=-1)
    top_probs_MK, top_ids_MK = probs_MV.topk(min(top_k, probs_MV.shape[-1]), dim=-1)
    return [
        MaskPrediction(int(position), [words[i] for i in top_ids_K.tolist()], top_probs_K.tolist())
        for position, top_ids_K, top_probs_K in zip(positions_M.tolist(), top_ids_MK, top_probs_MK, strict=True)
    ]
