"""Data stages: acquisition, extraction, splits, tokenization, fastBPE, dictionary, binarization,
and the memory-mapped datasets training reads. See README.md in this folder.

Functions named like their modules (`binarize`, `download`) are not re-exported here, so that
`xlm_core.data.binarize` always names the module.
"""

from xlm_core.data.binarize import BinarizedSet, load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset, sampling_probs
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.download import DownloadError, TransientDownloadError

__all__ = [
    "BinarizedSet",
    "Dictionary",
    "DownloadError",
    "ParallelDataset",
    "StreamDataset",
    "TransientDownloadError",
    "load_binarized",
    "sampling_probs",
]
