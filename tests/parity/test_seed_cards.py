"""The seed model cards' "get started" code runs verbatim against local tiny exports of each family.

The snippets are copied below exactly as the cards give them (the scraped cards in the folder named by
$XLM_SEED_CARDS lose the line breaks of two copies; `extract_snippet` restores them and the first test checks
the copies here against the cards when that folder is present). Only the hub id string is replaced
by the local export path. The xlm-mlm-100-1280 and xlm-mlm-tlm-xnli15-1024 cards have no code (the
first says "More information needed", the second points to the multilingual-inference docs), so
those families run the xlm-clm-enfr-1024 card's multilingual snippet, which is that docs' recipe.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from tests.support.tiny import tiny_arch  # noqa: E402
from xlm_core.export import export_lm  # noqa: E402
from xlm_core.model import XLMWithLMHeadModel  # noqa: E402

# The scraped cards are not part of the repository: the cross-check runs where $XLM_SEED_CARDS names them.
SEEDS_DIR = Path(os.environ["XLM_SEED_CARDS"]) if os.environ.get("XLM_SEED_CARDS") else None

SNIPPETS = {
    # seeds/000 (xlm-clm-enfr-1024)
    "xlm-clm-enfr-1024": """\
import torch
from transformers import XLMTokenizer, XLMWithLMHeadModel
tokenizer = XLMTokenizer.from_pretrained("xlm-clm-enfr-1024")
model = XLMWithLMHeadModel.from_pretrained("xlm-clm-enfr-1024")
input_ids = torch.tensor([tokenizer.encode("Wikipedia was used to")]) # batch size of 1
language_id = tokenizer.lang2id["en"] # 0
langs = torch.tensor([language_id] * input_ids.shape[1]) # torch.tensor([0, 0, 0, ..., 0]) # We reshape it to be of size (batch_size, sequence_length)
langs = langs.view(1, -1) # is now of shape [1, sequence_length] (we have a batch size of 1)
outputs = model(input_ids, langs=langs)
""",  # noqa: E501
    # seeds/001 and seeds/003 (xlm-mlm-en-2048)
    "xlm-mlm-en-2048": """\
from transformers import XLMTokenizer, XLMModel
import torch

tokenizer = XLMTokenizer.from_pretrained("xlm-mlm-en-2048")
model = XLMModel.from_pretrained("xlm-mlm-en-2048")

inputs = tokenizer("Hello, my dog is cute", return_tensors="pt")
outputs = model(**inputs)

last_hidden_states = outputs.last_hidden_state
""",
}
CARDS_WITHOUT_CODE = ("xlm-mlm-100-1280", "xlm-mlm-tlm-xnli15-1024")

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
CODES = "w i 50\nwi k 40\nu s 30\nus e 20\nd</w> 10\n"
WORDS = SPECIALS + [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + ["wi@@", "wik@@", "us@@"]
XNLI15 = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]

FAMILIES = {
    # hub id: (n_langs, use_lang_emb, languages, causal, lowercase)
    "xlm-clm-enfr-1024": (2, True, ["en", "fr"], True, True),
    "xlm-mlm-en-2048": (1, True, ["en"], False, True),
    "xlm-mlm-100-1280": (100, False, sorted(["en", *(f"x{i:02d}" for i in range(99))]), False, False),
    "xlm-mlm-tlm-xnli15-1024": (15, True, XNLI15, False, True),
}

_STATEMENT_START = re.compile(r"(?:^|(?<=\s))(?:from [\w.]+ import |import \w|[A-Za-z_]\w* = )")


def extract_snippet(card: str) -> str | None:
    """The card's python "get started" code (fenced, or the plain lines after that heading), or None."""
    fenced = re.search(r"```python\s*(.*?)```", card, re.S)
    if fenced:
        code = fenced.group(1)
    else:
        heading = re.search(r"How to Get Started with the Model", card, re.I)
        start = heading and re.search(r"^(?:from \S+ import|import )", card[heading.end() :], re.M)
        if not start:
            return None
        code = card[heading.end() + start.start() :]
    code = code.strip()
    if "\n" not in code:
        # The scrape joined the lines with spaces: cut before every statement start again.
        cuts = [0, *(m.start() for m in _STATEMENT_START.finditer(code)), len(code)]
        code = "\n".join(code[a:b].strip() for a, b in zip(cuts, cuts[1:], strict=False) if code[a:b].strip())
    return code + "\n"


def _statements(code: str) -> list[str]:
    return [line.strip() for line in code.splitlines() if line.strip()]


def test_snippets_are_the_cards_code() -> None:
    if SEEDS_DIR is None:
        pytest.skip("cross-check against the scraped seed cards: set XLM_SEED_CARDS to their folder")
    cards = sorted(SEEDS_DIR.glob("*.txt"))
    assert cards, f"XLM_SEED_CARDS={SEEDS_DIR} holds no *.txt seed cards"
    found: dict[str, list[str]] = {}
    for card_path in cards:
        card = card_path.read_text(encoding="utf-8")
        hub_id = next(name for name in FAMILIES if name in card)
        snippet = extract_snippet(card)
        if hub_id in CARDS_WITHOUT_CODE:
            assert snippet is None, f"{card_path.name} now has code: add it to SNIPPETS"
            continue
        assert snippet is not None, card_path.name
        compile(snippet, card_path.name, "exec")
        assert _statements(snippet) == _statements(SNIPPETS[hub_id]), card_path.name
        found.setdefault(hub_id, []).append(card_path.name)
    assert set(found) == set(SNIPPETS)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, XLMWithLMHeadModel]]:
    tmp = tmp_path_factory.mktemp("seed-exports")
    codes = tmp / "codes"
    codes.write_text(CODES, encoding="utf-8")
    out = {}
    for index, (hub_id, (n_langs, use_lang_emb, langs, causal, lowercase)) in enumerate(FAMILIES.items()):
        arch = tiny_arch(len(WORDS), n_langs=n_langs, use_lang_emb=use_lang_emb)
        torch.manual_seed(index)
        model = XLMWithLMHeadModel(arch).eval()
        lang2id = {lang: i for i, lang in enumerate(sorted(langs))}
        path = export_lm(
            model,
            arch,
            tmp / hub_id,
            words=WORDS,
            codes_path=codes,
            lang2id=lang2id,
            do_lowercase_and_remove_accent=lowercase,
            causal=causal,
        )
        out[hub_id] = (path, model)
    return out


def _run(snippet: str, hub_id: str, path: Path) -> dict:
    code = snippet.replace(f'"{hub_id}"', repr(str(path)))
    assert f'"{hub_id}"' not in code and code.count(repr(str(path))) == snippet.count(f'"{hub_id}"') > 0
    namespace: dict = {"__name__": "__seed_card__"}
    exec(compile(code, f"<{hub_id} card>", "exec"), namespace)  # noqa: S102 - the cards' own code
    return namespace


@pytest.mark.parametrize("hub_id", list(FAMILIES))
def test_card_snippet_runs_on_local_export(hub_id: str, exports: dict) -> None:
    path, model = exports[hub_id]
    card_id = hub_id if hub_id in SNIPPETS else "xlm-clm-enfr-1024"
    ns = _run(SNIPPETS[card_id], card_id, path)
    vocab_size, emb_dim = len(WORDS), model.arch.emb_dim
    if card_id == "xlm-clm-enfr-1024":
        input_ids, langs, outputs = ns["input_ids"], ns["langs"], ns["outputs"]
        assert input_ids.shape[0] == 1 and input_ids[0, 0] == 1 and input_ids[0, -1] == 1  # `</s> ... </s>`
        assert langs.shape == input_ids.shape and bool((langs == ns["tokenizer"].lang2id["en"]).all())
        assert outputs.logits.shape == (1, input_ids.shape[1], vocab_size)
        assert ns["model"].config.causal is FAMILIES[hub_id][3]
        with torch.no_grad():
            ours = model(input_ids, langs_BT=langs, causal=ns["model"].config.causal)
    else:
        inputs, hidden = ns["inputs"], ns["last_hidden_states"]
        assert hidden.shape == (1, inputs["input_ids"].shape[1], emb_dim)
        assert "token_type_ids" not in inputs
        with torch.no_grad():
            ours = model.transformer(inputs["input_ids"], attention_mask_BT=inputs["attention_mask"])
        outputs = ns["outputs"]
        assert outputs.last_hidden_state is hidden
    theirs = outputs.logits if card_id == "xlm-clm-enfr-1024" else outputs.last_hidden_state
    assert (ours - theirs.detach()).abs().max() <= 1e-5
