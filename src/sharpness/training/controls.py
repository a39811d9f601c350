"""The six training controls of the study and the paper's per-data-set hyperparameters.

A control switches on the regularisers whose effect on sharpness the paper measures: data
augmentation, weight decay (5e-4) and SAM (rho 0.05), alone or with SAM on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import DATASETS

CONTROLS = ("baseline", "baseline_sam", "aug", "aug_sam", "wd", "wd_sam")
WEIGHT_DECAY = 5e-4
SAM_RHO = 0.05


@dataclass(frozen=True)
class Control:
    name: str
    augment: bool
    sam: bool
    weight_decay: float


@dataclass(frozen=True)
class Hyperparameters:
    """SGD settings of one data set (momentum 0.9 everywhere); schedule is "constant" or "cosine"."""

    lr: float
    schedule: str
    epochs: int
    batch_size: int
    momentum: float = 0.9


def get_control(name: str) -> Control:
    """The control called `name` (one of CONTROLS)."""
    if name not in CONTROLS:
        raise ValueError(f"unknown control {name!r}; choose one of {', '.join(CONTROLS)}")
    base = name.removesuffix("_sam")
    return Control(name=name, augment=base == "aug", sam=name.endswith("_sam"),
                   weight_decay=WEIGHT_DECAY if base == "wd" else 0.0)


_PAPER = {
    # The paper's settings (its appendix and the authors' public code): batch 256, 100 epochs; CIFAR-10 constant
    # 1e-3, CIFAR-100 cosine 1e-2, Tiny ImageNet 1e-3 fine-tuning from ImageNet weights.
    "cifar10": Hyperparameters(lr=1e-3, schedule="constant", epochs=100, batch_size=256),
    "cifar100": Hyperparameters(lr=1e-2, schedule="cosine", epochs=100, batch_size=256),
    "tiny_imagenet": Hyperparameters(lr=1e-3, schedule="constant", epochs=100, batch_size=256),
    # Not in the paper: the offline set for quick CPU runs (1,437 training images).
    "digits": Hyperparameters(lr=0.05, schedule="constant", epochs=10, batch_size=64),
}
_PAPER["cifar10_folder"] = _PAPER["cifar10"]


def hyperparameters(dataset: str) -> Hyperparameters:
    """Learning rate, schedule, epochs and batch size the study uses on `dataset`."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return _PAPER[dataset]
