"""Names that become file and directory names: language codes, pairs, corpus names, experiment names.

Each is checked before it reaches a path, so a name from a config file or a deployment parameter
(`../../x`, `en/fr`, `..`) can never address a file outside the work directory.

A language code has the ISO 639 shape, 2 or 3 lowercase letters (`en`, `ast`), or is one of the
few Wikipedia editions named otherwise (`simple`, `zh_yue`, ...): the languages of the pipeline are
Wikipedia dump names, and these appear in the presets. A hyphen is never part of a code: it joins
the two languages of a pair (`en-fr`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "WIKIPEDIA_EDITIONS",
    "CorpusName",
    "ExperimentName",
    "LangList",
    "LangPair",
    "StepList",
    "check_corpus_part",
    "check_experiment_name",
    "check_lang",
    "check_pair",
    "check_step",
]

_ISO_639 = re.compile(r"[a-z]{2,3}")

# Wikipedia editions whose dump name is not an ISO 639 code: `<name>wiki-<date>-pages-articles...`.
WIKIPEDIA_EDITIONS = frozenset(
    {
        "simple",
        "zh_classical",
        "zh_min_nan",
        "zh_yue",
        "bat_smg",
        "be_x_old",
        "cbk_zam",
        "fiu_vro",
        "map_bms",
        "nds_nl",
        "roa_rup",
        "roa_tara",
    }
)

# OPUS corpus names and releases (GNOME, ELRC-EMEA, ELRC_2922, v1, v2018, v1.0): one path component.
_CORPUS_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _at(where: str | None) -> str:
    return f"{where}: " if where else ""


_NOT_A_LANG = (
    "is not a language code; use 2-3 lowercase letters (ISO 639, e.g. en, ast) or a Wikipedia edition ("
    + ", ".join(sorted(WIKIPEDIA_EDITIONS))
    + ")"
)


def _is_lang(lang: object) -> bool:
    return isinstance(lang, str) and (_ISO_639.fullmatch(lang) is not None or lang in WIKIPEDIA_EDITIONS)


def check_lang(lang: object, where: str | None = None) -> str:
    """`lang` if it is a language code, else ValueError naming `where` (a dotted key or a parameter)."""
    if _is_lang(lang):
        return lang  # type: ignore[return-value]
    raise ValueError(f"{_at(where)}{lang!r} {_NOT_A_LANG}")


def check_pair(pair: object, where: str | None = None) -> tuple[str, str]:
    """The two languages of `l1-l2` (any order, two different codes), else ValueError naming `where`."""
    if not isinstance(pair, str) or pair.count("-") != 1:
        raise ValueError(f"{_at(where)}{pair!r} is not a language pair; write it l1-l2, e.g. en-fr")
    first, second = pair.split("-")
    for side in (first, second):
        if not _is_lang(side):
            raise ValueError(f"{_at(where)}{side!r} in pair {pair!r} {_NOT_A_LANG}")
    if first == second:
        raise ValueError(f"{_at(where)}pair {pair!r} names one language twice; a pair needs two languages")
    return first, second


def check_step(step: object, where: str | None = None) -> str:
    """An objectives step: a language (`en`, a CLM/MLM step) or a pair (`en-fr`, a TLM/CLM pair step)."""
    if isinstance(step, str) and "-" in step:
        check_pair(step, where)
        return step
    return check_lang(step, where)


def check_corpus_part(value: object, where: str | None = None) -> str:
    """An OPUS corpus name or release: letters, digits, `.`, `_`, `-`, starting with a letter or digit, no `..`."""
    if isinstance(value, str) and _CORPUS_PART.fullmatch(value) and ".." not in value:
        return value
    raise ValueError(
        f"{_at(where)}{value!r} must be a plain name (letters, digits, '.', '_', '-'; no '/' or '..'), "
        "as OPUS spells it, e.g. MultiUN or v1"
    )


def check_experiment_name(name: object, where: str | None = None) -> str:
    """An experiment name: one directory name (it is the work directory's leaf and the Ray run's prefix)."""
    if isinstance(name, str) and _EXPERIMENT.fullmatch(name) and ".." not in name:
        return name
    raise ValueError(
        f"{_at(where)}{name!r} must be a plain name (letters, digits, '.', '_', '-'; no '/' or '..'), e.g. xnli15-base"
    )


def _pair_name(pair: str) -> str:
    check_pair(pair)
    return pair


def _each(check: object) -> AfterValidator:
    def validate(values: list[str]) -> list[str]:
        for value in values:
            check(value)  # type: ignore[operator]
        return values

    return AfterValidator(validate)


# Config field types (pydantic): the field's own validation error carries the dotted key.
LangList = Annotated[list[str], _each(check_lang)]
StepList = Annotated[list[str], _each(check_step)]
LangPair = Annotated[str, AfterValidator(_pair_name)]
CorpusName = Annotated[str, AfterValidator(check_corpus_part)]
ExperimentName = Annotated[str, AfterValidator(check_experiment_name)]
