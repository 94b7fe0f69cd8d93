"""Data preparation: a flow per language (Wikipedia) and per pair (OPUS), then the joint stages:
tokenization, fastBPE, vocabulary and binarization.

Every flow here can be deployed on its own (`prefect.yaml`): it takes the config path and overrides
and resolves the config itself. Called from the master flow, it logs into the pipeline's MLflow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.config import resolve_config
from tasks.data import (
    apply_bpe,
    binarize,
    build_dictionary,
    extract_wikipedia,
    fetch_opus,
    fetch_wikipedia,
    learn_bpe,
    plan_data,
    prepare_sources,
    read_parallel,
    split_mono,
    split_para,
    tokenize,
)
from tasks.runners import data_task_runner
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
    """Download, verify, extract and split one language's Wikipedia."""
    config = resolve_config(config_path, overrides)
    url = base_url or prepare_sources(config)["wikipedia"]
    dump = fetch_wikipedia(config, lang, url)
    extracted = extract_wikipedia(config, lang, dump)
    return {"dump": dump, "extract": extracted, "split": split_mono(config, lang, wait_for=[extracted])}


@flow(
    name="xlm-prepare-pair",
    flow_run_name="prepare-{pair}",
    log_prints=True,
    task_runner=ThreadPoolTaskRunner(max_workers=4),
)
def prepare_pair(
    config_path: str, pair: str, overrides: dict[str, Any] | None = None, base_url: str | None = None
) -> dict[str, Any]:
    """Download one pair's OPUS corpora, read them into aligned text files and split them."""
    config = resolve_config(config_path, overrides)
    plan = plan_data(config)
    url = base_url or prepare_sources(config)["opus"]
    zips = fetch_opus.map(unmapped(config), plan["pair_corpora"][pair], unmapped(url))
    sides = read_parallel(config, pair, zips)
    return {"read": sides, "split": split_para(config, pair, wait_for=[sides])}


@flow(name="xlm-data-stages", flow_run_name="tokenize-bpe-binarize")
def data_stages(config: dict[str, Any], run_id: str, texts: list[Any]) -> dict[str, Any]:
    """The joint stages over every text unit, on the configured task runner (threads or Ray)."""
    plan = plan_data(config)
    tokenized = tokenize.map(unmapped(config), plan["units"], wait_for=[texts])
    codes = learn_bpe.submit(config, wait_for=[tokenized])
    bpe_files = apply_bpe.map(unmapped(config), plan["units"], wait_for=[codes])
    dictionary = build_dictionary.submit(config, wait_for=[bpe_files])
    binarized = binarize.map(unmapped(config), plan["units"], wait_for=[dictionary])
    log_stage_stats(config, run_id, "tokenize", tokenized.result())
    log_stage_stats(config, run_id, "bpe", [codes.result(), dictionary.result()])
    log_stage_stats(config, run_id, "binarize", binarized.result())
    return {"codes": codes.result(), "dictionary": dictionary.result(), "binarized": binarized.result()}


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
    languages = [prepare_language(config_path, lang, overrides, sources["wikipedia"]) for lang in plan["mono"]]
    pairs = [prepare_pair(config_path, pair, overrides, sources["opus"]) for pair in plan["pair_corpora"]]
    log_stage_stats(config, run_id, "fetch", [language["dump"] for language in languages])
    log_stage_stats(config, run_id, "extract", [language["extract"] for language in languages])
    log_stage_stats(config, run_id, "parallel", [pair["read"] for pair in pairs])

    stages = data_stages.with_options(task_runner=data_task_runner(config))
    prepared = stages(config, run_id, [language["split"] for language in languages] + [p["split"] for p in pairs])
    publish_data_report(config, run_id, languages, pairs, prepared)
    if own_run:
        finish_pipeline_run(config, run_id)
    return prepared
