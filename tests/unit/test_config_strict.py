"""Config strictness: duplicate YAML keys, strict booleans and integers, overrides typed by their field."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from xlm_core.config import ConfigError, load_config, parse_overrides

TINY = REPO / "configs" / "tiny.yaml"


def _write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _tiny_with(tmp_path, old: str, new: str):
    text = TINY.read_text(encoding="utf-8")
    assert old in text
    return _write(tmp_path, text.replace(old, new, 1))


def test_duplicate_key_names_file_line_and_dotted_key(tmp_path):
    path = _tiny_with(tmp_path, "  max_epochs: 3\n", "  max_epochs: 3\n  log_every: 5\n  max_epochs: 7\n")
    line = path.read_text().splitlines().index("  max_epochs: 7") + 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:{line}: duplicate key train.max_epochs (first set on line {line - 2}); keep one of them"
    )


def test_duplicate_key_inside_a_flow_mapping_and_a_list_item(tmp_path):
    path = _tiny_with(tmp_path, "model: {emb_dim: 64,", "model: {emb_dim: 64, emb_dim: 32,")
    with pytest.raises(ConfigError, match=r"exp\.yaml:\d+: duplicate key model\.emb_dim "):
        load_config(path)
    path = _tiny_with(tmp_path, "{corpus: GNOME, version: v1,", "{corpus: GNOME, corpus: EUbookshop, version: v1,")
    with pytest.raises(ConfigError, match=r"duplicate key data\.parallel\.0\.corpus "):
        load_config(path)


def test_yaml_anchors_and_merge_keys_are_not_duplicates(tmp_path):
    path = _tiny_with(
        tmp_path,
        "train:\n  steps_per_epoch: 30\n",
        "base: &base {steps_per_epoch: 30}\ntrain:\n  <<: *base\n",
    )
    # `base` is not a section: the merge itself went through, validation names the stray key.
    with pytest.raises(ConfigError, match=r"base: unknown key"):
        load_config(path)


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("  max_epochs: 3\n", "  max_epochs: yes\n", "train.max_epochs: must be a whole number such as 3 (got 'yes')"),
        ("  max_epochs: 3\n", "  max_epochs: true\n", "train.max_epochs: must be a whole number such as 3 (got True)"),
        ("  max_epochs: 3\n", "  max_epochs: 2.5\n", "train.max_epochs: must be a whole number such as 3 (got 2.5)"),
        ("  max_epochs: 3\n", '  max_epochs: "3"\n', "train.max_epochs: must be a whole number such as 3 (got '3')"),
        ("  max_epochs: 3\n", "  max_epochs: 3\n  compile: 1\n", "train.compile: must be true or false (got 1)"),
        ("  max_epochs: 3\n", "  max_epochs: 3\n  compile: yes\n", "train.compile: must be true or false (got 'yes')"),
        ("  max_epochs: 3\n", "  max_epochs: 3\n  compile: on\n", "train.compile: must be true or false (got 'on')"),
    ],
)
def test_yaml_bools_and_ints_are_strict(tmp_path, old, new, message):
    with pytest.raises(ConfigError) as caught:
        load_config(_tiny_with(tmp_path, old, new))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_yaml_12_scalars(tmp_path):
    cfg = load_config(
        _tiny_with(tmp_path, "optim: {name: adam_inverse_sqrt, lr: 0.001,", "optim: {name: adam, lr: 1e-4, eps: 1E-9,")
    )
    assert cfg.optim.lr == 1e-4 and cfg.optim.eps == 1e-9  # PyYAML's YAML 1.1 reads `1e-4` as a string
    cfg = load_config(_tiny_with(tmp_path, "  max_epochs: 3\n", "  max_epochs: 3\n  compile: True\n"))
    assert cfg.train.compile is True
    # Norwegian is `no`: a string under YAML 1.2 rules (YAML 1.1 made it False).
    cfg = load_config(_tiny_with(tmp_path, "tokenization: {", "tokenization: {per_lang_lowercase: {en: false}, "))
    assert cfg.tokenization.per_lang_lowercase == {"en": False}
    path = _tiny_with(tmp_path, "langs: [en, fr]", "langs: [en, fr, no]")
    assert load_config(path).data.langs == ["en", "fr", "no"]
    # whole numbers are still fine for float fields
    assert load_config(TINY).scaling.cpus_per_worker == 1.0


def test_set_values_are_read_by_the_field_type():
    overrides = parse_overrides(
        [
            "data.wikipedia.dump_date=20240301",
            "train.max_epochs=3",
            "train.compile=true",
            "optim.lr=3e-4",
            "objectives.mlm_steps=[en, fr]",
            "tokenization.per_lang_lowercase={fr: false}",
            "tokenization.per_lang_lowercase.en=true",
            "data.parallel=[{corpus: GNOME, version: v1, pair: en-fr}]",
            "scaling.ray_address=null",
            "experiment.name=20240301",
            "tracking.registered_model=",
        ]
    )
    assert overrides == {
        "data.wikipedia.dump_date": "20240301",
        "train.max_epochs": 3,
        "train.compile": True,
        "optim.lr": 3e-4,
        "objectives.mlm_steps": ["en", "fr"],
        "tokenization.per_lang_lowercase": {"fr": False},
        "tokenization.per_lang_lowercase.en": True,
        "data.parallel": [{"corpus": "GNOME", "version": "v1", "pair": "en-fr"}],
        "scaling.ray_address": None,
        "experiment.name": "20240301",
        "tracking.registered_model": "",  # empty, not null: registration off, not the default name
    }
    cfg = load_config(TINY, ["data.wikipedia.dump_date=20240301", "train.compile=true", "train.max_epochs=3"])
    assert (cfg.data.wikipedia.dump_date, cfg.train.compile, cfg.train.max_epochs) == ("20240301", True, 3)


def test_flow_overrides_may_be_typed_or_text():
    """A deployment's `overrides` parameter: JSON values as they are, text values read by the field."""
    cfg = load_config(
        TINY,
        {
            "train.max_epochs": "4",
            "train.compile": "false",
            "data.wikipedia.dump_date": "20240301",
            "model.n_layers": 3,
        },
    )
    assert (cfg.train.max_epochs, cfg.train.compile, cfg.data.wikipedia.dump_date) == (4, False, "20240301")
    assert cfg.model.n_layers == 3
    with pytest.raises(ConfigError, match=r"train\.compile: must be true or false \(got 1\) \(set by an override\)"):
        load_config(TINY, {"train.compile": 1})
    with pytest.raises(ConfigError, match=r"train\.max_epochs: must be a whole number such as 3 \(got 'yes'\)"):
        load_config(TINY, ["train.max_epochs=yes"])


@pytest.mark.parametrize(
    "item,message",
    [
        ("=3", "--set '=3': no key before '='; write it section.key=value"),
        ("model.emb_dim", "--set 'model.emb_dim': no '=' in it; write it section.key=value"),
        ("", "--set '': empty override; write it section.key=value"),
        ("model..emb_dim=3", "override key 'model..emb_dim' is malformed; write it section.key=value"),
        (
            "model.emb_dm=512",
            "unknown config key model.emb_dm (did you mean model.emb_dim?); see the config reference in README.md",
        ),
        ("trian.max_epochs=3", "unknown config key trian.max_epochs (did you mean train.max_epochs?)"),
        ("model.emb_dim.x=1", "override 'model.emb_dim.x': 'model.emb_dim' is not a section"),
    ],
)
def test_malformed_and_misspelt_set_items_are_named(item, message):
    with pytest.raises(ConfigError) as caught:
        parse_overrides([item])
    assert str(caught.value).startswith(message)


def test_misspelt_key_in_a_flow_override_and_in_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key xnli\.batch_sze \(did you mean xnli\.batch_size\?\)"):
        load_config(TINY, {"xnli.batch_sze": 4})
    with pytest.raises(ConfigError, match=r"model\.emb_dimm: unknown key \(did you mean model\.emb_dim\?\)"):
        load_config(_tiny_with(tmp_path, "model: {emb_dim: 64", "model: {emb_dimm: 64"))


def test_malformed_yaml_and_missing_file_are_one_line(tmp_path):
    path = _tiny_with(tmp_path, "model: {emb_dim: 64,", "model: {emb_dim: 64,,")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:") and "not valid YAML" in str(caught.value)
    assert "fix the syntax" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml .*check the path or the preset name"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(_write(tmp_path, "- just\n- a list\n"))
