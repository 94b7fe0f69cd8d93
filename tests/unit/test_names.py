"""Names that become paths: language codes, pairs, OPUS corpus names and experiment names are refused
before any file is written when they could leave the work directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import REPO
from xlm_core.config import ConfigError, load_config
from xlm_core.data import tokenize, wikipedia
from xlm_core.names import check_lang, check_pair, check_step
from xlm_core.paths import WorkLayout

TINY = REPO / "configs" / "tiny.yaml"
PRESETS = sorted((REPO / "configs" / "presets").glob("*.yaml"))


@pytest.mark.parametrize("lang", ["en", "ast", "zh", "simple", "zh_yue", "zh_min_nan", "zh_classical", "no"])
def test_language_codes_of_the_presets_are_accepted(lang):
    assert check_lang(lang, "data.langs") == lang


@pytest.mark.parametrize(
    "lang", ["../../x", "..", "en/fr", "EN", "e", "engl", "zh-Hans", "zh_Hans", "zh_", "", " en", "en\n", None, 3]
)
def test_other_shapes_are_refused(lang):
    with pytest.raises(ValueError, match=r"^data\.langs: .* is not a language code; use 2-3 lowercase letters"):
        check_lang(lang, "data.langs")


def test_pairs_and_steps():
    assert check_pair("fr-en", "p") == ("fr", "en")
    assert check_step("en", "s") == "en" and check_step("en-fr", "s") == "en-fr"
    for bad in ("en", "en-fr-de", "en-", "-en", "en_fr"):
        with pytest.raises(ValueError, match=r"^p: .* is not a language pair; write it l1-l2|is not a language code"):
            check_pair(bad, "p")
    with pytest.raises(ValueError, match="^p: pair 'en-en' names one language twice"):
        check_pair("en-en", "p")
    with pytest.raises(ValueError, match=r"^s: '\.\./x' in pair '\.\./x-en' is not a language code"):
        check_step("../x-en", "s")


def test_every_preset_loads_with_the_name_checks():
    assert len(PRESETS) == 4
    for preset in PRESETS:
        load_config(preset)


@pytest.mark.parametrize(
    "override,message",
    [
        ({"data.langs": ["en", "../../x"]}, r"data\.langs: '\.\./\.\./x' is not a language code"),
        ({"objectives.mlm_steps": ["en", "../../x"]}, r"objectives\.mlm_steps: '\.\./\.\./x' is not a language code"),
        ({"objectives.clm_steps": ["en/fr"]}, r"objectives\.clm_steps: 'en/fr' is not a language code"),
        ({"xnli.langs": ["en", "../fr"]}, r"xnli\.langs: '\.\./fr' is not a language code"),
        (
            {"data.parallel": [{"corpus": "GNOME", "version": "v1", "pair": "en-../x"}]},
            r"data\.parallel\.0\.pair: '\.\./x' in pair 'en-\.\./x' is not a language code",
        ),
        (
            {"data.parallel": [{"corpus": "../../GNOME", "version": "v1", "pair": "en-fr"}]},
            r"data\.parallel\.0\.corpus: '\.\./\.\./GNOME' must be a plain name",
        ),
        (
            {"data.parallel": [{"corpus": "GNOME", "version": "v1/..", "pair": "en-fr"}]},
            r"data\.parallel\.0\.version: 'v1/\.\.' must be a plain name",
        ),
        ({"experiment.name": "../escape"}, r"experiment\.name: '\.\./escape' must be a plain name"),
    ],
)
def test_path_names_in_the_config_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, override)


def test_duplicate_parallel_corpora_are_refused():
    gnome = {"corpus": "GNOME", "version": "v1", "pair": "en-fr"}
    with pytest.raises(ConfigError, match=r"data\.parallel: GNOME v1 fr-en is listed twice \(entries 0 and 1\)"):
        load_config(TINY, {"data.parallel": [gnome, gnome | {"pair": "fr-en"}]})
    # another release of the same corpus is a different corpus
    cfg = load_config(TINY, {"data.parallel": [gnome, gnome | {"version": "v2"}]})
    assert cfg.data.pairs == ["en-fr"]


def test_work_layout_refuses_names_outside_the_work_directory(tmp_path):
    layout = WorkLayout(tmp_path / "work")
    assert layout.mono("text", "en") == tmp_path / "work" / "text" / "mono" / "en.all"
    assert layout.para("split", "en-fr", "fr", "valid") == tmp_path / "work" / "split" / "para" / "en-fr.fr.valid"
    assert layout.binarized("train", "fr", "en-fr") == tmp_path / "work" / "bin" / "train.en-fr.fr"
    with pytest.raises(ValueError, match=r"work layout: lang: '\.\./\.\./x' is not a language code"):
        layout.mono("text", "../../x")
    with pytest.raises(ValueError, match=r"work layout: pair: '\.\./x' in pair '\.\./x-en' is not a language code"):
        layout.para("text", "../x-en", "en")
    with pytest.raises(ValueError, match="work layout: language 'de' is not a side of pair 'en-fr'"):
        layout.para("text", "en-fr", "de")
    with pytest.raises(ValueError, match=r"work layout: lang: '\.\./x' is not a language code"):
        layout.binarized("train", "../x")
    with pytest.raises(ValueError, match=r"work layout: pair: '\.\./\.\./x' is not a language pair"):
        layout.binarized("train", "en", "../../x")
    assert not (tmp_path / "x.all").exists()


def test_dump_names_refuse_a_path():
    assert wikipedia.dump_name("en", "20240101") == "enwiki-20240101-pages-articles.xml.bz2"
    with pytest.raises(ValueError, match=r"Wikipedia dump: lang: '\.\./\.\./x' is not a language code"):
        wikipedia.dump_name("../../x", "20240101")


def test_flows_refuse_a_path_as_language_or_pair_before_reading_the_config(tmp_path):
    from flows.prepare_data import prepare_language, prepare_pair

    missing = str(tmp_path / "not-read.yaml")  # validation comes first: the config is never opened
    with pytest.raises(ValueError, match=r"^prepare_language: lang: '\.\./\.\./x' is not a language code"):
        prepare_language.fn(missing, "../../x")
    with pytest.raises(ValueError, match=r"^prepare_pair: pair: '\.\./x' in pair 'en-\.\./x' is not a language code"):
        prepare_pair.fn(missing, "en-../x")
    assert list(Path(tmp_path).iterdir()) == []


def test_a_language_without_moses_rules_is_warned_about_once(caplog):
    tokenize.moses_rules_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="xlm_core.data.tokenize"):
        assert tokenize.moses_rules_fallback("sw") == "en"
        assert tokenize.moses_rules_fallback("sw") == "en"
        assert tokenize.moses_rules_fallback("fr") is None
        assert tokenize.moses_rules_fallback("zh") is None  # segmented, no Moses tokenizer
    assert [r.getMessage() for r in caplog.records] == [
        "tokenizing sw: sacremoses has no Moses nonbreaking-prefix rules for it; using English's (en)"
    ]


def test_tokenize_file_warns_for_a_language_without_moses_rules(tmp_path, caplog):
    tokenize.moses_rules_fallback.cache_clear()
    source = tmp_path / "in.txt"
    source.write_text("Habari ya asubuhi.\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="xlm_core.data.tokenize"):
        tokenize.tokenize_file(source, tmp_path / "out.txt", lang="sw", lowercase=False, workers=1)
    assert any("tokenizing sw" in r.getMessage() and "English's (en)" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "Habari ya asubuhi .\n"
