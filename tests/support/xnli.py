"""XNLI fixtures: XNLI-1.0, MultiNLI and XNLI-MT zips in the real formats with a learnable rule, and a
tiny 15-language pretrained model export to fine-tune (random weights; its BPE covers the fixture text)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from tests.support.fixtures import multinli_txt, write_zip, xnli_jsonl, xnli_tsv
from tests.support.tiny import tiny_arch
from xlm_core.data.dictionary import SPECIAL_WORDS
from xlm_core.data.nli import XNLI_LANGS
from xlm_core.export import export_lm
from xlm_core.model import XLMWithLMHeadModel

__all__ = ["SERVED", "build_xnli_fixture", "xnli_overrides"]

# The served names: the real formats, but not the published files, so not under the published names
# (a download named like a published zip is checked against its pinned size and SHA-256).
SERVED = {"xnli": "XNLI-1.0-fixture.zip", "multinli": "multinli_1.0-fixture.zip", "xnli_mt": "XNLI-MT-1.0-fixture.zip"}

# Learnable rule: the hypothesis carries one marker word that names the class; the rest is filler.
MARKERS = {"entailment": "yes", "contradiction": "no", "neutral": "maybe"}
FILLER = ["cat", "dog", "tree", "house", "river", "stone", "bird", "fish", "road", "cloud"]
CODES = "".join(f"{a} {b} {100 - i}\n" for i, (a, b) in enumerate([("y", "e"), ("ye", "s</w>"), ("n", "o</w>")]))


def _rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = list(MARKERS)[i % 3]
        premise = " ".join(rng.choices(FILLER, k=4))
        words = rng.choices(FILLER, k=3)
        words.insert(rng.randrange(4), MARKERS[label])
        rows.append((premise, " ".join(words), label))
    return rows


def _words() -> list[str]:
    letters = sorted(set("".join(FILLER + list(MARKERS.values()))))
    return [*SPECIAL_WORDS, *(c + "@@" for c in letters), *letters, "ye@@", "yes", "no"]


def _mt_tsv(rows: list[tuple[str, str, str]]) -> str:
    body = "".join(f"{s1}\t{s2}\t{'contradictory' if label == 'contradiction' else label}\n" for s1, s2, label in rows)
    return "premise\thypo\tlabel\n" + body


def build_xnli_fixture(root: Path, *, train_pairs: int = 300, eval_pairs: int = 30) -> tuple[Path, Path]:
    """Write the three zips of `SERVED` into `root/served/` and `root/pretrained` (an
    export); return both. XNLI-MT holds a training set per language (other rows than MultiNLI's) and each
    language's dev/test rows (the same pairs and labels as XNLI's) as its "English translations"."""
    dev = {lang: _rows(eval_pairs, seed=i) for i, lang in enumerate(XNLI_LANGS)}
    test = {lang: _rows(eval_pairs, seed=100 + i) for i, lang in enumerate(XNLI_LANGS)}
    served = root / "served"
    write_zip(
        served / SERVED["xnli"],
        {
            "XNLI-1.0/": None,
            "XNLI-1.0/xnli.dev.jsonl": xnli_jsonl(dev),
            "XNLI-1.0/xnli.dev.tsv": xnli_tsv(dev),
            "XNLI-1.0/xnli.test.jsonl": xnli_jsonl(test),
            "XNLI-1.0/xnli.test.tsv": xnli_tsv(test),
            "__MACOSX/": None,
        },
    )
    rows = _rows(train_pairs, seed=7)
    train = [(s1, s2, label, str(i), f"{i}e", "fiction") for i, (s1, s2, label) in enumerate(rows)]
    write_zip(
        served / SERVED["multinli"],
        {"multinli_1.0/": None, "multinli_1.0/multinli_1.0_train.txt": multinli_txt(train), "__MACOSX/": None},
    )
    mt: dict[str, str | bytes | None] = {"XNLI-MT-1.0/": None, "XNLI-MT-1.0/multinli/": None, "XNLI-MT-1.0/xnli/": None}
    for i, lang in enumerate(XNLI_LANGS):
        mt[f"XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv"] = _mt_tsv(_rows(train_pairs // 3, seed=200 + i))
        mt[f"XNLI-MT-1.0/xnli/xnli.dev.{lang}.tsv"] = _mt_tsv(dev[lang])
        mt[f"XNLI-MT-1.0/xnli/xnli.test.{lang}.tsv"] = _mt_tsv(test[lang])
    write_zip(served / SERVED["xnli_mt"], mt | {"__MACOSX/": None})
    torch.manual_seed(0)
    arch = tiny_arch(len(_words()), n_langs=len(XNLI_LANGS), dropout=0.0, attention_dropout=0.0)
    (root / "codes").write_text(CODES, encoding="utf-8")
    model_dir = export_lm(
        XLMWithLMHeadModel(arch),
        arch,
        root / "pretrained",
        words=_words(),
        codes_path=root / "codes",
        lang2id={lang: i for i, lang in enumerate(XNLI_LANGS)},
        do_lowercase_and_remove_accent=True,
        causal=False,
    )
    return served, model_dir


def xnli_overrides(root: Path, server_url: str, **xnli: object) -> dict[str, object]:
    """Overrides of the tiny config for XNLI on the fixture zips served at `server_url`, working under
    `root/work`; `xnli` adds `xnli.*` settings (e.g. `epoch_size=160`)."""
    return {
        "experiment.workdir": str(root / "work"),
        "tokenization.workers": 1,
        "tracking.system_metrics": False,
        "xnli.enabled": True,
        "xnli.xnli_url": f"{server_url}/{SERVED['xnli']}",
        "xnli.multinli_url": f"{server_url}/{SERVED['multinli']}",
        "xnli.xnli_mt_url": f"{server_url}/{SERVED['xnli_mt']}",
        "xnli.lr_encoder": 2e-3,
        "xnli.lr_classifier": 2e-3,
    } | {f"xnli.{key}": value for key, value in xnli.items()}
