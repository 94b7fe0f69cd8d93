"""Perplexity and accuracy of a model on a raw text file, one sentence per line.

Each line goes through the model's own preprocessing: Moses tokenisation with the model's
lowercasing (`normalize_and_tokenize`), fastBPE `applybpe` with its codes, and its dictionary
(unknown pieces -> `<unk>`). Every sentence is scored as its own sequence `</s> w1 ... wn </s>`:

- CLM: causal attention, every position after the first is predicted;
  perplexity = exp(total NLL / predicted tokens).
- MLM: the original's evaluation masking (`eval_mask`: 15% of the inner positions, all `<mask>`,
  one fixed seed per batch), so numbers are reproducible.

Shape legend: B batch · T time · N predicted positions.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from xlm_core.data.bpe import apply_bpe
from xlm_core.data.dictionary import EOS_INDEX, MASK_INDEX, PAD_INDEX, UNK_INDEX
from xlm_core.data.tokenize import moses_rules_fallback, normalize_and_tokenize
from xlm_core.model import XLMWithLMHeadModel
from xlm_core.objectives import clm_targets, eval_mask, lm_loss

__all__ = ["TextEvaluation", "encode_text", "evaluate_text"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextEvaluation:
    objective: str
    lang: str
    perplexity: float
    accuracy: float  # percent of predicted tokens whose argmax is the target
    num_pred: int
    num_sentences: int
    num_skipped: int  # blank lines
    num_unk: int  # BPE pieces missing from the dictionary
    num_truncated: int = 0  # sentences cut to max_position_embeddings - 2 pieces

    def summary(self) -> str:
        return (
            f"{self.lang} {self.objective}: perplexity {self.perplexity:.4f}, accuracy {self.accuracy:.2f}%, "
            f"{self.num_pred} predicted tokens in {self.num_sentences} sentences "
            f"({self.num_skipped} blank lines skipped, {self.num_truncated} truncated, {self.num_unk} unknown pieces)"
        )


def _write_codes(codes_path: Path, dest: Path) -> None:
    """fastBPE needs `A B count` lines; transformers-saved merges.txt has `A B` only (rank = line)."""
    lines = codes_path.read_text(encoding="utf-8").split("\n")
    with open(dest, "w", encoding="utf-8", newline="\n") as out:
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and not line.startswith("#version"):
                out.write(f"{fields[0]} {fields[1]} {fields[2] if len(fields) > 2 else 0}\n")


def encode_text(
    lines: Sequence[str],
    *,
    lang: str,
    lowercase: bool,
    codes_path: str | Path,
    word2id: Mapping[str, int],
) -> tuple[list[list[int]], int, int]:
    """Token ids of each non-blank line (without the `</s>` around it), blank lines and unknown pieces."""
    moses_rules_fallback(lang)
    tokenized = [normalize_and_tokenize(line, lang, lowercase=lowercase) for line in lines]
    kept = [line for line in tokenized if line]
    if not kept:
        return [], len(lines), 0
    with tempfile.TemporaryDirectory(prefix="xlm-eval-") as tmp:
        tok_path, bpe_path, codes = Path(tmp) / "text.tok", Path(tmp) / "text.bpe", Path(tmp) / "codes"
        tok_path.write_text("\n".join(kept) + "\n", encoding="utf-8")
        _write_codes(Path(codes_path), codes)
        apply_bpe(tok_path, bpe_path, codes)
        bpe_lines = bpe_path.read_text(encoding="utf-8").split("\n")[: len(kept)]
    if len(bpe_lines) != len(kept):
        raise RuntimeError(f"fastBPE returned {len(bpe_lines)} lines for {len(kept)} input lines")
    ids = [[word2id.get(piece, UNK_INDEX) for piece in line.split(" ") if piece] for line in bpe_lines]
    num_unk = sum(sentence.count(UNK_INDEX) for sentence in ids)
    return ids, len(lines) - len(kept), num_unk


def _read_lines(path: Path) -> list[str]:
    """The file's lines; a missing, unreadable or non-UTF-8 file is a ValueError naming it and the fix."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); convert it, e.g. iconv -t UTF-8"
        ) from error
    except OSError as error:
        raise ValueError(f"{path}: cannot read the text file ({error.strerror or error}); check the path") from error


def _batch(sentences: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """`</s> w1 ... wn </s>` per sentence, right-padded: (tokens_BT, lengths_B)."""
    lengths_B = torch.tensor([len(s) + 2 for s in sentences], dtype=torch.long)
    tokens_BT = torch.full((len(sentences), int(lengths_B.max())), PAD_INDEX, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        tokens_BT[row, : len(sentence) + 2] = torch.tensor([EOS_INDEX, *sentence, EOS_INDEX])
    return tokens_BT, lengths_B


@torch.no_grad()
def evaluate_text(
    model: XLMWithLMHeadModel,
    text_file: str | Path,
    *,
    lang: str,
    words: Sequence[str],
    codes_path: str | Path,
    lang2id: Mapping[str, int],
    lowercase: bool,
    objective: str = "clm",
    batch_size: int = 32,
    word_pred: float = 0.15,
    device: torch.device | str = "cpu",
) -> TextEvaluation:
    """Score `text_file` (raw text, one sentence per line) with `model`; see the module docstring.

    Args:
        model: the LM (its mode is restored afterwards).
        text_file: UTF-8 text, one sentence per line; blank lines are skipped.
        lang: language of the text; its id is passed as `langs` when the model has several languages.
        words: the model's dictionary in id order; codes_path: its fastBPE codes (or merges.txt).
        lang2id: the model's languages; lowercase: its lowercase-and-remove-accent flag for `lang`.
        objective: "clm" or "mlm".
        batch_size: sentences per forward pass; word_pred: MLM target rate.
    """
    if objective not in ("clm", "mlm"):
        raise ValueError(f"objective must be 'clm' or 'mlm', got {objective!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if lang2id and lang not in lang2id:
        raise ValueError(f"language {lang!r} is not one of the model's languages {sorted(lang2id)}; pass --lang")
    lines = _read_lines(Path(text_file))
    word2id = {word: index for index, word in enumerate(words)}
    sentences, num_skipped, num_unk = encode_text(
        lines, lang=lang, lowercase=lowercase, codes_path=codes_path, word2id=word2id
    )
    # `</s> w1 .. wn </s>` uses positions 0..n+1: n <= max_position_embeddings - 2 fits the table.
    max_words = model.arch.max_position_embeddings - 2
    num_truncated = sum(1 for s in sentences if len(s) > max_words)
    if num_truncated:
        logger.warning(
            "%s: truncating %d sentences longer than %d BPE pieces (the position table)",
            text_file,
            num_truncated,
            max_words,
        )
        sentences = [s[:max_words] for s in sentences]
    use_langs = len(lang2id) > 1
    was_training = model.training
    model.eval()
    nll_sum = 0.0
    num_pred = num_correct = 0
    try:
        for batch_index, start in enumerate(range(0, len(sentences), batch_size)):
            tokens_BT, lengths_B = _batch(sentences[start : start + batch_size])
            if objective == "clm":
                inputs_BT = tokens_BT
                pred_mask_BT, targets_N = clm_targets(tokens_BT, lengths_B)
            else:
                inputs_BT, pred_mask_BT, targets_N = eval_mask(
                    tokens_BT, lengths_B, word_pred=word_pred, mask_index=MASK_INDEX, seed=batch_index
                )
            langs_BT = torch.full_like(tokens_BT, lang2id[lang]).to(device) if use_langs else None
            out = lm_loss(
                model,
                inputs_BT.to(device),
                pred_mask_BT.to(device),
                targets_N.to(device),
                lengths_B=lengths_B.to(device),
                langs_BT=langs_BT,
                causal=objective == "clm",
            )
            nll_sum += float(out.loss) * out.num_pred
            num_pred += out.num_pred
            num_correct += int(out.num_correct)
    finally:
        model.train(was_training)
    result = TextEvaluation(
        objective=objective,
        lang=lang,
        perplexity=math.exp(nll_sum / num_pred) if num_pred else float("nan"),
        accuracy=100.0 * num_correct / num_pred if num_pred else 0.0,
        num_pred=num_pred,
        num_sentences=len(sentences),
        num_skipped=num_skipped,
        num_unk=num_unk,
        num_truncated=num_truncated,
    )
    logger.info("%s", result.summary())
    return result
