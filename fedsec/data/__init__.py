"""Datasets, their standard file formats, and client partitions.

>>> from fedsec.data import load_dataset, partition, label_histogram
>>> import numpy as np
>>> train, test = load_dataset("synthetic", seed=0, n_samples=200)
>>> parts = partition(train.y.numpy(), 4, "iid", rng=np.random.default_rng(0))
>>> int(label_histogram(train.y.numpy(), parts, train.num_classes).sum()) == len(train)
True
"""

from fedsec.data import mnist1d as _mnist1d  # noqa: F401  (registers "mnist1d")
from fedsec.data.datasets import DATASETS, TensorData, default_data_dir, load_dataset
from fedsec.data.partition import PARTITION_SCHEMES, label_histogram, label_skew, partition

__all__ = [
    "DATASETS",
    "PARTITION_SCHEMES",
    "TensorData",
    "default_data_dir",
    "label_histogram",
    "label_skew",
    "load_dataset",
    "partition",
]
