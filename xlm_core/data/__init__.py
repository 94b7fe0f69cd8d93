"""Data stages: acquisition, extraction, splits, tokenization, fastBPE, dictionary, binarization,
and the memory-mapped datasets training reads. See README.md in this folder."""

from xlm_core.data.binarize import BinarizedSet, binarize, load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset, sampling_probs
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.download import DownloadError, TransientDownloadError, download

__all__ = [
    "BinarizedSet",
    "Dictionary",
    "DownloadError",
    "ParallelDataset",
    "StreamDataset",
    "TransientDownloadError",
    "binarize",
    "download",
    "load_binarized",
    "sampling_probs",
]
