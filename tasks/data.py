"""Prefect tasks for data preparation: one `xlm_core.data.stages` call each.

Downloads retry transient network failures only (a too-slow transfer among them); local steps never
retry. Each download is bounded by `data.download.deadline_s` inside the library; the tasks' Prefect
`timeout_seconds` is a backstop past the default deadline (`with_download_timeout` applies a config's
own). Deterministic stages are cached on their content address (`xlm_core.stage_cache`): config values,
input digests, code.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prefect import task

from tasks._common import cached_stage, retry_transient, typed
from xlm_core.config.transfer import DownloadConfig
from xlm_core.data import stages

__all__ = [
    "apply_bpe",
    "binarize",
    "build_dictionary",
    "clean_mono",
    "clean_para",
    "extract_wikipedia",
    "fetch_opus",
    "fetch_wikipedia",
    "filter_pairs",
    "learn_bpe",
    "plan_data",
    "prepare_sources",
    "read_parallel",
    "split_mono",
    "split_para",
    "tokenize",
    "with_download_timeout",
]

T = TypeVar("T")

_NET = {
    "retries": 3,
    "retry_delay_seconds": [10, 60, 300],
    "retry_condition_fn": retry_transient,
    "timeout_seconds": DownloadConfig().task_timeout_s,  # the default deadline plus slack, per attempt
}


def with_download_timeout(fetch_task: T, config: dict[str, Any]) -> T:
    """`fetch_task` (a download task) with its Prefect timeout derived from `config`'s `data.download`
    (deadline plus slack), for configs whose deadline differs from the default."""
    return fetch_task.with_options(timeout_seconds=typed(config).data.download.task_timeout_s)  # type: ignore[attr-defined]


def _stage(stage: str, *arg_names: str) -> dict[str, Any]:
    return cached_stage(stages.cache_key, stage, *arg_names)


@task(name="prepare-sources", **_stage("demo-mirror"))
def prepare_sources(config: dict[str, Any]) -> dict[str, str]:
    return stages.prepare_sources(typed(config))


def _source_key(source: str, item_param: str):  # noqa: ANN202 - a Prefect cache_key_fn
    def key(context, parameters) -> str | None:  # noqa: ANN001
        cfg = typed(parameters["config"])
        return stages.source_cache_key(cfg, source, parameters[item_param], parameters["base_url"])

    return key


# Downloads are cached across runs on what they fetch (URL + pinned date/version) and where (the work
# directory's id), while the file they fetched is there unchanged (its download stage's record): a dump
# deleted to free disk is fetched again. The cached result is the small record of the verified file.
_CACHED = {"persist_result": True}


@task(
    name="fetch-wikipedia",
    task_run_name="fetch-wikipedia-{lang}",
    cache_key_fn=_source_key("wikipedia", "lang"),
    **_CACHED,
    **_NET,
)
def fetch_wikipedia(config: dict[str, Any], lang: str, base_url: str) -> dict[str, Any]:
    return stages.fetch_wikipedia(typed(config), lang, base_url)


@task(name="extract-wikipedia", task_run_name="wikiextractor-{lang}", **_stage("extract", "lang", "dump"))
def extract_wikipedia(config: dict[str, Any], lang: str, dump: dict[str, Any]) -> dict[str, Any]:
    return stages.extract_wikipedia(typed(config), lang, dump)


@task(
    name="fetch-opus", task_run_name="fetch-opus-{index}", cache_key_fn=_source_key("opus", "index"), **_CACHED, **_NET
)
def fetch_opus(config: dict[str, Any], index: int, base_url: str) -> str:
    return stages.fetch_opus(typed(config), index, base_url)


@task(name="read-parallel", task_run_name="read-parallel-{pair}", **_stage("read-parallel", "pair", "zip_paths"))
def read_parallel(config: dict[str, Any], pair: str, zip_paths: list[str]) -> dict[str, Any]:
    return stages.read_parallel(typed(config), pair, zip_paths)


@task(name="clean-mono", task_run_name="clean-{lang}", **_stage("clean", "lang"))
def clean_mono(config: dict[str, Any], lang: str) -> dict[str, Any]:
    return stages.clean_mono(typed(config), lang)


@task(name="clean-para", task_run_name="clean-{pair}", **_stage("clean", "pair", "read"))
def clean_para(config: dict[str, Any], pair: str, read: dict[str, Any]) -> dict[str, Any]:
    return stages.clean_para(typed(config), pair, read)


@task(name="split-mono", task_run_name="split-{lang}", **_stage("split", "lang"))
def split_mono(config: dict[str, Any], lang: str) -> dict[str, Any]:
    return stages.split_mono(typed(config), lang)


@task(name="split-para", task_run_name="split-{pair}", **_stage("split", "pair"))
def split_para(config: dict[str, Any], pair: str) -> dict[str, Any]:
    return stages.split_para(typed(config), pair)


def plan_data(config: dict[str, Any]) -> dict[str, Any]:
    """Which units the joint stages process: derived from the config alone, so not a task (its result
    would be drawn as an input of every stage; see `tasks.config`)."""
    return stages.plan_data(typed(config))


@task(name="tokenize", task_run_name="tokenize-{unit[label]}", **_stage("tokenize", "unit"))
def tokenize(config: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
    return stages.tokenize_unit(typed(config), unit)


@task(name="learn-bpe", **_stage("learn-bpe"))
def learn_bpe(config: dict[str, Any]) -> dict[str, Any]:
    return stages.learn_bpe_codes(typed(config))


@task(name="apply-bpe", task_run_name="apply-bpe-{unit[label]}", **_stage("apply-bpe", "unit"))
def apply_bpe(config: dict[str, Any], unit: dict[str, Any]) -> str:
    return stages.apply_bpe_unit(typed(config), unit)


@task(name="build-dictionary", **_stage("dictionary"))
def build_dictionary(config: dict[str, Any]) -> dict[str, Any]:
    return stages.build_dictionary(typed(config))


@task(name="binarize", task_run_name="binarize-{unit[label]}", **_stage("binarize", "unit"))
def binarize(config: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
    return stages.binarize_unit(typed(config), unit)


@task(name="filter-pairs", task_run_name="filter-pairs-{unit[label]}", **_stage("filter-pairs", "unit"))
def filter_pairs(config: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
    return stages.filter_pairs_unit(typed(config), unit)
