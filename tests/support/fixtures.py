"""Builders of small fixture files in the exact published layouts (docs/data-sources.md, "OPUS" to
"MultiNLI 1.0").

- XNLI 1.0 zip: `XNLI-1.0/xnli.{dev,test}.{tsv,jsonl}` + README, 19-column TSV with header.
- XNLI-MT 1.0 zip: `XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv` (`premise hypo label`,
  `contradictory`), plus `XNLI-MT-1.0/xnli/xnli.dev.en.tsv`.
- MultiNLI 1.0 zip: `multinli_1.0/multinli_1.0_{train,dev_matched,dev_mismatched}.{txt,jsonl}`
  (15-column TSV, `-` labels in dev) and a `__MACOSX/` directory.
- IITB `parallel.tgz`: `parallel/IITB.en-hi.{en,hi}`.
- OPUS API answers (`{"corpora": [...]}`, keys sorted as Flask's jsonify writes them) from
  catalogue rows, with the API's filtering and pair sorting; the XNLI-15 catalogue entries.
- Hostile archives: zip members with `../` or absolute names, tar symlink/hardlink members.

Texts are the corpora's own first rows where known (XNLI dev pair 1-3, MultiNLI train row 1,
IITB's first GNOME-derived lines).
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

_PARSES = ["sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]
_ANNOTATIONS = ["promptID", "pairID", "genre", "label1", "label2", "label3", "label4", "label5"]
XNLI_COLUMNS = [
    "language", "gold_label", *_PARSES, "sentence1", "sentence2", *_ANNOTATIONS,
    "sentence1_tokenized", "sentence2_tokenized", "match",
]  # fmt: skip
MULTINLI_COLUMNS = ["gold_label", *_PARSES, "sentence1", "sentence2", *_ANNOTATIONS]

# (premise, hypothesis, label) per language; XNLI dev promptID 1, pairIDs 1-3 (the same across languages).
XNLI_DEV = {
    "en": [
        ("And he said, Mama, I'm home.", "He called his mom as soon as the school bus dropped him off.", "neutral"),
        ("And he said, Mama, I'm home.", "He didn't say a word.", "contradiction"),
        ("And he said, Mama, I'm home.", "He told his mom he had gotten home.", "entailment"),
    ],
    "fr": [
        (
            "Et il a dit, maman, je suis à la maison.",
            "Il a appelé sa mère dès que le bus scolaire l'a déposé.",
            "neutral",
        ),
        ("Et il a dit, maman, je suis à la maison.", "Il n'a pas dit un mot.", "contradiction"),
        ("Et il a dit, maman, je suis à la maison.", "Il a dit à sa mère qu'il était rentré.", "entailment"),
    ],
}
XNLI_TEST = {
    "en": [
        (
            "Well, I wasn't even thinking about that, but I was so frustrated, and, I ended up talking to him again.",
            "I havent spoken to him again.",
            "contradiction",
        ),
        ("He said \"it's fine and walked out.", "He left.", "entailment"),  # a bare quote: QUOTE_NONE
    ],
    "fr": [
        (
            "Eh bien, je ne pensais même pas à cela, mais j'étais si frustré, et j'ai fini par lui reparler.",
            "Je ne lui ai pas parlé de nouveau.",
            "contradiction",
        ),
        ("Il a dit \"c'est bon et il est sorti.", "Il est parti.", "entailment"),
    ],
}
XNLI_MT_TRAIN = {
    "en": [
        (
            "Conceptually cream skimming has two basic dimensions - product and geography .",
            "Product and geography are what make cream skimming work .",
            "neutral",
        ),
        (
            "you know during the season and i guess at at your level uh you lose them to the next level if "
            "if they decide to recall the the parent team the Braves decide to call to recall a guy from "
            "triple A then a double A guy goes up to replace him and a single A guy goes up to replace him",
            "You lose the things to the following level if the people recall .",
            "entailment",
        ),
        (
            "One of our number will carry out your instructions minutely .",
            "A member of my team will execute your orders with immense precision .",
            "entailment",
        ),
        ("How do you know ? All this is their information again .", "This information belongs to them .", "entailment"),
        (
            "yeah i tell you what though if you go price some of those tennis shoes i can see why now you "
            "know they 're getting up in the hundred dollar range",
            "The tennis shoes have a range of prices .",
            "neutral",
        ),
        (
            "my walkman broke so i 'm upset now i just have to turn the stereo up real loud",
            "I 'm upset that my walkman broke and now I have to turn the stereo up really loud .",
            "entailment",
        ),
        (
            "But a few Christian mosaics survive above the apse is the Virgin with the infant Jesus , "
            "with the Archangel Gabriel to the right ( his companion Michael , to the left , has vanished "
            "save for a few feathers from his wings ) .",
            "Most of the Christian mosaics were destroyed by Muslims .",
            "neutral",
        ),
        (
            "( Read for Slate 's take on Jackson 's findings . )",
            "Slate had an opinion on Jackson 's findings .",
            "entailment",
        ),
        ("Gays and lesbians .", "Heterosexuals .", "contradictory"),
    ],
}
MULTINLI_TRAIN = [
    (
        "Conceptually cream skimming has two basic dimensions - product and geography.",
        "Product and geography are what make cream skimming work. ",
        "neutral",
        "31193",
        "31193n",
        "government",
    ),
    (
        "you know during the season and i guess at at your level uh you lose them to the next level if if they "
        "decide to recall the the parent team the Braves decide to call to recall a guy from triple A then a "
        "double A guy goes up to replace him and a single A guy goes up to replace him",
        "You lose the things to the following level if the people recall.",
        "entailment",
        "101457",
        "101457e",
        "telephone",
    ),
]
MULTINLI_DEV = [
    (
        "The new rights are nice enough",
        "Everyone really likes the newest benefits ",
        "neutral",
        "63735",
        "63735n",
        "slate",
    ),
    (
        "This site includes a list of all award winners and a searchable database of Government Executive articles.",
        "The Government Executive articles housed on the website are not able to be searched.",
        "contradiction",
        "91383",
        "91383c",
        "government",
    ),
    (
        "uh i don't know i i have mixed emotions about him uh sometimes i like him but at the same times i "
        "love to see somebody beat him",
        "I like him for the most part, but would still enjoy seeing someone beat him.",
        "-",
        "755",
        "755e",
        "telephone",
    ),
]
IITB_PAIRS = [
    ("Give your application an accessibility workout", "अपने अनुप्रयोग को पहुंचनीयता व्यायाम का लाभ दें"),
    ("Accerciser Accessibility Explorer", "एक्सेर्साइसर पहुंचनीयता अन्वेषक"),
    ("The default plugin layout for the bottom panel", "निचले पटल के लिए डिफोल्ट प्लग-इन खाका"),
    ("The default plugin layout for the top panel", "ऊपरी पटल के लिए डिफोल्ट प्लग-इन खाका"),
]


def _parse(sentence: str) -> tuple[str, str]:
    """Penn-style binary parse and parse strings (shape only; readers must ignore them)."""
    words = sentence.replace(",", " ,").replace(".", " .").split()
    binary = "( " + " ".join(words) + " )"
    return binary, "(ROOT (S " + " ".join(f"(NN {w})" for w in words) + "))"


def _tokenized(sentence: str) -> str:
    return " ".join(sentence.replace(",", " ,").replace(".", " .").replace("'m", " 'm").split())


def xnli_tsv(rows: dict[str, list[tuple[str, str, str]]]) -> str:
    lines = ["\t".join(XNLI_COLUMNS)]
    for lang, items in rows.items():
        for pair_id, (s1, s2, label) in enumerate(items, 1):
            (b1, p1), (b2, p2) = _parse(s1), _parse(s2)
            others = [label, label, "neutral" if label != "neutral" else "entailment", label]
            fields = [lang, label, b1, b2, p1, p2, s1, s2, "1", str(pair_id), "facetoface", label, *others]
            lines.append("\t".join([*fields, _tokenized(s1), _tokenized(s2), "True"]))
    return "\n".join(lines) + "\n"


def xnli_jsonl(rows: dict[str, list[tuple[str, str, str]]]) -> str:
    out = []
    for lang, items in rows.items():
        for pair_id, (s1, s2, label) in enumerate(items, 1):
            record = {
                "annotator_labels": [label] * 5,
                "genre": "facetoface",
                "gold_label": label,
                "language": lang,
                "match": "True",
                "pairID": str(pair_id),
                "promptID": "1",
                "sentence1": s1,
                "sentence1_tokenized": _tokenized(s1),
                "sentence2": s2,
                "sentence2_tokenized": _tokenized(s2),
            }
            out.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return "\n".join(out) + "\n"


def write_zip(path: Path, members: dict[str, str | bytes | None]) -> Path:
    """A zip with the given members in order; `None` makes a directory entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if data is None:
                archive.writestr(zipfile.ZipInfo(name), b"")  # a name ending in "/" is a directory
            else:
                archive.writestr(name, data)
    return path


def write_xnli_zip(path: Path, dev=XNLI_DEV, test=XNLI_TEST) -> Path:  # noqa: B006 - read-only defaults
    return write_zip(
        path,
        {
            "XNLI-1.0/": None,
            "XNLI-1.0/xnli.dev.jsonl": xnli_jsonl(dev),
            "XNLI-1.0/xnli.dev.tsv": xnli_tsv(dev),
            "XNLI-1.0/xnli.test.jsonl": xnli_jsonl(test),
            "XNLI-1.0/xnli.test.tsv": xnli_tsv(test),
            "XNLI-1.0/README.md": "# XNLI\nThe Cross-lingual NLI Corpus (version 1.0).\n",
            "__MACOSX/": None,
            "__MACOSX/XNLI-1.0/._xnli.dev.tsv": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
        },
    )


def write_xnli_mt_zip(path: Path, train=XNLI_MT_TRAIN) -> Path:  # noqa: B006 - read-only defaults
    members: dict[str, str | bytes | None] = {"XNLI-MT-1.0/": None, "XNLI-MT-1.0/multinli/": None}
    for lang, rows in train.items():
        body = "premise\thypo\tlabel\n" + "".join(f"{s1}\t{s2}\t{label}\n" for s1, s2, label in rows)
        members[f"XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv"] = body
    members["XNLI-MT-1.0/xnli/"] = None
    members["XNLI-MT-1.0/xnli/xnli.dev.en.tsv"] = "premise\thypo\tlabel\n" + "".join(
        f"{_tokenized(s1)}\t{_tokenized(s2)}\t{label}\n" for s1, s2, label in XNLI_DEV["en"]
    )
    members["__MACOSX/XNLI-MT-1.0/multinli/._multinli.train.en.tsv"] = b"\x00\x05\x16\x07"
    return write_zip(path, members)


def multinli_txt(rows: list[tuple[str, str, str, str, str, str]]) -> str:
    lines = ["\t".join(MULTINLI_COLUMNS)]
    for s1, s2, label, prompt_id, pair_id, genre in rows:
        (b1, p1), (b2, p2) = _parse(s1), _parse(s2)
        annotators = [label if label != "-" else "neutral", "neutral", "entailment" if label == "-" else label, "", ""]
        lines.append("\t".join([label, b1, b2, p1, p2, s1, s2, prompt_id, pair_id, genre, *annotators]))
    return "\n".join(lines) + "\n"


def multinli_jsonl(rows: list[tuple[str, str, str, str, str, str]]) -> str:
    out = []
    for s1, s2, label, prompt_id, pair_id, genre in rows:
        (b1, p1), (b2, p2) = _parse(s1), _parse(s2)
        record = {
            "annotator_labels": [label if label != "-" else "neutral"],
            "genre": genre,
            "gold_label": label,
            "pairID": pair_id,
            "promptID": prompt_id,
            "sentence1": s1,
            "sentence1_binary_parse": b1,
            "sentence1_parse": p1,
            "sentence2": s2,
            "sentence2_binary_parse": b2,
            "sentence2_parse": p2,
        }
        out.append(json.dumps(record))
    return "\n".join(out) + "\n"


def write_multinli_zip(path: Path) -> Path:
    members: dict[str, str | bytes | None] = {"multinli_1.0/": None}
    for split, rows in (("train", MULTINLI_TRAIN), ("dev_matched", MULTINLI_DEV), ("dev_mismatched", MULTINLI_DEV)):
        members[f"multinli_1.0/multinli_1.0_{split}.jsonl"] = multinli_jsonl(rows)
        members[f"multinli_1.0/multinli_1.0_{split}.txt"] = multinli_txt(rows)
    members["multinli_1.0/README.txt"] = "MultiNLI 1.0\n"
    members["__MACOSX/"] = None
    members["__MACOSX/multinli_1.0/"] = None
    members["__MACOSX/multinli_1.0/._multinli_1.0_train.txt"] = b"\x00\x05\x16\x07\x00\x02\x00\x00"
    return write_zip(path, members)


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is None:
        archive.addfile(info)
    else:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def write_iitb_tgz(path: Path, pairs=IITB_PAIRS, *, hi_extra: int = 0) -> Path:  # noqa: B006
    """`parallel.tgz` as published: a `parallel/` directory with the two sides."""
    path.parent.mkdir(parents=True, exist_ok=True)
    en = "".join(f"{e}\n" for e, _ in pairs).encode("utf-8")
    hi = "".join(f"{h}\n" for _, h in pairs).encode("utf-8") + "अतिरिक्त\n".encode() * hi_extra
    with tarfile.open(path, "w:gz") as archive:
        _tar_add(archive, "parallel", type=tarfile.DIRTYPE, mode=0o755)
        _tar_add(archive, "parallel/IITB.en-hi.en", en, mode=0o644)
        _tar_add(archive, "parallel/IITB.en-hi.hi", hi, mode=0o644)
    return path


def write_tar_with_link(path: Path, kind: str = "symlink") -> Path:
    """A tgz whose second member is a symlink (or hardlink) pointing outside the target directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        _tar_add(archive, "parallel/IITB.en-hi.en", b"hello\n", mode=0o644)
        link_type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        _tar_add(archive, "parallel/IITB.en-hi.hi", type=link_type, linkname="../../../../etc/passwd")
    return path


# --------------------------------------------------------------------------- OPUS API


def opus_row(
    corpus: str,
    version: str,
    pair: str,
    size_kb: int,
    alignment_pairs: int,
    *,
    latest: bool = True,
    preprocessing: str = "moses",
    base: str = "https://object.pouta.csc.fi",
    row_id: int = 1,
) -> dict:
    """One API row; keys in the order Flask's jsonify (sort_keys) writes them."""
    source, target = sorted(pair.split("-"))
    suffix = {"moses": f"moses/{source}-{target}.txt.zip", "xml": f"xml/{source}-{target}.xml.gz"}[preprocessing]
    return {
        "alignment_pairs": alignment_pairs,
        "corpus": corpus,
        "documents": "" if preprocessing == "moses" else 42,
        "id": row_id,
        "latest": "True" if latest else "False",
        "preprocessing": preprocessing,
        "size": size_kb,
        "source": source,
        "source_tokens": alignment_pairs * 20,
        "target": target,
        "target_tokens": alignment_pairs * 22,
        "url": f"{base}/OPUS-{corpus}/{version}/{suffix}",
        "version": version,
    }


# The XNLI-15 catalogue entries (size KB, alignment pairs) as the opustools catalogue lists them.
XNLI15_CATALOGUE = [
    ("MultiUN", "v1", "ar-en", 1012008, 9759125),
    ("EUbookshop", "v2", "bg-en", 21868, 221229),
    ("EUbookshop", "v2", "de-en", 833996, 9333066),
    ("EUbookshop", "v2", "el-en", 395568, 4022952),
    ("MultiUN", "v1", "en-es", 1096840, 11350967),
    ("MultiUN", "v1", "en-fr", 1323244, 13172019),
    ("IITB", "v2.0", "en-hi", 101634, 1555734),
    ("MultiUN", "v1", "en-ru", 1255665, 11654416),
    ("Tanzil", "v1", "en-sw", 8205, 138253),
    ("GlobalVoices", "v2018q4", "en-sw", 2880, 32307),
    ("OpenSubtitles", "v2018", "en-th", 116719, 3281533),
    ("OpenSubtitles", "v2018", "en-tr", 1327266, 44994737),
    ("Tanzil", "v1", "en-ur", 77806, 748320),
    ("OpenSubtitles", "v2018", "en-vi", 104862, 3505276),
    ("MultiUN", "v1", "en-zh", 878980, 9564315),
]


def xnli15_rows() -> list[dict]:
    rows = []
    for i, (corpus, version, pair, size_kb, pairs) in enumerate(XNLI15_CATALOGUE):
        rows.append(opus_row(corpus, version, pair, size_kb, pairs, row_id=1000 + 2 * i))
        rows.append(opus_row(corpus, version, pair, size_kb * 3, pairs, preprocessing="xml", row_id=1001 + 2 * i))
    # An older OpenSubtitles release, not latest, to exercise version selection.
    rows.append(opus_row("OpenSubtitles", "v2016", "en-tr", 900000, 30000000, latest=False, row_id=999))
    return rows


def opus_api_route(rows: list[dict]):  # noqa: ANN201 - returns a tests.support.http_server.Route
    """Emulate Helsinki-NLP/OPUS-API's `/opusapi/` for corpus queries (sorted pair, latest → latest='True')."""

    def route(query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        params = {key: values[0] for key, values in query.items()}
        if not params:
            return 200, "text/html", b"<html><body><h1>OPUS API</h1></body></html>"
        if params.get("corpora") == "True":
            names = sorted({row["corpus"] for row in rows})
            return 200, "application/json", json.dumps({"corpora": names}).encode()
        source, target = params.get("source", ""), params.get("target", "")
        if source and target:
            source, target = sorted([source, target])
        selected = []
        for row in rows:
            if "corpus" in params and row["corpus"] != params["corpus"]:
                continue
            if source and row["source"] != source or target and row["target"] != target:
                continue
            if "preprocessing" in params and row["preprocessing"] != params["preprocessing"]:
                continue
            version = params.get("version")
            if (
                version == "latest"
                and row["latest"] != "True"
                or version not in (None, "latest")
                and row["version"] != version
            ):
                continue
            selected.append(row)
        return 200, "application/json", json.dumps({"corpora": selected}, sort_keys=True).encode()

    return route
