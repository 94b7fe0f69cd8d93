"""Data preparation: a flow per language (Wikipedia) and per pair (OPUS), then the joint stages:
tokenization, fastBPE, vocabulary and binarization."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

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
from tasks.tracking import log_stage_stats


@flow(name="xlm-prepare-language", flow_run_name="prepare-{lang}", log_prints=True)
def prepare_language(config: dict[str, Any], lang: str, base_url: str) -> dict[str, Any]:
    dump = fetch_wikipedia(config, lang, base_url)
    extracted = extract_wikipedia(config, lang, dump)
    return {"dump": dump, "extract": extracted, "split": split_mono(config, lang, wait_for=[extracted])}


@flow(
    name="xlm-prepare-pair",
    flow_run_name="prepare-{pair}",
    log_prints=True,
    task_runner=ThreadPoolTaskRunner(max_workers=4),
)
def prepare_pair(config: dict[str, Any], pair: str, corpus_indices: list[int], base_url: str) -> dict[str, Any]:
    zips = fetch_opus.map(unmapped(config), corpus_indices, unmapped(base_url))
    sides = read_parallel(config, pair, zips)
    return {"read": sides, "split": split_para(config, pair, wait_for=[sides])}


@flow(name="xlm-prepare-data", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def prepare_data(config: dict[str, Any], run_id: str) -> dict[str, Any]:
    plan = plan_data(config)
    sources = prepare_sources(config)
    languages = [prepare_language(config, lang, sources["wikipedia"]) for lang in plan["mono"]]
    pairs = [prepare_pair(config, pair, indices, sources["opus"]) for pair, indices in plan["pair_corpora"].items()]

    tokenized = tokenize.map(unmapped(config), plan["units"])
    codes = learn_bpe.submit(config, wait_for=[tokenized])
    bpe_files = apply_bpe.map(unmapped(config), plan["units"], wait_for=[codes])
    dictionary = build_dictionary.submit(config, wait_for=[bpe_files])
    binarized = binarize.map(unmapped(config), plan["units"], wait_for=[dictionary])

    log_stage_stats(config, run_id, "fetch", [language["dump"] for language in languages])
    log_stage_stats(config, run_id, "extract", [language["extract"] for language in languages])
    log_stage_stats(config, run_id, "parallel", [pair["read"] for pair in pairs])
    log_stage_stats(config, run_id, "tokenize", tokenized.result())
    log_stage_stats(config, run_id, "bpe", [codes.result(), dictionary.result()])
    log_stage_stats(config, run_id, "binarize", binarized.result())
    return {"dictionary": dictionary.result(), "binarized": binarized.result()}
