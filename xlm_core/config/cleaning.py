"""The `cleaning` section: which lines the cleaning stage removes from each source, before the split.

Settings are given per source and fall back, key by key, to the defaults of the source's corpus kind:

- `cleaning.wikipedia` for every Wikipedia language, then `cleaning.langs.<lang>` for one language;
- `cleaning.parallel` for every OPUS corpus, then `cleaning.corpora.<Corpus>` for one corpus (by its
  OPUS name, e.g. `OpenSubtitles`, `MultiUN`).

The kind (`wikipedia`, `subtitles`, `un`, `parallel`) is the source's unless a setting names one:
Wikipedia is `wikipedia`; OpenSubtitles corpora are `subtitles`; MultiUN, UNPC and UN are `un`; every
other OPUS corpus is `parallel`. `resolve_filters` returns the merged values, which become the stage's
cache parameters, so an edited threshold reruns cleaning and what follows, nothing before it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["KIND_DEFAULTS", "CleaningConfig", "FilterSettings", "corpus_kind", "resolve_filters"]

Kind = Literal["wikipedia", "subtitles", "un", "parallel"]

# Per corpus kind, every filter value. Words are whitespace-separated (characters for languages written
# without spaces, `xlm_core.data.clean.count_words`). max_ratio is Moses clean-corpus-n's (pairs only).
_COMMON: dict[str, Any] = {
    "min_chars": 1,
    "min_words": 1,
    "lid": True,
    "lid_threshold": 0.5,
    "lid_min_words": 5,
    "dedup": True,
    "near_dedup": False,
    "near_dedup_threshold": 0.8,
}
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # Paragraphs (and title lines, 1-3 words). A paragraph of more than 1000 words is a flattened table or list.
    "wikipedia": {**_COMMON, "max_chars": 20000, "max_words": 1000, "max_ratio": None},
    # Short, loosely aligned dialogue lines: a long subtitle line is a merge of several cues.
    "subtitles": {**_COMMON, "max_chars": 1000, "max_words": 80, "max_ratio": 9.0},
    # Formal, document-aligned sentences: a large length ratio means a misalignment.
    "un": {**_COMMON, "max_chars": 5000, "max_words": 250, "max_ratio": 4.0},
    "parallel": {**_COMMON, "max_chars": 5000, "max_words": 250, "max_ratio": 9.0},
}
_UN_CORPORA = ("MultiUN", "UNPC", "UN")


def _defaults(key: str) -> str:
    """` Null: the kind's default (wikipedia 1000, subtitles 80, ...).` for a field's description."""
    values = {kind: defaults[key] for kind, defaults in KIND_DEFAULTS.items()}
    if len(set(values.values())) == 1:
        return f" Null: {next(iter(values.values()))} (every kind)."
    return " Null: the kind's default (" + ", ".join(f"{k} {v}" for k, v in values.items()) + ")."


def corpus_kind(corpus: str | None) -> str:
    """The kind of a source: None is Wikipedia; an OPUS corpus by its name."""
    if corpus is None:
        return "wikipedia"
    if corpus.lower().startswith("opensubtitles"):
        return "subtitles"
    if corpus in _UN_CORPORA:
        return "un"
    return "parallel"


class _Settings(BaseModel):
    # The settings of `xlm_core.config.sections._Section` (kept here: sections imports nothing of this module).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class FilterSettings(_Settings):
    """Filter values of one source (or of all of one kind); null: the corpus kind's default."""

    kind: Kind | None = Field(
        default=None, description="Corpus kind whose defaults apply (null: the source's own kind)."
    )
    min_chars: int | None = Field(
        default=None, ge=1, description="Shortest line kept, in characters." + _defaults("min_chars")
    )
    max_chars: int | None = Field(
        default=None, ge=1, description="Longest line kept, in characters." + _defaults("max_chars")
    )
    min_words: int | None = Field(
        default=None, ge=1, description="Fewest words kept (pairs: on each side)." + _defaults("min_words")
    )
    max_words: int | None = Field(
        default=None, ge=1, description="Most words kept (pairs: on each side)." + _defaults("max_words")
    )
    max_ratio: float | None = Field(
        default=None,
        gt=1,
        description="Pairs: the largest word-count ratio of the two sides, as Moses clean-corpus-n."
        + _defaults("max_ratio"),
    )
    lid: bool | None = Field(
        default=None,
        description="Language identification (CLD2, py3langid's second opinion): keep lines detected as their "
        "language." + _defaults("lid"),
    )
    lid_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Least confidence in the expected language: CLD2's share of the line's text, or py3langid's "
        "probability when CLD2's is lower; a line is removed when both are below it." + _defaults("lid_threshold"),
    )
    lid_min_words: int | None = Field(
        default=None,
        ge=1,
        description="Lines with fewer words (after removing URLs, numbers and placeholders) skip the language "
        "check: detectors are unreliable on a few words." + _defaults("lid_min_words"),
    )
    dedup: bool | None = Field(
        default=None,
        description="Exact deduplication on a normalised form (NFKC, lowercase, no whitespace or punctuation), "
        "over the whole corpus before the split, so no valid/test line is in train." + _defaults("dedup"),
    )
    near_dedup: bool | None = Field(
        default=None,
        description="Near-duplicate removal within each corpus (MinHash LSH over word 3-grams; about 1 KB of memory "
        "a kept line)." + _defaults("near_dedup"),
    )
    near_dedup_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity from which a line is a near-duplicate."
        + _defaults("near_dedup_threshold"),
    )


class CleaningConfig(_Settings):
    enabled: bool = Field(
        default=False,
        description="Run the cleaning stage (length, ratio and language filters, deduplication) between "
        "extraction/reading and the split.",
    )
    wikipedia: FilterSettings = Field(
        default_factory=FilterSettings, description="Every Wikipedia language (corpus kind `wikipedia`)."
    )
    langs: dict[str, FilterSettings] = Field(
        default_factory=dict, description="Per Wikipedia language, settings over cleaning.wikipedia."
    )
    parallel: FilterSettings = Field(
        default_factory=FilterSettings, description="Every OPUS corpus (kind from its name: subtitles, un, parallel)."
    )
    corpora: dict[str, FilterSettings] = Field(
        default_factory=dict,
        description="Per OPUS corpus name (e.g. OpenSubtitles), settings over cleaning.parallel.",
    )
    workers: int = Field(default=2, ge=1, description="Processes for the language identification and hashing.")
    near_dedup_num_perm: int = Field(
        default=64, ge=16, le=512, description="MinHash permutations for near-duplicate removal."
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> CleaningConfig:
        _merge("cleaning.wikipedia", [self.wikipedia], "wikipedia")
        for lang, layer in self.langs.items():
            _merge(f"cleaning.langs.{lang}", [self.wikipedia, layer], "wikipedia")
        for name, layer in self.corpora.items():
            _merge(f"cleaning.corpora.{name}", [self.parallel, layer], corpus_kind(name))
        return self


def _merge(dotted: str, layers: list[FilterSettings], kind: str) -> dict[str, Any]:
    """The kind's defaults, then each layer's values that are set (the last layer naming a kind picks it)."""
    for layer in layers:
        kind = layer.kind or kind
    merged: dict[str, Any] = {"kind": kind, **KIND_DEFAULTS[kind]}
    for layer in layers:
        merged.update({k: v for k, v in layer.model_dump().items() if v is not None and k != "kind"})
    for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
        if merged[low] > merged[high]:
            raise ValueError(
                f"{dotted}: {low} ({merged[low]}) is above {high} ({merged[high]}) for corpus kind {kind}; "
                f"lower {dotted}.{low} or raise {dotted}.{high}"
            )
    if merged["lid"] and merged["lid_min_words"] > merged["max_words"]:
        raise ValueError(
            f"{dotted}: lid_min_words ({merged['lid_min_words']}) is above max_words ({merged['max_words']}), so "
            f"no line would get the language check; lower {dotted}.lid_min_words or set {dotted}.lid: false"
        )
    return merged


def resolve_filters(cfg: CleaningConfig, *, lang: str | None = None, corpus: str | None = None) -> dict[str, Any]:
    """Every filter value of one source: a Wikipedia language (`lang`) or an OPUS corpus (`corpus`)."""
    if corpus is not None:
        dotted = f"cleaning.corpora.{corpus}" if corpus in cfg.corpora else "cleaning.parallel"
        return _merge(dotted, [cfg.parallel, cfg.corpora.get(corpus, FilterSettings())], corpus_kind(corpus))
    dotted = f"cleaning.langs.{lang}" if lang in cfg.langs else "cleaning.wikipedia"
    return _merge(dotted, [cfg.wikipedia, cfg.langs.get(lang or "", FilterSettings())], "wikipedia")
