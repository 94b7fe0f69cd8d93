"""The on-disk layout of one experiment's work directory, in one place.

<workdir>/
  downloads/wikipedia/<lang>wiki-<date>-pages-articles.xml.bz2
  downloads/opus/<Corpus>-<version>-<l1>-<l2>.txt.zip
  text/mono/<lang>.all                      extracted Wikipedia, one paragraph per line
  text/para/<pair>.<lang>.all               parallel side, line-aligned
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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SPLITS", "WorkLayout"]

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class WorkLayout:
    root: Path

    # downloads
    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    # text stages: stage in {"text", "split", "tok", "bpe"}
    def mono(self, stage: str, lang: str, split: str = "all") -> Path:
        return self.root / stage / "mono" / f"{lang}.{split}"

    def para(self, stage: str, pair: str, lang: str, split: str = "all") -> Path:
        return self.root / stage / "para" / f"{pair}.{lang}.{split}"

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
