"""Fill-mask with the language id set: `xlm predict` and the model card's transformers code."""

from __future__ import annotations

import contextlib
import io
import re
import string
from pathlib import Path

import pytest
import torch

from tests.support.tiny import tiny_arch
from xlm_cli.main import main
from xlm_core.data.dictionary import EOS_INDEX, MASK_INDEX
from xlm_core.evaluation.fill_mask import encode_masked, fill_mask
from xlm_core.export import export_lm
from xlm_core.model import XLMWithLMHeadModel

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
WORDS = SPECIALS + [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + ["th@@", "the"]
LANG2ID = {"en": 0, "fr": 1}
LINE = re.compile(r"^\s+(\d+)\. (\S+)\s+([0-9.]+)$")


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, XLMWithLMHeadModel]:
    torch.manual_seed(0)
    model = XLMWithLMHeadModel(tiny_arch(len(WORDS), dropout=0.0, attention_dropout=0.0)).eval()
    codes = tmp_path / "codes"
    codes.write_text("t h 50\nth e</w> 40\n", encoding="utf-8")
    out = export_lm(
        model, model.arch, tmp_path / "export", words=WORDS, codes_path=codes, lang2id=LANG2ID,
        do_lowercase_and_remove_accent=True, causal=False,
    )  # fmt: skip
    return out, model


def predicted(capsys: pytest.CaptureFixture[str], *argv: str) -> list[tuple[str, float]]:
    assert main(["predict", *argv]) == 0
    return [(m[2], float(m[3])) for line in capsys.readouterr().out.splitlines() if (m := LINE.match(line))]


def test_predict_sets_the_language(exported, capsys) -> None:
    out, model = exported
    french = predicted(capsys, str(out), "--lang", "fr", "--top-k", "4", "le chat est sur la <mask> .")
    english = predicted(capsys, str(out), "--lang", "en", "--top-k", "4", "le chat est sur la <special1> .")
    assert len(french) == len(english) == 4

    word2id = {w: i for i, w in enumerate(WORDS)}
    ids = encode_masked("le chat est sur la <mask> .", lang="fr", lowercase=True, codes_path=out / "merges.txt",
                        word2id=word2id)  # fmt: skip
    tokens_1T = torch.tensor([[EOS_INDEX, *ids, EOS_INDEX]])
    with torch.no_grad():
        logits_1TV = model(tokens_1T, langs_BT=torch.full_like(tokens_1T, LANG2ID["fr"]))
    probs_V = logits_1TV[0, ids.index(MASK_INDEX) + 1].softmax(-1)
    top = probs_V.topk(4)
    assert [t for t, _ in french] == [WORDS[i] for i in top.indices.tolist()]
    assert [p for _, p in french] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert french != english  # the language embedding changes the prediction


def test_predict_input_errors(exported, capsys, tmp_path: Path) -> None:
    out, model = exported
    assert main(["predict", str(out), "--lang", "fr", "le chat ."]) == 2
    assert "has no mask" in capsys.readouterr().err
    assert main(["predict", str(out), "--lang", "de", "le <mask> ."]) == 2
    assert "not one of the model's languages" in capsys.readouterr().err
    causal = export_lm(
        model, model.arch, tmp_path / "causal", words=WORDS, codes_path=out / "merges.txt", lang2id=LANG2ID,
        do_lowercase_and_remove_accent=True, causal=True,
    )  # fmt: skip
    assert main(["predict", str(causal), "--lang", "fr", "le <mask> ."]) == 2
    assert "causal" in capsys.readouterr().err
    with pytest.raises(ValueError, match="top_k"):
        fill_mask(model, "a <mask>", lang="fr", words=WORDS, codes_path=out / "merges.txt", lang2id=LANG2ID,
                  lowercase=True, top_k=0)  # fmt: skip


def test_card_code_runs_with_transformers(exported, capsys) -> None:
    pytest.importorskip("transformers")
    out, _ = exported
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "xlm predict" in card and 'pipeline("fill-mask") cannot pass `langs`' in card
    code = card.split("# How to Get Started with the Model")[1].split("```python")[1].split("```")[0]
    assert 'model.config.lang2id["fr"]' in code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    card_top = [(token, float(prob)) for token, prob in (line.split("\t") for line in printed.getvalue().splitlines())]
    ours = predicted(capsys, str(out), "--lang", "fr", "le chat est sur la <mask> .")
    # transformers spells the XLM word `a` as `a</w>` and the piece `a@@` as `a` (vocab.json)
    as_hf = {w: w if w in SPECIALS else w[:-2] if w.endswith("@@") else f"{w}</w>" for w in WORDS}
    assert [t for t, _ in card_top] == [as_hf[t] for t, _ in ours]
    assert [p for _, p in card_top] == pytest.approx([p for _, p in ours], abs=2e-3)
