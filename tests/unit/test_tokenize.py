"""Moses pre-tokenisation: real sentences, lowercasing, whitespace rules, parallel == serial."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlm_core.data.tokenize import lowercase_and_remove_accent, normalize_and_tokenize, tokenize_file

CASES = [
    # (lang, input, cased output, lowercased output)
    (
        "en",
        "The\u00a0“quick” brown fox—isn’t it?\tIt costs $5.50 (approx.)…",
        'The " quick " brown fox - isn \'t it ? It costs $ 5.50 ( approx . ) ...',
        'the " quick " brown fox - isn \'t it ? it costs $ 5.50 ( approx . ) ...',
    ),
    (
        "fr",
        "L’élève a dit\u00a0: « C’est déjà l’été ! »",
        "L' élève a dit : \" C' est déjà l' été ! \"",
        "l' eleve a dit : \" c' est deja l' ete ! \"",
    ),
    (
        "de",
        "Die Straße „Hauptstraße“ ist 3,5\u00a0km lang, oder?",
        'Die Straße " Hauptstraße " ist 3,5 km lang , oder ?',
        'die straße " hauptstraße " ist 3,5 km lang , oder ?',
    ),
    (
        "ru",
        "Ёлка стоит в «Московском» доме — это факт.",
        'Ёлка стоит в " Московском " доме - это факт .',
        'елка стоит в " московском " доме - это факт .',
    ),
    (
        "el",
        "Η Ελληνική γλώσσα είναι «όμορφη»; Ναι.",
        'Η Ελληνική γλώσσα είναι " όμορφη " ; Ναι .',
        'η ελληνικη γλωσσα ειναι " ομορφη " ; ναι .',
    ),
    ("ar", "العَرَبِيَّة لغة جميلة، أليس كذلك؟", "العَرَبِيَّة لغة جميلة ، أليس كذلك ؟", "العربية لغة جميلة ، اليس كذلك ؟"),
    (
        "vi",
        "Tiếng Việt\u3000rất hay, phải không?",
        "Tiếng Việt rất hay , phải không ?",
        "tieng viet rat hay , phai khong ?",
    ),
]


@pytest.mark.parametrize(("lang", "text", "cased", "lowered"), CASES, ids=[c[0] for c in CASES])
def test_real_sentences(lang: str, text: str, cased: str, lowered: str) -> None:
    assert normalize_and_tokenize(text, lang, lowercase=False) == cased
    assert normalize_and_tokenize(text, lang, lowercase=True) == lowered


@pytest.mark.parametrize("text", ["", " \t\r ", "\u00a0\u3000\u2028"])
def test_blank_lines_stay_blank(text: str) -> None:
    assert normalize_and_tokenize(text, "en", lowercase=True) == ""


def test_only_single_spaces_remain() -> None:
    out = normalize_and_tokenize("a\tb\u00a0\u00a0c\r d\u2009e\u200bf  ", "en", lowercase=False)
    assert out == "a b c d ef"  # U+200B (format char) is removed, not turned into a space
    assert out.split(" ") == out.split()


def test_lowercase_and_remove_accent_matches_xlm_table() -> None:
    # the original's outputs (docs/original-xlm.md, "Lowercasing and accent removal"), with NFC afterwards
    assert lowercase_and_remove_accent("Café Ünïcode İstanbul ß") == "cafe unicode istanbul ß"
    assert lowercase_and_remove_accent("Ελληνικά Άλφα") == "ελληνικα αλφα"
    assert lowercase_and_remove_accent("Ёлка й") == "елка и"
    assert lowercase_and_remove_accent("Tiếng Việt") == "tieng viet"


def _write_corpus(path: Path) -> list[str]:
    base = [case[1] for case in CASES if case[0] in ("en", "fr", "de")]
    lines = [f"{i}: {base[i % len(base)]}" if i % 7 else "" for i in range(230)]
    lines.append("line with a stray \r carriage return and \u2028 separator")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_tokenize_file_parallel_equals_serial(tmp_path: Path) -> None:
    lines = _write_corpus(tmp_path / "in.txt")
    serial = tokenize_file(
        tmp_path / "in.txt", tmp_path / "serial.tok", lang="fr", lowercase=True, workers=1, chunk_lines=1000
    )
    parallel = tokenize_file(
        tmp_path / "in.txt", tmp_path / "par.tok", lang="fr", lowercase=True, workers=2, chunk_lines=17
    )
    serial_text = (tmp_path / "serial.tok").read_bytes()
    assert serial_text == (tmp_path / "par.tok").read_bytes()
    out_lines = serial_text.decode("utf-8").split("\n")[:-1]
    assert len(out_lines) == len(lines) == serial["lines"] == parallel["lines"]
    expected = [normalize_and_tokenize(line, "fr", lowercase=True) for line in lines]
    assert out_lines == expected
    assert serial["empty_lines"] == sum(1 for line in expected if not line)
    assert serial["tokens"] == sum(len(line.split()) for line in expected)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_tokenize_file_reports_bad_utf8(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"ok\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        tokenize_file(tmp_path / "bad.txt", tmp_path / "out.tok", lang="en", lowercase=False, workers=1)
    assert not (tmp_path / "out.tok").exists()
