"""Data preparation: a flow per language (Wikipedia) and per pair (OPUS), then the joint stages:
tokenization, fastBPE, vocabulary and binarization.

The language and pair flows run concurrently, `scaling.data_concurrency` at a time: each is started by a
task (`prepare-language-<lang>`, `prepare-pair-<pair>`) of the `xlm-prepare-corpora` flow, whose task
runner is threads or Ray (`scaling.data_task_runner`), and shows in the UI as its own flow run.

Every flow here can be deployed on its own (`prefect.yaml`): it takes the config path and overrides
and resolves the config itself. Called from the master flow, it logs into the pipeline's MLflow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.config import check_lang, check_pair, resolve_config
from tasks.data import (
    apply_bpe,
    binarize,
    build_dictionary,
    clean_mono,
    clean_para,
    extract_wikipedia,
    fetch_opus,
    fetch_wikipedia,
    filter_pairs,
    learn_bpe,
    plan_data,
    prepare_sources,
    read_parallel,
    split_mono,
    split_para,
    tokenize,
)
from tasks.runners import data_task_runner, source_task_runner
from tasks.tracking import (
    finish_pipeline_run,
    log_stage_stats,
    mark_pipeline_run_failed,
    publish_data_report,
    start_pipeline_run,
)

_HOOKS = {"on_failure": [mark_pipeline_run_failed], "on_crashed": [mark_pipeline_run_failed]}


@flow(name="xlm-prepare-language", flow_run_name="prepare-{lang}", log_prints=True)
def prepare_language(
    config_path: str, lang: str, overrides: dict[str, Any] | None = None, base_url: str | None = None
) -> dict[str, Any]:
    """Download, verify, extract, clean and split one language's Wikipedia."""
    check_lang(lang, "prepare_language: lang")
    config = resolve_config(config_path, overrides)
    url = base_url or prepare_sources(config)["wikipedia"]
    dump = fetch_wikipedia(config, lang, url)
    extracted = extract_wikipedia(config, lang, dump)
    cleaned = clean_mono(config, lang, wait_for=[extracted])
    split = split_mono(config, lang, wait_for=[cleaned])
    return {"dump": dump, "extract": extracted, "clean": cleaned, "split": split}


@flow(
    name="xlm-prepare-pair",
    flow_run_name="prepare-{pair}",
    log_prints=True,
    task_runner=ThreadPoolTaskRunner(max_workers=4),
)
def prepare_pair(
    config_path: str, pair: str, overrides: dict[str, Any] | None = None, base_url: str | None = None
) -> dict[str, Any]:
    """Download one pair's OPUS corpora, read them into aligned text files, clean and split them."""
    check_pair(pair, "prepare_pair: pair")
    config = resolve_config(config_path, overrides)
    plan = plan_data(config)
    url = base_url or prepare_sources(config)["opus"]
    zips = fetch_opus.map(unmapped(config), plan["pair_corpora"][pair], unmapped(url))
    sides = read_parallel(config, pair, zips)
    cleaned = clean_para(config, pair, sides)
    return {"read": sides, "clean": cleaned, "split": split_para(config, pair, wait_for=[cleaned])}


@task(name="prepare-language", task_run_name="prepare-language-{lang}", cache_policy=NO_CACHE)
def language_unit(config_path: str, lang: str, overrides: dict[str, Any] | None, base_url: str) -> dict[str, Any]:
    """The `xlm-prepare-language` flow run of one language, started from a task so that languages run at once."""
    return prepare_language(config_path, lang, overrides, base_url)


@task(name="prepare-pair", task_run_name="prepare-pair-{pair}", cache_policy=NO_CACHE)
def pair_unit(config_path: str, pair: str, overrides: dict[str, Any] | None, base_url: str) -> dict[str, Any]:
    """The `xlm-prepare-pair` flow run of one pair, started from a task so that pairs run at once."""
    return prepare_pair(config_path, pair, overrides, base_url)


@flow(name="xlm-prepare-corpora", flow_run_name="prepare-corpora")
def prepare_corpora(
    config_path: str, overrides: dict[str, Any] | None, sources: dict[str, str], langs: list[str], pairs: list[str]
) -> dict[str, Any]:
    """Every language and pair flow, `scaling.data_concurrency` at a time (`tasks.runners.source_task_runner`)."""
    languages = language_unit.map(unmapped(config_path), langs, unmapped(overrides), unmapped(sources["wikipedia"]))
    corpora = pair_unit.map(unmapped(config_path), pairs, unmapped(overrides), unmapped(sources["opus"]))
    return {"languages": languages.result(), "pairs": corpora.result()}


@flow(name="xlm-data-stages", flow_run_name="tokenize-bpe-binarize")
def data_stages(config: dict[str, Any], run_id: str, texts: list[Any]) -> dict[str, Any]:
    """The joint stages over every text unit, on the configured task runner (threads or Ray)."""
    plan = plan_data(config)
    tokenized = tokenize.map(unmapped(config), plan["units"], wait_for=[texts])
    codes = learn_bpe.submit(config, wait_for=[tokenized])
    bpe_files = apply_bpe.map(unmapped(config), plan["units"], wait_for=[codes])
    dictionary = build_dictionary.submit(config, wait_for=[bpe_files])
    binarized = binarize.map(unmapped(config), plan["units"], wait_for=[dictionary])
    filtered = filter_pairs.map(unmapped(config), plan["pair_units"], wait_for=[binarized])
    log_stage_stats(config, run_id, "tokenize", tokenized.result())
    log_stage_stats(config, run_id, "bpe", [codes.result(), dictionary.result()])
    log_stage_stats(config, run_id, "binarize", binarized.result())
    log_stage_stats(config, run_id, "filter-pairs", filtered.result())
    return {
        "codes": codes.result(),
        "dictionary": dictionary.result(),
        "binarized": binarized.result(),
        "filtered": filtered.result(),
    }


@flow(name="xlm-prepare-data", log_prints=True, **_HOOKS)
def prepare_data(
    config_path: str, overrides: dict[str, Any] | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Every data stage; a standalone run opens (and closes) its own MLflow run."""
    config = resolve_config(config_path, overrides)
    own_run = run_id is None
    run_id = run_id or start_pipeline_run(config, "prepare-data")
    plan = plan_data(config)
    sources = prepare_sources(config)
    corpora = prepare_corpora.with_options(task_runner=source_task_runner(config))
    prepared_sources = corpora(config_path, overrides, sources, plan["mono"], plan["pairs"])
    languages, pairs = prepared_sources["languages"], prepared_sources["pairs"]
    log_stage_stats(config, run_id, "fetch", [language["dump"] for language in languages])
    log_stage_stats(config, run_id, "extract", [language["extract"] for language in languages])
    log_stage_stats(config, run_id, "parallel", [pair["read"] for pair in pairs])
    log_stage_stats(config, run_id, "clean", [item["clean"] for item in languages + pairs])

    stages = data_stages.with_options(task_runner=data_task_runner(config))
    prepared = stages(config, run_id, [language["split"] for language in languages] + [p["split"] for p in pairs])
    publish_data_report(config, run_id, languages, pairs, prepared)
    if own_run:
        finish_pipeline_run(config, run_id)
    return prepared
