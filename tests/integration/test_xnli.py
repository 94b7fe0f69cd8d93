"""XNLI fine-tuning on small XNLI/MultiNLI fixtures in the real zip formats, served over HTTP:
a learnable rule is learned in all 15 languages, a resumed run equals an uninterrupted one, and the
exported classifier predicts in transformers what the project's model predicts. translate-train
trains on XNLI-MT's translated sets, translate-test scores XNLI-MT's English translations."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.http_server import serve
from tests.support.xnli import SERVED, build_xnli_fixture, xnli_overrides
from xlm_core.config import load_config
from xlm_core.data import nli_stages
from xlm_core.data.nli import XNLI_LANGS
from xlm_core.train.finetune import export_finetuned, finetune, load_nli_set, model_vocabulary, predict
from xlm_core.train.loop import TrainHooks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def xnli_data(tmp_path_factory):
    """Fixture zips on a 127.0.0.1 server, a tiny 15-language model export, the prepared data."""
    root = tmp_path_factory.mktemp("xnli")
    served, model_dir = build_xnli_fixture(root)
    with serve(served) as server:
        overrides = xnli_overrides(root, server.url, batch_size=8, epoch_size=480, max_epochs=3, dropout=0.1)
        cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
        sources = nli_stages.nli_sources(cfg)
        zips = [nli_stages.fetch_nli(cfg, sources[k]) for k in ("xnli_url", "multinli_url")]
    vocab = model_vocabulary(cfg, model=str(model_dir), checkpoint_dir=None)
    text = nli_stages.read_nli(cfg, *zips, vocab["langs"])
    for unit in text["units"]:
        nli_stages.prepare_nli_unit(cfg, unit, vocab)
    return cfg, overrides, vocab


def _run(cfg, vocab, restore_dir=None):
    reports = []
    keep = Path(cfg.workdir) / "kept-checkpoints"

    def report(metrics, path):  # the loop deletes its temporary checkpoint once this returns: copy it
        kept = shutil.copytree(path, keep / f"{len(list(keep.glob('*')))}-{path.name}") if path else None
        reports.append((metrics, kept))

    hooks = TrainHooks(restore_dir=restore_dir, report=report)
    result = finetune(
        cfg, hooks, model_path=vocab["model"], data_dir=str(nli_stages.nli_bin_dir(vocab)), langs=vocab["langs"]
    )
    return result, reports


def test_learns_the_rule_in_all_15_languages_and_resumes_exactly(xnli_data):
    cfg, _, vocab = xnli_data
    assert vocab["langs"] == list(XNLI_LANGS)
    result, reports = _run(cfg, vocab)
    metrics = result["metrics"]
    for split in ("valid", "test"):
        for lang in XNLI_LANGS:
            assert f"xnli_{split}_{lang}_acc" in metrics
        assert metrics[f"xnli_{split}_avg_acc"] > 60.0, metrics  # chance is 33.3 with three balanced classes
    assert [r[0]["epoch"] for r in reports] == [0.0, 1.0, 2.0]

    one = cfg.model_copy(deep=True)
    one.xnli.max_epochs = 1
    _, first = _run(one, vocab)
    resumed, _ = _run(cfg, vocab, restore_dir=first[0][1])
    assert resumed["metrics"] == metrics


def test_export_predicts_in_transformers_what_the_model_predicts(xnli_data, tmp_path):
    from transformers import XLMForSequenceClassification

    from xlm_core.export.classifier import classifier_from_checkpoint

    cfg, _, vocab = xnli_data
    _, reports = _run(cfg, vocab)
    best = max(reports, key=lambda r: r[0]["xnli_valid_avg_acc"])[1]
    exported = export_finetuned(best, tmp_path / "export")
    hf = XLMForSequenceClassification.from_pretrained(exported["export_dir"]).eval()
    assert hf.config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}
    ours, _, _, _ = classifier_from_checkpoint(best)
    data = load_nli_set(nli_stages.nli_bin_dir(vocab), "test", "fr")
    from xlm_core.train.finetune import pair_batch

    tokens, lengths, langs, _ = pair_batch(data, np.arange(len(data)), lang_id=vocab["lang2id"]["fr"], max_len=256)
    mask = torch.arange(tokens.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        theirs = hf(tokens, attention_mask=mask.long(), langs=langs).logits.argmax(-1)
    mine = predict(ours, data, lang_id=vocab["lang2id"]["fr"], max_len=256, batch_size=7)
    assert theirs.tolist() == mine.tolist()
    card = (Path(exported["export_dir"]) / "README.md").read_text(encoding="utf-8")
    assert "| Language | en | fr | es | de | el | bg | ru | tr | ar | vi | th | zh | hi | sw | ur |" in card
    assert "| Paper (XLM MLM+TLM) | 85.0 |" in card


def _prepare_translated(tmp_path_factory, mode: str):
    """The fixture zips without the one `mode` must not read, fetched over HTTP and prepared (en, fr, zh)."""
    root = tmp_path_factory.mktemp(mode)
    served, model_dir = build_xnli_fixture(root, train_pairs=300, eval_pairs=24)
    (served / SERVED[{"translate-train": "multinli", "translate-test": "xnli"}[mode]]).unlink()
    with serve(served) as server:
        overrides = xnli_overrides(
            root, server.url, mode=mode, langs=["en", "fr", "zh"], batch_size=8, epoch_size=480, max_epochs=2
        )
        cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
        zips = {key: nli_stages.fetch_nli(cfg, url) for key, url in nli_stages.nli_sources(cfg).items()}
    vocab = model_vocabulary(cfg, model=str(model_dir), checkpoint_dir=None)
    text = nli_stages.read_nli(cfg, zips["xnli_url"], zips["multinli_url"], vocab["langs"], zips["xnli_mt_url"])
    for unit in text["units"]:
        nli_stages.prepare_nli_unit(cfg, unit, vocab)
    return cfg, vocab, text


def test_translate_train_trains_on_the_xnli_mt_translations(tmp_path_factory):
    cfg, vocab, text = _prepare_translated(tmp_path_factory, "translate-train")
    assert [u for u in text["units"] if "train" in u["split"]] == [
        {"lang": lang, "split": "train_mt"} for lang in ("en", "fr", "zh")
    ]
    raw, tok = cfg.workdir / "xnli" / "text", Path(vocab["root"]) / "tok"
    # XNLI-MT text is already tokenised: lowercased only, not tokenised again.
    assert (tok / "train_mt.s1.zh").read_text() == (raw / "zh.train_mt.s1").read_text()
    assert not (raw / "en.train.s1").exists()  # MultiNLI is neither fetched nor read
    result, _ = _run(cfg, vocab)
    metrics = result["metrics"]
    assert {f"xnli_test_{lang}_acc" for lang in ("en", "fr", "zh")} <= set(metrics)
    assert metrics["xnli_valid_avg_acc"] > 60.0, metrics  # the rule, learnt from the translated sets only


def test_translate_test_scores_the_english_translations_with_the_english_id(tmp_path_factory):
    from xlm_core.train.finetune import _load_sets

    cfg, vocab, text = _prepare_translated(tmp_path_factory, "translate-test")
    assert {u["split"] for u in text["units"]} == {"train", "valid_mt", "test_mt"}
    data_dir = str(nli_stages.nli_bin_dir(vocab))
    train, evaluated = _load_sets(cfg, data_dir, vocab["langs"], vocab["lang2id"])
    assert [lang_id for _, lang_id in train.sets] == [vocab["lang2id"]["en"]]
    assert {key: lang_id for key, (_, lang_id) in evaluated.items()} == {
        (split, lang): vocab["lang2id"]["en"] for split in ("valid", "test") for lang in ("en", "fr", "zh")
    }
    fr_test = evaluated[("test", "fr")][0]
    assert fr_test.premises.prefix == Path(data_dir) / "test_mt.s1.fr"
    result, _ = _run(cfg, vocab)
    assert result["metrics"]["xnli_test_avg_acc"] > 60.0, result["metrics"]
