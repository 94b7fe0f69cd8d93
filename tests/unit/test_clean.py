"""The cleaning filters on real text (pinned man pages and gettext catalogs): every removal is counted
under its filter, kept lines keep their order, and article boundaries follow the text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.real_text import catalog_lines, man_lines
from xlm_core.config import ConfigError, load_config
from xlm_core.config.cleaning import CleaningConfig, FilterSettings, resolve_filters
from xlm_core.data.clean import REASONS, CleaningError, Segment, clean_files, count_words
from xlm_core.data.dedup import line_key, normalize
from xlm_core.data.lid import LID_UNCHECKED, check_line, language_share, strip_for_lid

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
WIKI = resolve_filters(CleaningConfig(enabled=True), lang="en")
PARALLEL = resolve_filters(CleaningConfig(enabled=True), corpus="GNOME")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _clean_mono(tmp_path: Path, lines: list[str], lang: str = "en", filters: dict | None = None, **kw) -> tuple:
    src, out = _write(tmp_path / f"{lang}.all", lines), tmp_path / f"{lang}.clean"
    stats = clean_files([src], [out], langs=[lang], segments=[Segment("wiki", filters or WIKI)], **kw)
    return stats, _read(out)


def _check_counts(stats: dict) -> None:
    assert stats["kept"] + sum(stats[f"removed_{r}"] for r in REASONS) == stats["lines"]
    assert stats["removed"] == stats["lines"] - stats["kept"]


def test_duplicates_on_the_normalised_form_are_removed(tmp_path):
    english = man_lines("en", 40, min_words=6)
    first = english[3]
    variants = [first.upper(), "  " + first.replace(" ", "   ") + " ", first.rstrip(".!?,;:") + " !"]
    numbered = [
        "Version 2 of the interface was added in Linux 2.6.",
        "Version 3 of the interface was added in Linux 2.6.",
    ]
    lines = english + variants + numbered + numbered[:1] + english[:5]
    stats, kept = _clean_mono(tmp_path, lines, filters=WIKI | {"lid": False})
    _check_counts(stats)
    assert kept == list(dict.fromkeys(english)) + numbered  # first occurrences, in order; digits tell lines apart
    assert stats["removed_duplicate"] == len(variants) + 1 + 5 + (len(english) - len(set(english)))
    assert normalize("Hello,  World!") == normalize("hello world") != normalize("hello world 2")

    stats, kept = _clean_mono(tmp_path, lines, filters=WIKI | {"lid": False, "dedup": False})
    assert stats["removed_duplicate"] == 0 and kept == lines


def test_a_french_line_in_the_english_wikipedia_is_removed(tmp_path):
    english = man_lines("en", 60, min_words=8)
    french = man_lines("fr", 3, skip=200, min_words=12)
    short_french = "Voir aussi ceci"  # 3 words: too short to check, kept
    lines = english[:20] + [french[0]] + english[20:40] + french[1:] + [short_french] + english[40:]
    stats, kept = _clean_mono(tmp_path, lines)
    _check_counts(stats)
    assert stats["removed_lid"] == len(french) == stats["lid_failed_en"]
    assert kept == list(dict.fromkeys(english[:40] + [short_french] + english[40:]))  # every English line kept
    assert stats["lid_short_en"] >= 1 and stats["lid_checked_en"] >= len(english) - 5
    assert check_line(short_french, "en", 5) == LID_UNCHECKED
    assert check_line(french[0], "fr", 5) > 0.5 > check_line(french[0], "en", 5)


def test_lid_ignores_placeholders_urls_and_numbers():
    stripped = strip_for_lid(
        "Supprimer %(count)d %(items)s sur https://example.org/a?b=1 le 12/05 {0} <b>maintenant</b>"
    )
    assert stripped == "Supprimer sur le / maintenant"
    segment = "La suppression de %(count)d %(items)s a réussi."
    assert language_share(segment, "fr") < 0.5 < check_line(segment, "fr", 3)  # CLD2 alone: English


def test_a_misaligned_pair_and_an_untranslated_side_are_removed(tmp_path):
    english, french = catalog_lines("en", 400), catalog_lines("fr", 400)
    pairs = [(e, f) for e, f in zip(english, french, strict=True) if 4 <= len(e.split()) <= 30]
    pairs = list(dict.fromkeys(pairs))[:80]
    long_french = next(f for _, f in pairs if len(f.split()) >= 12)
    misaligned = ("Cancel", long_french)  # 1 word against 12+: a ratio above 9
    untranslated = (pairs[5][0], pairs[5][0] + " " + pairs[6][0])  # the French side is English text
    rows = pairs[:40] + [misaligned] + pairs[40:60] + [untranslated] + pairs[60:]
    en = _write(tmp_path / "p.en", [e for e, _ in rows])
    fr = _write(tmp_path / "p.fr", [f for _, f in rows])
    outputs = [tmp_path / "c.en", tmp_path / "c.fr"]
    stats = clean_files([en, fr], outputs, langs=["en", "fr"], segments=[Segment("GNOME-v1", PARALLEL)])
    _check_counts(stats)
    kept = list(zip(_read(outputs[0]), _read(outputs[1]), strict=True))
    assert misaligned not in kept and untranslated not in kept
    assert stats["removed_ratio"] == 1 and stats["removed_lid"] >= 1 and stats["lid_failed_fr"] >= 1
    assert len(kept) == stats["kept"] >= len(pairs) - 3  # the real pairs stay, sides aligned


def test_a_5000_word_line_is_removed(tmp_path):
    english = man_lines("en", 600, min_words=8)
    words: list[str] = []
    for line in english:
        words += line.split()
        if len(words) >= 5000:
            break
    huge = " ".join(words[:5000])
    lines = english[:30] + [huge] + english[30:60]
    stats, kept = _clean_mono(tmp_path, lines, filters=WIKI | {"lid": False})
    assert stats["removed_max_words"] == 1 and huge not in kept and count_words(huge, "en") == 5000
    long_chars = "x" * 30000  # one word, but 30,000 characters
    stats, kept = _clean_mono(tmp_path, english[:10] + [long_chars], filters=WIKI | {"lid": False})
    assert stats["removed_max_chars"] == 1 and long_chars not in kept


def test_near_duplicates_only_when_enabled(tmp_path):
    english = man_lines("en", 30, min_words=14)
    words = english[7].split()
    near = " ".join(words[:-1] + ["differently"])  # one word of 14+ changed
    lines = english + [near]
    stats, kept = _clean_mono(tmp_path, lines, filters=WIKI | {"lid": False})
    assert stats["removed_near_duplicate"] == 0 and near in kept
    stats, kept = _clean_mono(tmp_path, lines, filters=WIKI | {"lid": False, "near_dedup": True})
    assert stats["removed_near_duplicate"] >= 1 and near not in kept and english[7] in kept


def test_article_boundaries_follow_the_cleaned_text(tmp_path):
    english = list(dict.fromkeys(man_lines("en", 60, min_words=8)))[:30]
    french = man_lines("fr", 2, skip=300, min_words=12)
    articles = [english[0:10], french, english[10:20] + english[0:3], english[20:30]]  # the 2nd: all French
    src = _write(tmp_path / "en.all", [line for article in articles for line in article])
    docs = _write(tmp_path / "en.docs", [str(len(article)) for article in articles])
    out, out_docs = tmp_path / "en.clean", tmp_path / "en.clean.docs"
    stats = clean_files(
        [src], [out], langs=["en"], segments=[Segment("w", WIKI)], articles_in=docs, articles_out=out_docs
    )
    assert _read(out_docs) == ["10", "10", "10"] and len(_read(out)) == 30
    assert stats["articles"] == 4 and stats["articles_kept"] == 3
    _write(docs, ["10", "10"])
    with pytest.raises(CleaningError, match=r"add up to 20, the text has 35 lines; re-run the extract stage"):
        clean_files([src], [out], langs=["en"], segments=[Segment("w", WIKI)], articles_in=docs, articles_out=out_docs)


def test_segments_use_their_own_settings_and_dedup_spans_them(tmp_path):
    english, french = catalog_lines("en", 200), catalog_lines("fr", 200)
    rows = [(e, f) for e, f in zip(english, french, strict=True) if len(e.split()) >= 3][:60]
    strict_words = PARALLEL | {"min_words": 6}
    en = _write(tmp_path / "p.en", [e for e, _ in rows + rows[:10]])
    fr = _write(tmp_path / "p.fr", [f for _, f in rows + rows[:10]])
    segments = [Segment("A", PARALLEL | {"lid": False}, 60), Segment("B", strict_words | {"lid": False}, 10)]
    outputs = [tmp_path / "c.en", tmp_path / "c.fr"]
    stats = clean_files([en, fr], outputs, langs=["en", "fr"], segments=segments)
    by_name = {s["corpus"]: s for s in stats["segments"]}
    assert by_name["B"]["kept"] == 0 and by_name["B"]["lines"] == 10  # duplicates of A, or too short for B
    assert by_name["A"]["kept"] == stats["kept"] == len(set(rows))
    with pytest.raises(CleaningError, match="ends 5 lines early"):
        clean_files([en, fr], outputs, langs=["en", "fr"], segments=[Segment("A", PARALLEL, 75)])


def test_pair_keys_and_word_counts():
    assert line_key(["Open", "Ouvrir"]) == line_key(["open.", "OUVRIR !"]) != line_key(["Open", "Fermer"])
    assert count_words("Hello  world", "en") == 2 and count_words("你好 世界", "zh") == 4


def test_config_errors_name_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"cleaning.langs.de: 'de' has no Wikipedia data .*remove the entry"):
        load_config(TINY, {"cleaning.langs": {"de": {"min_words": 2}}})
    with pytest.raises(ConfigError, match=r"cleaning.corpora.Europarl: no corpus 'Europarl' in data.parallel"):
        load_config(TINY, {"cleaning.corpora": {"Europarl": {"max_ratio": 3.0}}})
    with pytest.raises(ConfigError, match=r"cleaning.wikipedia: min_words \(2000\) is above max_words \(1000\)"):
        load_config(TINY, {"cleaning.wikipedia.min_words": 2000})
    with pytest.raises(ConfigError, match=r"cleaning.wikipedia.lid_threshold: Input should be less than or equal to 1"):
        load_config(TINY, {"cleaning.wikipedia.lid_threshold": 1.5})
    cfg = load_config(TINY, {"cleaning.corpora": {"GNOME": {"kind": "subtitles", "max_words": 40}}})
    assert resolve_filters(cfg.cleaning, corpus="GNOME") | {} == resolve_filters(
        CleaningConfig(corpora={"GNOME": FilterSettings(kind="subtitles", max_words=40)}), corpus="GNOME"
    )
    assert resolve_filters(cfg.cleaning, corpus="GNOME")["max_words"] == 40
    assert resolve_filters(CleaningConfig(), corpus="OpenSubtitles")["kind"] == "subtitles"
    assert resolve_filters(CleaningConfig(), corpus="MultiUN")["max_ratio"] == 4.0
