"""`xlm evaluate` on raw text: CLM perplexity equals a hand computation with transformers; MLM is fixed."""

from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_core.evaluation.text import encode_text, evaluate_text
from xlm_core.export import export_lm
from xlm_core.export.importer import load_pretrained
from xlm_core.model import XLMWithLMHeadModel

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
CODES = ["t h 50", "th e</w> 40", "c a 30", "ca t</w> 20", "h e 15", "l l 12", "he ll 10", "hell o</w> 8"]
MERGED = ["th@@", "the", "ca@@", "cat", "he@@", "ll@@", "hell@@", "hello", "."]
WORDS = SPECIALS + [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + MERGED
LANG2ID = {"en": 0, "fr": 1}
TEXT = "The cat sat.\n\nHello, the Cat!\nZebra cafe thé hello hello\nA\n"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("evaluate")
    arch = tiny_arch(len(WORDS))
    torch.manual_seed(0)
    model = XLMWithLMHeadModel(arch)
    codes = tmp / "codes"
    codes.write_text("\n".join(CODES) + "\n", encoding="utf-8")
    return export_lm(
        model,
        arch,
        tmp / "export",
        words=WORDS,
        codes_path=codes,
        lang2id=LANG2ID,
        do_lowercase_and_remove_accent=True,
        causal=True,
    )


def _evaluate(export_dir: Path, text_file: Path, **kwargs: object):
    model, _, meta = load_pretrained(export_dir)
    options = dict(
        lang="fr",
        words=meta["words"],
        codes_path=meta["codes_path"],
        lang2id=meta["lang2id"],
        lowercase=meta["do_lowercase_and_remove_accent"],
        batch_size=2,
    )
    options.update(kwargs)
    return evaluate_text(model, text_file, **options)


def test_clm_perplexity_matches_transformers_by_hand(export_dir: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")

    result = _evaluate(export_dir, text_file, objective="clm")

    tokenizer = transformers.XLMTokenizer.from_pretrained(str(export_dir))
    hf_model = transformers.XLMWithLMHeadModel.from_pretrained(str(export_dir)).eval()
    assert hf_model.config.causal is True
    lines = [line for line in TEXT.splitlines() if line.strip()]
    # The export's tokenizer (bos "</s>") gives XLM's `</s> w1 ... wn </s>` with the same ids as our pipeline.
    hf_ids = [tokenizer.encode(line) for line in lines]
    ours, skipped, num_unk = encode_text(
        lines,
        lang="fr",
        lowercase=True,
        codes_path=export_dir / "merges.txt",
        word2id={w: i for i, w in enumerate(WORDS)},
    )
    assert hf_ids == [[1, *ids, 1] for ids in ours] and skipped == 0 and num_unk > 0
    nll, count = 0.0, 0
    with torch.no_grad():
        for ids in hf_ids:
            input_ids_1T = torch.tensor([ids])
            logits_TV = hf_model(input_ids_1T, langs=torch.full_like(input_ids_1T, LANG2ID["fr"])).logits[0]
            logp_TV = torch.log_softmax(logits_TV.double(), dim=-1)
            nll -= float(logp_TV[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
            count += len(ids) - 1
    assert result.num_pred == count and result.num_sentences == 4 and result.num_skipped == 1
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert 0.0 <= result.accuracy <= 100.0


def test_mlm_evaluation_is_deterministic(export_dir: Path, tmp_path: Path) -> None:
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT * 3, encoding="utf-8")
    first = _evaluate(export_dir, text_file, objective="mlm")
    second = _evaluate(export_dir, text_file, objective="mlm", batch_size=2)
    assert first == second and first.num_pred >= first.num_sentences  # every sentence gets a target
    assert math.isfinite(first.perplexity) and first.objective == "mlm"
    with pytest.raises(ValueError, match="not one of the model's languages"):
        _evaluate(export_dir, text_file, lang="de")


def test_sentences_longer_than_the_positions_are_truncated_and_counted(export_dir: Path, tmp_path: Path) -> None:
    """`</s> w1 .. wn </s>` must fit the 512 positions: n is cut to 510 pieces, and the cut is counted."""
    text_file = tmp_path / "long.txt"
    text_file.write_text("hello " * 600 + "\n\n" + "the cat\n" + "   \n", encoding="utf-8")
    result = _evaluate(export_dir, text_file, objective="clm")
    assert (result.num_sentences, result.num_skipped, result.num_truncated) == (2, 2, 1)
    assert result.num_pred == (510 + 1) + (2 + 1)  # every position after the first, per sentence
    assert "1 truncated" in result.summary()
