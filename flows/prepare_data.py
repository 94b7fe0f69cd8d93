"""Data preparation flow: downloads, WikiExtractor, splits, tokenization, fastBPE, binarization."""

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


@flow(name="xlm-prepare-data", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def prepare_data(config: dict[str, Any], run_id: str) -> dict[str, Any]:
    plan = plan_data(config)
    sources = prepare_sources(config)

    dumps = fetch_wikipedia.map(unmapped(config), plan["mono"], unmapped(sources["wikipedia"]))
    extracted = extract_wikipedia.map(unmapped(config), plan["mono"], dumps)
    mono_splits = split_mono.map(unmapped(config), plan["mono"], wait_for=[extracted])

    para_splits = []
    for pair, indices in plan["pair_corpora"].items():
        zips = fetch_opus.map(unmapped(config), indices, unmapped(sources["opus"]))
        sides = read_parallel.submit(config, pair, zips)
        para_splits.append(split_para.submit(config, pair, wait_for=[sides]))

    tokenized = tokenize.map(unmapped(config), plan["units"], wait_for=[mono_splits, para_splits])
    codes = learn_bpe.submit(config, wait_for=[tokenized])
    bpe_files = apply_bpe.map(unmapped(config), plan["units"], wait_for=[codes])
    dictionary = build_dictionary.submit(config, wait_for=[bpe_files])
    binarized = binarize.map(unmapped(config), plan["units"], wait_for=[dictionary])

    log_stage_stats(config, run_id, "fetch", dumps.result())
    log_stage_stats(config, run_id, "extract", extracted.result())
    log_stage_stats(config, run_id, "tokenize", tokenized.result())
    log_stage_stats(config, run_id, "bpe", [codes.result(), dictionary.result()])
    log_stage_stats(config, run_id, "binarize", binarized.result())
    return {"dictionary": dictionary.result(), "binarized": binarized.result()}
