"""The on-disk layout of one experiment's work directory, in one place.

<workdir>/
  downloads/wikipedia/<lang>wiki-<date>-pages-articles.xml.bz2
  downloads/opus/<Corpus>-<version>-<l1>-<l2>.txt.zip
  text/mono/<lang>.all                      extracted Wikipedia, one paragraph per line
  text/mono/<lang>.docs                     line count of each article of <lang>.all, one a line
  text/para/<pair>.<lang>.all               parallel side, line-aligned
  clean/mono/<lang>.{all,docs}  clean/para/<pair>.<lang>.all   cleaned text (when cleaning.enabled)
  split/mono/<lang>.<split>                 split = train | valid | test
  split/para/<pair>.<lang>.<split>
  tok/...                                   same names, tokenized (+ lowercased)
  bpe/codes  bpe/vocab  bpe/sample.txt      fastBPE codes, fastBPE vocabulary, BPE training sample
  bpe/mono/<lang>.<split>  bpe/para/<pair>.<lang>.<split>
  bin/dict.txt                              XLM dictionary (14 specials implicit, then `token count`)
  bin/<split>.<lang>.{tokens.npy,offsets.npy,stats.json}
  bin/<split>.<pair>.<lang>.{tokens.npy,offsets.npy,stats.json}
  ray/                                      Ray Train storage (checkpoints)
  mlflow.db  mlartifacts/                   embedded MLflow store
  export/                                   Hugging Face directory
  summary.json                              the pipeline's last summary (what the model learned)

Languages and pairs become file names: every method taking one checks it (`xlm_core.names`), so a
name such as `../../x` is a ValueError, never a file outside the work directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xlm_core.names import check_lang, check_pair

__all__ = ["SPLITS", "WorkLayout"]

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class WorkLayout:
    root: Path

    # downloads
    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    # text stages: stage in {"text", "clean", "split", "tok", "bpe"}
    def mono(self, stage: str, lang: str, split: str = "all") -> Path:
        check_lang(lang, "work layout: lang")
        return self.root / stage / "mono" / f"{lang}.{split}"

    def para(self, stage: str, pair: str, lang: str, split: str = "all") -> Path:
        _check_side(pair, lang)
        return self.root / stage / "para" / f"{pair}.{lang}.{split}"

    def articles(self, stage: str, lang: str) -> Path:
        """Line count of each Wikipedia article of `mono(stage, lang)`, one integer a line."""
        check_lang(lang, "work layout: lang")
        return self.root / stage / "mono" / f"{lang}.docs"

    @property
    def codes(self) -> Path:
        return self.root / "bpe" / "codes"

    @property
    def bpe_vocab(self) -> Path:
        return self.root / "bpe" / "vocab"

    @property
    def dictionary(self) -> Path:
        return self.root / "bin" / "dict.txt"

    def binarized(self, split: str, lang: str, pair: str | None = None) -> Path:
        """Prefix of a binarized set; the files are `<prefix>.tokens.npy` etc."""
        if pair:
            _check_side(pair, lang)
        else:
            check_lang(lang, "work layout: lang")
        name = f"{split}.{pair}.{lang}" if pair else f"{split}.{lang}"
        return self.root / "bin" / name

    @property
    def ray_storage(self) -> Path:
        return self.root / "ray"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def error_report(self, run_name: str) -> Path:
        """Where the driver writes the full traceback of a training run that failed for good."""
        return self.root / "logs" / f"{run_name}.error.txt"


def _check_side(pair: str, lang: str) -> None:
    if lang not in check_pair(pair, "work layout: pair"):
        raise ValueError(f"work layout: language {lang!r} is not a side of pair {pair!r}")
