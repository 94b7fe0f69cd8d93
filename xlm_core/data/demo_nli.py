"""An offline stand-in for XNLI 1.0 and MultiNLI 1.0: real text, the real zip layouts, rule labels.

No NLI corpus exists offline. This module writes `XNLI-1.0.zip` and `multinli_1.0.zip` in the
published layouts (members, headers, 19- and 15-column TSVs with `QUOTE_NONE` text, JSONL twins,
`__MACOSX/`), so the real download, zip readers, tokenizer, BPE and binarizer run unchanged.
The sentences are real human-written text: the gettext catalogs of the pinned wheels (English
message ids, and their translations for the other XNLI languages; see `demo_catalogs.catalog_pairs`),
so every machine builds the same zips (`demo_manifest` checks them for the demo config).

The labels are NOT natural language inference. They follow a fixed rule over a premise P:

    entailment      hypothesis = the first half of P
    contradiction   hypothesis = the second half of P
    neutral         hypothesis = the first half of another premise

Halves are taken over words, or over characters for text without spaces (zh, th). The classes are
balanced. It is a format and plumbing demo whose accuracy says nothing about XNLI.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from xlm_core.data.demo_catalogs import catalog_pairs
from xlm_core.data.demo_manifest import check_corpus
from xlm_core.data.demo_sources import SOURCES
from xlm_core.data.nli import XNLI_LANGS
from xlm_core.data.tokenize import normalize_and_tokenize
from xlm_core.io import atomic_path

__all__ = ["build_demo_nli", "build_demo_xnli_mt", "nli_files", "rule_pairs"]

logger = logging.getLogger(__name__)

_XNLI_COLUMNS = [
    "language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
    "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2", "label3",
    "label4", "label5", "sentence1_tokenized", "sentence2_tokenized", "match",
]  # fmt: skip
_MULTINLI_COLUMNS = [
    "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
    "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2", "label3", "label4", "label5",
]  # fmt: skip
_RULE = ("entailment", "contradiction", "neutral")
_GENRE = "gettext"
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def _units(text: str) -> tuple[list[str], str]:
    words = text.split()
    return (words, " ") if len(words) >= 4 else (list(text.replace(" ", "")), "")


def _half(text: str, second: bool) -> str:
    units, joiner = _units(text)
    middle = len(units) // 2
    return joiner.join(units[middle:] if second else units[:middle])


def _usable(text: str) -> bool:
    units, _ = _units(text)
    return len(units) >= 4 and "\t" not in text


def rule_pairs(sentences: list[str]) -> list[tuple[str, str, str]]:
    """(premise, hypothesis, label) for each sentence, labels cycling through the rule's three classes."""
    rows = []
    for index, premise in enumerate(sentences):
        label = _RULE[index % 3]
        if label == "neutral":
            other = sentences[(index + 1) % len(sentences)]
            hypothesis = _half(other, second=False)
        else:
            hypothesis = _half(premise, second=label == "contradiction")
        rows.append((premise, hypothesis, label))
    return rows


def _sentences(lang: str, count: int, *, skip: int = 0) -> list[str]:
    """Distinct usable sentences of `lang`: English message ids for en, translations otherwise."""
    source = catalog_pairs("fr" if lang == "en" else lang)
    side = 0 if lang == "en" else 1
    seen: dict[str, None] = {}
    for pair in source:
        text = _clean(pair[side])
        if _usable(text):
            seen.setdefault(text)
        if len(seen) >= skip + count:
            break
    sentences = list(seen)[skip : skip + count]
    if len(sentences) < 3:
        raise ValueError(
            f"demo NLI: only {len(sentences)} usable {lang} sentences in the pinned catalogs. Fix: drop {lang!r} "
            "from xnli.langs or pin a wheel with more of its translations (xlm_core/data/demo_sources.py)."
        )
    return sentences


def _parses(text: str) -> tuple[str, str]:
    words = text.split()
    return "( " + " ".join(words) + " )", "(ROOT (S " + " ".join(f"(X {w})" for w in words) + "))"


def _xnli_members(rows: dict[str, list[tuple[str, str, str]]]) -> tuple[str, str]:
    tsv, jsonl = ["\t".join(_XNLI_COLUMNS)], []
    for lang, items in rows.items():
        for pair_id, (s1, s2, label) in enumerate(items, 1):
            (b1, p1), (b2, p2) = _parses(s1), _parses(s2)
            annotators = [label] * 5
            tsv.append("\t".join([lang, label, b1, b2, p1, p2, s1, s2, str(pair_id), str(pair_id), _GENRE]
                                 + annotators + [s1, s2, "True"]))  # fmt: skip
            record = {
                "annotator_labels": annotators,
                "genre": _GENRE,
                "gold_label": label,
                "language": lang,
                "match": "True",
                "pairID": str(pair_id),
                "promptID": str(pair_id),
                "sentence1": s1,
                "sentence1_tokenized": s1,
                "sentence2": s2,
                "sentence2_tokenized": s2,
            }
            jsonl.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return "\n".join(tsv) + "\n", "\n".join(jsonl) + "\n"


def _multinli_members(rows: list[tuple[str, str, str]]) -> tuple[str, str]:
    txt, jsonl = ["\t".join(_MULTINLI_COLUMNS)], []
    for index, (s1, s2, label) in enumerate(rows):
        (b1, p1), (b2, p2) = _parses(s1), _parses(s2)
        prompt, pair = str(index), f"{index}{label[0]}"
        txt.append("\t".join([label, b1, b2, p1, p2, s1, s2, prompt, pair, _GENRE] + [label] * 5))
        record = {
            "annotator_labels": [label] * 5,
            "genre": _GENRE,
            "gold_label": label,
            "pairID": pair,
            "promptID": prompt,
            "sentence1": s1,
            "sentence1_binary_parse": b1,
            "sentence1_parse": p1,
            "sentence2": s2,
            "sentence2_binary_parse": b2,
            "sentence2_parse": p2,
        }
        jsonl.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return "\n".join(txt) + "\n", "\n".join(jsonl) + "\n"


def _write_zip(path: Path, members: list[tuple[str, str | bytes | None]]) -> Path:
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = (0o755 if data is None else 0o644) << 16
            info.compress_type = zipfile.ZIP_STORED if data is None else zipfile.ZIP_DEFLATED
            payload = b"" if data is None else data if isinstance(data, bytes) else data.encode("utf-8")
            archive.writestr(info, payload)
    return path


_README = (
    "Offline demo stand-in, NOT {name}: real sentences from the gettext catalogs of pinned PyPI wheels,\n"
    "labels from a fixed rule (entailment: first half of the premise; contradiction: second half;\n"
    "neutral: first half of another premise). Written by xlm_core.data.demo_nli in the published archive\n"
    "layout. The sentences keep the licences of the packages they come from:\n{licences}"
)
_LICENCES = "".join(f"- {s.name} {s.version}: {s.licence}\n" for s in SOURCES if s.kind == "pypi")


def build_demo_nli(
    out_root: Path,
    *,
    langs: list[str] | tuple[str, ...] = XNLI_LANGS,
    train_pairs: int,
    eval_pairs: int,
    check: bool = True,
    translations: bool = False,
) -> dict[str, str]:
    """Write `out_root/XNLI/XNLI-1.0.zip` and `out_root/multinli/multinli_1.0.zip` (and, with
    `translations`, `out_root/XNLI-MT/XNLI-MT-1.0.zip`: see `build_demo_xnli_mt`).

    Args:
        langs: XNLI languages to include (dev and test rows each).
        train_pairs: English training pairs (MultiNLI train); dev_matched/dev_mismatched get a few.
        eval_pairs: dev and test pairs per language.
        check: log the corpus digest; for the demo config's sizes compare it with the committed manifest
            (`demo_manifest.check_corpus`, which raises `DemoCorpusError` on a difference).

        translations: also write the XNLI-MT stand-in (translate-train and translate-test modes).

    Returns:
        `{"xnli_url", "multinli_url"}` (+ `"xnli_mt_url"`), file:// URLs for the ordinary download stage.
    """
    out_root = Path(out_root).resolve()
    dev, test = {}, {}
    for lang in langs:
        sentences = _sentences(lang, 2 * eval_pairs)
        dev[lang] = rule_pairs(sentences[: len(sentences) // 2])
        test[lang] = rule_pairs(sentences[len(sentences) // 2 :])
    # English training text comes after the evaluation sentences, so the sets do not overlap.
    train = rule_pairs(_sentences("en", train_pairs, skip=2 * eval_pairs))
    xnli_path = out_root / "XNLI" / "XNLI-1.0.zip"
    members: list[tuple[str, str | bytes | None]] = [("XNLI-1.0/", None)]
    for name, rows in (("dev", dev), ("test", test)):
        tsv, jsonl = _xnli_members(rows)
        members += [(f"XNLI-1.0/xnli.{name}.jsonl", jsonl), (f"XNLI-1.0/xnli.{name}.tsv", tsv)]
    members += [("XNLI-1.0/README.md", _README.format(name="XNLI 1.0", licences=_LICENCES)), ("__MACOSX/", None)]
    _write_zip(xnli_path, members)

    multinli_path = out_root / "multinli" / "multinli_1.0.zip"
    members = [("multinli_1.0/", None)]
    for split, rows in (("train", train), ("dev_matched", train[:30]), ("dev_mismatched", train[30:60])):
        txt, jsonl = _multinli_members(rows)
        members += [
            (f"multinli_1.0/multinli_1.0_{split}.jsonl", jsonl),
            (f"multinli_1.0/multinli_1.0_{split}.txt", txt),
        ]
    members += [
        ("multinli_1.0/README.txt", _README.format(name="MultiNLI 1.0", licences=_LICENCES)),
        ("__MACOSX/", None),
        ("__MACOSX/multinli_1.0/", None),
        ("__MACOSX/multinli_1.0/._multinli_1.0_train.txt", b"\x00\x05\x16\x07\x00\x02\x00\x00"),
    ]
    _write_zip(multinli_path, members)
    logger.info("demo NLI: %d train pairs, %d dev/test pairs x %d languages", len(train), eval_pairs, len(langs))
    built = {"xnli_url": xnli_path.as_uri(), "multinli_url": multinli_path.as_uri()}
    if translations:
        built["xnli_mt_url"] = build_demo_xnli_mt(out_root, langs=langs, train_pairs=train_pairs, eval_pairs=eval_pairs)
    if check:
        params = {"langs": list(langs), "train_pairs": train_pairs, "eval_pairs": eval_pairs}
        params |= {"translations": True} if translations else {}
        check_corpus("nli", params, out_root, nli_files(built))
    return built


def nli_files(built: dict[str, str]) -> list[Path]:
    """The zips a `build_demo_nli` call wrote."""
    keys = [key for key in ("xnli_url", "multinli_url", "xnli_mt_url") if key in built]
    return [Path(url2pathname(urlparse(built[key]).path)) for key in keys]


def _aligned(lang: str, count: int, *, skip: int = 0) -> list[tuple[str, str]]:
    """(English, `lang`) for the sentences `_sentences(lang, count, skip=skip)` picks, in its order."""
    side = 0 if lang == "en" else 1
    seen: dict[str, str] = {}
    for pair in catalog_pairs("fr" if lang == "en" else lang):
        text = _clean(pair[side])
        if _usable(text):
            seen.setdefault(text, _clean(pair[0]))
        if len(seen) >= skip + count:
            break
    return [(english, text) for text, english in list(seen.items())[skip : skip + count]]


def _tokenized(rows: list[tuple[str, str, str]], lang: str, contradiction: str) -> str:
    """A `premise hypo label` TSV as XNLI-MT writes it: Moses-tokenised text, its label names."""
    lines = ["premise\thypo\tlabel"]
    for s1, s2, label in rows:
        s1, s2 = (normalize_and_tokenize(text, lang, lowercase=False) for text in (s1, s2))
        lines.append(f"{s1}\t{s2}\t{contradiction if label == 'contradiction' else label}")
    return "\n".join(lines) + "\n"


def build_demo_xnli_mt(out_root: Path, *, langs: list[str] | tuple[str, ...], train_pairs: int, eval_pairs: int) -> str:
    """Write `out_root/XNLI-MT/XNLI-MT-1.0.zip` in XNLI-MT 1.0's layout; returns its file:// URL.

    Members: `XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv`, the stand-in for MultiNLI translated into
    each language (the catalogs' `lang` sentences after those of the dev/test sets; label `contradictory`
    as in the real files), and `XNLI-MT-1.0/xnli/xnli.{dev,test}.{lang}.tsv`, each language's demo
    dev/test set "translated into English": the catalogs' English message ids of the same premises,
    with the same rule labels as `XNLI-1.0.zip`'s rows. Text is tokenised as XNLI-MT's is.
    """
    members: list[tuple[str, str | bytes | None]] = [("XNLI-MT-1.0/", None), ("XNLI-MT-1.0/multinli/", None)]
    for lang in langs:
        train = rule_pairs(_sentences(lang, train_pairs, skip=2 * eval_pairs))
        members.append((f"XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv", _tokenized(train, lang, "contradictory")))
    members.append(("XNLI-MT-1.0/xnli/", None))
    for lang in langs:
        english = [en for en, _ in _aligned(lang, 2 * eval_pairs)]
        for name, part in (("dev", english[: len(english) // 2]), ("test", english[len(english) // 2 :])):
            members.append(
                (f"XNLI-MT-1.0/xnli/xnli.{name}.{lang}.tsv", _tokenized(rule_pairs(part), "en", "contradiction"))
            )
    members += [
        ("XNLI-MT-1.0/README.md", _README.format(name="XNLI-MT 1.0", licences=_LICENCES)),
        ("__MACOSX/", None),
        ("__MACOSX/XNLI-MT-1.0/multinli/._multinli.train.en.tsv", b"\x00\x05\x16\x07\x00\x02\x00\x00"),
    ]
    path = _write_zip(Path(out_root) / "XNLI-MT" / "XNLI-MT-1.0.zip", members)
    logger.info("demo XNLI-MT: translated train and English dev/test sets for %d languages", len(langs))
    return path.as_uri()
