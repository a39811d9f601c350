"""What the paper asks of a trained network besides sharpness: accuracy, calibration, consistency, robustness.

`evaluate_run(run_dir)` computes any of `MEASURES` for one finished training run and writes them to
`metrics.json` beside its `summary.json` (atomically, merging with what is already there, so measures
can be added later). Units follow the paper's tables: accuracies and ECE as fractions, the
generalisation gap and corruption accuracy in percent.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchmetrics.classification import MulticlassCalibrationError

from ..core import runs
from ..core.paths import DATA_DIR
from ..core.cli_values import check_count, positive_int
from ..core.progress import log_line, tqdm
from ..core.provenance import code_version
from ..training.controls import get_control
from ..training.data import EVALUATION_BATCH_SIZE
from ..training.data import batches as data_batches
from ..training.models import count_weight_layers
from ..training.train import derived_generator, load_run, measurement_images, resolve_device
from . import corruptions as corruption_ops
from . import measures as sharpness_measures

Tensor = torch.Tensor

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "test_predictions.pt"
MEASURES = (
    "test_accuracy", "train_accuracy", "generalisation_gap", "test_ece", "fisher_rao_norm",
    "fisher_rao_norm_exact", "relative_flatness", "relative_flatness_paper", "sam_sharpness",
    "hessian_top_eigenvalue", "hessian_trace", "corruption_accuracy",
)  # fmt: skip
DEFAULT_MEASURES = (
    "test_accuracy", "train_accuracy", "generalisation_gap", "test_ece", "fisher_rao_norm",
    "relative_flatness", "relative_flatness_paper", "sam_sharpness", "corruption_accuracy",
)  # fmt: skip
UNITS = {
    "test_accuracy": "fraction", "train_accuracy": "fraction", "test_ece": "fraction",
    "generalisation_gap": "percentage points (train - test accuracy)", "corruption_accuracy": "percent",
}  # fmt: skip
CIFAR_C_FOLDERS = {"cifar10": "CIFAR-10-C", "cifar10_folder": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}


# ----------------------------------------------------------------------------------------------
# Plain metrics on predictions
# ----------------------------------------------------------------------------------------------


def predict(model: nn.Module, batches, progress: bool = True, desc: str = "predict") -> tuple[Tensor, Tensor]:
    """Logits and labels over `batches` in eval mode, gathered on the CPU."""
    logits, labels = [], []
    with sharpness_measures.evaluation_mode(model), torch.no_grad():
        for x, y in sharpness_measures.passes(batches, model, desc, progress):
            logits.append(model(x).float().cpu())
            labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def _top1(predictions: Tensor) -> Tensor:
    """Class indices from either class indices (N,) or scores (N, C)."""
    return predictions.argmax(dim=1) if predictions.dim() == 2 else predictions


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (fraction) from class indices, logits or probabilities."""
    return float((_top1(predictions) == labels).float().mean())


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """ECE with 15 equal-width confidence bins and the L1 norm (torchmetrics), as the authors measured it."""
    if probs.dim() != 2:
        raise ValueError(f"probs must be N x C softmax probabilities, got shape {tuple(probs.shape)}")
    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=n_bins, norm="l1")
    return float(metric(probs.float().cpu(), labels.cpu()))


def prediction_disagreement(predictions: Sequence[Tensor]) -> float:
    """1 - top-1 agreement, averaged over all pairs of runs (e.g. the seeds of one control)."""
    if len(predictions) < 2:
        raise ValueError(f"disagreement needs predictions of at least 2 runs, got {len(predictions)}")
    tops = [_top1(p) for p in predictions]
    if len({len(t) for t in tops}) != 1:
        raise ValueError(f"all runs must predict the same test set; got lengths {[len(t) for t in tops]}")
    pairs = list(itertools.combinations(tops, 2))
    return sum(float((a != b).float().mean()) for a, b in pairs) / len(pairs)


def disagreement_between_runs(run_dirs: Sequence[str | Path]) -> float:
    """Prediction disagreement of finished, evaluated runs (reads their saved test predictions)."""
    predictions = []
    for run_dir in run_dirs:
        path = Path(run_dir) / PREDICTIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run evaluate_run({str(run_dir)!r}) first")
        predictions.append(torch.load(path, weights_only=True))
    return prediction_disagreement(predictions)


# ----------------------------------------------------------------------------------------------
# Corruption accuracy
# ----------------------------------------------------------------------------------------------


def cifar_c_files(folder: str | Path | None, names: Sequence[str]) -> Path | None:
    """`folder` if it holds labels.npy and every `<name>.npy`; None if absent; an error if incomplete."""
    if folder is None or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    missing = [f"{name}.npy" for name in (*names, "labels") if not (folder / f"{name}.npy").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} looks like CIFAR-C but lacks {', '.join(missing)}")
    return folder


def _accuracy_on(model, images_uint8: Tensor, labels: Tensor, data) -> float:
    """Percent of `images_uint8` classified as `labels`, in batches of EVALUATION_BATCH_SIZE laid out as the model
    is (the test set's path: on a CPU x0.58 the time of the 500-image contiguous batches before, the same counts)."""
    logits, labels = predict(model, lambda: data_batches(images_uint8, labels, EVALUATION_BATCH_SIZE, data=data), progress=False)
    return 100.0 * int((logits.argmax(dim=1) == labels).sum()) / len(labels)


def corruption_accuracy(
    model: nn.Module,
    data,
    corruptions: Sequence[str] = corruption_ops.STANDARD_CORRUPTIONS,
    severities: Sequence[int] = corruption_ops.SEVERITIES,
    cifar_c_dir: str | Path | None = None,
    max_images: int | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
) -> dict:
    """Mean accuracy (percent) over corruptions x severities, from CIFAR-C files or generated ones.

    With `cifar_c_dir` holding `<name>.npy` (5 x N images, severity 1 first) and `labels.npy`, the
    files are used; otherwise the test images of `data` (an ImageData) are corrupted here, batch by
    batch with seeds derived from `seed` and the batch position (so results depend on `batch_size`, which sets
    only how the images are corrupted, not how they are classified).
    """
    unknown = [name for name in corruptions if name not in corruption_ops.ALL_CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; accepted: {', '.join(corruption_ops.ALL_CORRUPTIONS)}")
    folder = cifar_c_files(cifar_c_dir, corruptions)
    by_corruption: dict[str, list[float]] = {}
    jobs = [(name, severity) for name in corruptions for severity in severities]
    with sharpness_measures.evaluation_mode(model):
        for name, severity in tqdm(jobs, desc="corruption accuracy", disable=not progress, leave=False):
            if folder is not None:
                labels = torch.from_numpy(np.load(folder / "labels.npy"))
                per_severity = len(labels) // 5
                labels = labels[(severity - 1) * per_severity : severity * per_severity][:max_images]
                stack = np.load(folder / f"{name}.npy", mmap_mode="r")
                chunk = stack[(severity - 1) * per_severity : (severity - 1) * per_severity + len(labels)]
                images = torch.from_numpy(np.array(chunk)).permute(0, 3, 1, 2)
            else:
                labels = data.test_labels[:max_images]
                clean = data.test_images[:max_images]
                images = torch.cat([
                    corruption_ops.corrupt(clean[start : start + batch_size], name, severity, seed=seed * 100_003 + start)
                    for start in range(0, len(clean), batch_size)
                ])  # fmt: skip
            accuracy_percent = _accuracy_on(model, images, labels, data)
            by_corruption.setdefault(name, []).append(accuracy_percent)
    values = [value for row in by_corruption.values() for value in row]
    return {
        "corruption_accuracy": sum(values) / len(values),
        "by_corruption": by_corruption,
        "severities": list(severities),
        "source": f"CIFAR-C files in {folder}" if folder else f"generated by sharpness.measuring.corruptions (seed {seed})",
        "images": len(labels),
    }


# ----------------------------------------------------------------------------------------------
# One run, end to end
# ----------------------------------------------------------------------------------------------


def fixed_subset(count: int, size: int | None, seed: int = 0) -> Tensor | slice:
    """Indices of a fixed random `size` of `count` items (all of them for None or size >= count).

    Random, not the first `size`: folder data sets are stored class by class.
    """
    if size is None or size >= count:
        return slice(None)
    if size < 1:
        raise ValueError(f"a subset size must be a positive integer or None, got {size!r}")
    return torch.randperm(count, generator=derived_generator(seed, "measure-subset"))[:size].sort().values


SHARPNESS_MEASURES = (
    "fisher_rao_norm", "fisher_rao_norm_exact", "relative_flatness", "relative_flatness_paper", "sam_sharpness",
    "hessian_top_eigenvalue", "hessian_trace",
)  # fmt: skip
# metrics.json key holding, per Hessian measure, the steps it used and its accuracy (HessianEstimate.record).
ESTIMATES_KEY = "estimates"


# Appendix F.1 re-measures the paper's three measures on the clean training images (not the Hessian extras).
CLEAN_REMEASURED = ("fisher_rao_norm", "relative_flatness", "relative_flatness_paper", "sam_sharpness")


def sharpness_of(
    model: nn.Module, batches_of: Callable, images: Tensor, labels: Tensor, todo: Sequence[str], timed: Callable,
    *, slow_samples: int | None, sam_draws: int, hessian_iterations: int, seed: int, progress: bool, prefix: str = "",
) -> tuple[dict, float | None]:
    """The sharpness measures in `todo` on one set of training images, and the accuracy on them when
    the forward pass that serves Fisher-Rao and relative flatness ran (else None).

    Fisher-Rao and relative flatness use every image (one forward pass serves all three); SAM-sharpness
    and the Hessian measures use a fixed random `slow_samples` of them (None: all). The Hessian measures
    stop at their tolerance (at most `hessian_iterations` steps); what they used and their accuracy go
    under ESTIMATES_KEY.
    """
    values, pass_accuracy = {}, None
    train_batches = batches_of(images, labels)
    if {"fisher_rao_norm", "relative_flatness", "relative_flatness_paper"} & set(todo):
        result = timed(f"{prefix}train_pass", lambda: sharpness_measures.classifier_pass(model, train_batches, progress=progress, desc="train set"))
        weight = sharpness_measures.resolve_classifier(model, None).weight.detach()
        values["fisher_rao_norm"] = sharpness_measures.fisher_rao_from_logits(result.logits, result.labels, count_weight_layers(model))
        values["relative_flatness"] = sharpness_measures.relative_flatness_from_pass(result, weight)
        values["relative_flatness_paper"] = sharpness_measures.relative_flatness_from_pass(result, weight, paper_compatible=True)
        if not prefix:
            values["measured_set"] = measured_set_diagnostics(result)
        pass_accuracy = accuracy(result.logits, result.labels)
        del result
    subset = fixed_subset(len(labels), slow_samples, seed)
    slow_batches = batches_of(images[subset], labels[subset])
    slow = {
        "fisher_rao_norm_exact": lambda: sharpness_measures.fisher_rao_norm_exact(model, train_batches, progress),
        "sam_sharpness": lambda: sharpness_measures.sam_sharpness(model, slow_batches, draws=sam_draws, seed=seed, progress=progress),
        "hessian_top_eigenvalue": lambda: sharpness_measures.hessian_top_eigenvalue_estimate(model, slow_batches, iterations=hessian_iterations, seed=seed, progress=progress),
        "hessian_trace": lambda: sharpness_measures.hessian_trace_estimate(model, slow_batches, draws=hessian_iterations, seed=seed, progress=progress),
    }  # fmt: skip
    for name in todo:
        if name in slow:
            value = timed(f"{prefix}{name}", slow[name])
            if isinstance(value, sharpness_measures.HessianEstimate):  # its accuracy goes beside it
                values.setdefault(ESTIMATES_KEY, {})[name] = value.record()
                value = value.value
            values[name] = value
    return values, pass_accuracy


def measured_set_diagnostics(result: sharpness_measures.ClassifierPass) -> dict:
    """Whether the measured weights are a minimum of the measured loss, and whether the network still computes.

    Accuracy and mean cross-entropy on the very images the sharpness measures see (the fixed augmented copy
    for augmentation controls), which the minimum criterion reads; the share of classifier inputs (hidden
    units) that are zero on every image (dead ReLUs: what a too-large SAM radius leaves) and the spread of
    the logits over images (near 0: a constant predictor). All from the pass the measures already made.
    """
    logits, labels, features = result.logits.double(), result.labels, result.features
    return {
        "accuracy": accuracy(logits, labels),
        "loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "images": len(labels),
        "dead_unit_fraction": float((features.abs().amax(dim=0) == 0).double().mean()),
        "logit_spread": float(logits.std(dim=0).mean()),
    }


# The settings (keys of metrics.json's "settings") each measure's value depends on. A value is kept only beside
# the settings it was computed with: a call with other settings measures it again, and one metrics.json never
# states settings that a value it holds was not computed with (`_settled`).
_ON_TRAIN = ("train_images", "train_set", "seed")
_SLOW = (*_ON_TRAIN, "slow_measure_images")
DEPENDS_ON = {
    "test_accuracy": (), "test_ece": (), "train_accuracy": ("train_images",), "generalisation_gap": ("train_images",),
    "fisher_rao_norm": _ON_TRAIN, "fisher_rao_norm_exact": _ON_TRAIN, "relative_flatness": _ON_TRAIN,
    "relative_flatness_paper": _ON_TRAIN, "sam_sharpness": (*_SLOW, "sam_draws", "sam_rho"),
    "hessian_top_eigenvalue": (*_SLOW, "hessian_iterations", "hessian_eigenvalue_tol"),
    "hessian_trace": (*_SLOW, "hessian_iterations", "hessian_trace_tol"),
    "corruption_accuracy": ("corruption_images", "corruptions", "seed"),
}  # fmt: skip


# What measuring one of `asked` writes too: (asked, written) pairs.
_PASS = ("fisher_rao_norm", "relative_flatness", "relative_flatness_paper")
_CLEAN_PASS = tuple(f"clean.{name}" for name in _PASS)
_WRITTEN_TOGETHER = ((("test_accuracy", "test_ece"),) * 2, (("generalisation_gap",), ("train_accuracy",)),
                     (_PASS, _PASS), (_CLEAN_PASS, _CLEAN_PASS))


def _changed(name: str, old: dict, new: dict) -> list[str]:
    """The settings `name` depends on whose stored value (`old`) differs from this call's (`new`); a setting an
    older metrics.json did not record counts as unchanged."""
    return [key for key in DEPENDS_ON[name] if key in old and old[key] != new.get(key)]


def _settled(path: Path, stored: dict, todo: Sequence[str], old: dict, new: dict) -> dict:
    """The settings to record beside every value once `todo` is measured with `new`: `new`, except where a value
    kept from before (`stored`: name -> value, clean ones as "clean.<name>") depends on an older setting that no
    measure of this call uses. A kept value and a new one that depend on one setting with two values cannot share
    one metrics.json: refused (before anything is measured), naming the file, the setting and the fix."""
    settings = dict(new)
    used = {key for name in todo for key in DEPENDS_ON[name.removeprefix("clean.")]}
    for name in stored:
        if name in todo:
            continue
        for key in _changed(name.removeprefix("clean."), old, new):
            if key in used:
                raise ValueError(
                    f"{path} holds {name} measured with {key} = {old[key]!r}, and this call measures "
                    f"{', '.join(dict.fromkeys(n for n in todo if key in DEPENDS_ON[n.removeprefix('clean.')]))} with {key} = {new[key]!r}: "
                    f"one file keeps one {key}. Measure {name} again too (add it to the measures), or use {key} = "
                    f"{old[key]!r} again")
            settings[key] = old[key]
    return settings


def _read_metrics(run_dir: Path) -> dict:
    path = run_dir / METRICS_FILE
    return runs.read_json(path) if path.is_file() else {}


def check_measures(measures: Sequence[str]) -> None:
    """Raise ValueError naming any of `measures` that is not one of MEASURES (before any work is done)."""
    if isinstance(measures, str):
        raise ValueError(f"measures must be a list of names, got the string {measures!r}")
    unknown = [name for name in measures if name not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; accepted: {', '.join(MEASURES)}")


def check_evaluation_options(options: dict) -> None:
    """Raise ValueError naming any key of `options` that `evaluate_run` does not take as a keyword."""
    import inspect

    accepted = [name for name, parameter in inspect.signature(evaluate_run).parameters.items()
                if parameter.kind == parameter.KEYWORD_ONLY and name != "progress"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown evaluation options {unknown}; accepted: {', '.join(accepted)}")


def evaluate_run(
    run_dir: str | Path,
    measures: Sequence[str] = DEFAULT_MEASURES,
    device: str | torch.device = "auto",
    *,
    batch_size: int | None = None,
    max_train_samples: int | None = None,
    slow_samples: int | None = None,
    sam_draws: int = 100,
    hessian_iterations: int = 20,
    corruptions: Sequence[str] = corruption_ops.STANDARD_CORRUPTIONS,
    corruption_images: int | None = None,
    cifar_c_dir: str | Path | None = None,
    also_clean: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Measure a finished run and write `metrics.json` beside its summary; returns the merged metrics.

    Measures already in metrics.json are skipped unless `overwrite`, or unless they were computed with other
    settings (those this call's value would depend on, `DEPENDS_ON`): metrics.json keeps each value beside the
    settings it was computed with, and a null value is measured again. `max_train_samples` limits the
    training images every train-set measure sees (quick looks; the paper used the full set);
    `slow_samples` limits only SAM-sharpness and the Hessian measures to a fixed random subset.
    `also_clean`: for augmentation controls, the paper's three sharpness measures (CLEAN_REMEASURED) again on
    the clean training images, stored under "clean" (the paper's Appendix F.1 check that the trends survive).
    `hessian_iterations` caps the Hessian measures, which stop earlier at their tolerances.
    """
    check_measures(measures)
    sam_draws = check_count(sam_draws, "--sam-draws")
    hessian_iterations = check_count(hessian_iterations, "--hessian-iterations")
    corruption_images = check_count(corruption_images, "--corruption-images", "every test image")
    slow_samples = check_count(slow_samples, "slow_samples", "every training image")
    max_train_samples = check_count(max_train_samples, "--max-train-samples", "every training image")
    batch_size = check_count(batch_size, "--batch-size", "the run's training batch size")
    run_dir = Path(run_dir)
    device = resolve_device(device)
    model, config, data = load_run(run_dir, device)
    sharpness_measures.to_channels_last(model)  # faster on a CPU; the values move by float rounding only
    data = data.subset(max_train_samples, None).to(device)
    metrics = _read_metrics(run_dir)
    augmented = get_control(config.control).augment
    batch_size = batch_size or config.batch_size
    train_images, train_labels = measurement_images(data, config, seed)
    slow_count = len(train_labels) if slow_samples is None else min(slow_samples, len(train_labels))
    settings = json.loads(json.dumps({
        "device": str(device), "batch_size": batch_size, "train_images": len(train_labels),
        "train_set": "one fixed augmented copy" if augmented else "clean",
        "clean_measures": "also on the clean training images (under 'clean')" if augmented and also_clean else None,
        "slow_measure_images": slow_count, "sam_draws": sam_draws, "sam_rho": sharpness_measures.SAM_SHARPNESS_RHO,
        "hessian_iterations": hessian_iterations, "hessian_eigenvalue_tol": sharpness_measures.HESSIAN_EIGENVALUE_TOL,
        "hessian_trace_tol": sharpness_measures.HESSIAN_TRACE_TOL, "seed": seed, "fisher_rao_layers": count_weight_layers(model),
        "corruption_images": corruption_images, "corruptions": list(corruptions),
    }))  # fmt: skip
    old_settings = metrics.get("settings") or {}
    # A value is measured (again) when asked to, when missing or null, when it was computed with other settings,
    # and (test accuracy and ECE) when the test predictions saved with it are gone.
    no_predictions = not (run_dir / PREDICTIONS_FILE).is_file()
    todo = [name for name in measures if overwrite or metrics.get(name) is None or _changed(name, old_settings, settings)
            or (no_predictions and name in ("test_accuracy", "test_ece"))]
    clean_stored = metrics.get("clean", {})
    clean_todo = [name for name in measures if name in CLEAN_REMEASURED and augmented and also_clean
                  and (overwrite or clean_stored.get(name) is None or _changed(name, old_settings, settings))]
    stored = [name for name in MEASURES if metrics.get(name) is not None] + \
        [f"clean.{name}" for name in CLEAN_REMEASURED if clean_stored.get(name) is not None]
    rewritten = [*todo, *(f"clean.{n}" for n in clean_todo)]
    rewritten += [name for asked, written in _WRITTEN_TOGETHER for name in written if set(asked) & set(rewritten)]
    settings = _settled(run_dir / METRICS_FILE, stored, rewritten, old_settings, settings)
    # Seconds are kept per stored value; a call that measures everything again times everything again.
    timings = {} if overwrite and not set(stored) - set(rewritten) else dict(metrics.get("seconds", {}))

    def batches_of(images, labels):
        return lambda: data_batches(images, labels, batch_size, data=data)

    def timed(name, compute):
        start = time.perf_counter()
        value = compute()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings[name] = time.perf_counter() - start
        return value

    if {"test_accuracy", "test_ece", "generalisation_gap"} & set(todo):
        logits, labels = timed("test_predictions", lambda: predict(model, batches_of(data.test_images, data.test_labels), progress, "test set"))
        metrics["test_accuracy"] = accuracy(logits, labels)
        metrics["test_ece"] = expected_calibration_error(logits.softmax(dim=1), labels)
        runs.atomic_save(logits.argmax(dim=1), run_dir / PREDICTIONS_FILE)
    sharpness_options = dict(slow_samples=slow_samples, sam_draws=sam_draws, hessian_iterations=hessian_iterations,
                             seed=seed, progress=progress)
    values, clean_accuracy = sharpness_of(model, batches_of, train_images, train_labels, todo, timed, **sharpness_options)
    metrics[ESTIMATES_KEY] = {**metrics.get(ESTIMATES_KEY, {}), **values.pop(ESTIMATES_KEY, {})}
    metrics.update(values)
    if augmented:
        clean_accuracy = None  # that pass saw the augmented copy
    if clean_todo:
        clean_images, clean_labels = measurement_images(data, config, seed, clean=True)
        clean, clean_accuracy = sharpness_of(model, batches_of, clean_images, clean_labels, clean_todo, timed, prefix="clean.", **sharpness_options)
        metrics["clean"] = {**metrics.get("clean", {}), **clean}
    if {"train_accuracy", "generalisation_gap"} & set(todo):
        if clean_accuracy is None:  # no pass over the clean training images yet
            logits, labels = timed("train_predictions", lambda: predict(model, batches_of(data.train_images, data.train_labels), progress, "train set (clean)"))
            clean_accuracy = accuracy(logits, labels)
        metrics["train_accuracy"] = clean_accuracy
    if "generalisation_gap" in todo:
        metrics["generalisation_gap"] = 100.0 * (metrics["train_accuracy"] - metrics["test_accuracy"])
    if "corruption_accuracy" in todo:
        folder = cifar_c_dir
        if folder is None and config.dataset in CIFAR_C_FOLDERS:
            folder = DATA_DIR / CIFAR_C_FOLDERS[config.dataset]
        result = timed("corruption_accuracy", lambda: corruption_accuracy(
            model, data, corruptions, cifar_c_dir=folder, max_images=corruption_images, seed=seed, progress=progress))  # fmt: skip
        metrics["corruption_accuracy"] = result.pop("corruption_accuracy")
        metrics["corruption"] = result
    metrics.update(run=config.to_dict(), code=code_version(), seconds=timings, units=UNITS, settings=settings)
    runs.atomic_write_json(run_dir / METRICS_FILE, metrics)
    return metrics


# ----------------------------------------------------------------------------------------------
# Many runs (notebooks/evaluate.ipynb)
# ----------------------------------------------------------------------------------------------


def resolve_run_dirs(run_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Run directories from one run, a list of runs, or a runs root (every run below it, finished or not)."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    found: list[Path] = []
    for entry in map(Path, run_dirs):
        if (entry / runs.CONFIG).is_file():
            found.append(entry)
        elif entry.is_dir():
            found.extend(runs.find_runs(entry, finished_only=False))
        else:
            raise FileNotFoundError(f"{entry} is neither a run directory (with config.json) nor a runs folder")
    return found


def why_not_evaluable(run_dir: Path) -> str | None:
    """Why `run_dir` cannot be evaluated (unfinished or diverged), or None when it can."""
    if not runs.is_finished(run_dir):
        return f"not finished training (no {runs.SUMMARY}): train it to the end first"
    summary = runs.read_json(run_dir / runs.SUMMARY, f"delete it; the next train command writes it again from {runs.CHECKPOINT}")
    if summary.get("status") != "finished":
        return f"training {summary.get('status')} ({summary.get('diverged_reason', 'no reason recorded')})"
    return None


def evaluate_runs(run_dirs, **options) -> list[dict]:
    """`evaluate_run` on each finished, non-diverged run; the others are printed with the reason and skipped.

    Raises ValueError, listing every run found and why it was skipped, when there was nothing to evaluate.
    """
    results, skipped = [], []
    for run_dir in resolve_run_dirs(run_dirs):
        reason = why_not_evaluable(run_dir)
        if reason:
            skipped.append(f"{run_dir}: {reason}")
            print(f"skipping {skipped[-1]}")
            continue
        log_line(f"evaluating {run_dir}")
        started = time.perf_counter()
        results.append({"run_dir": str(run_dir), **evaluate_run(run_dir, **options)})
        log_line(f"evaluated {run_dir} in {time.perf_counter() - started:.0f} s")
    if not results:
        found = "; ".join(skipped) if skipped else "no run directories (with config.json) found"
        raise ValueError(f"nothing to evaluate in {run_dirs}: {found}")
    return results


SUMMARY_COLUMNS = (
    "test_accuracy", "generalisation_gap", "test_ece", "corruption_accuracy", "fisher_rao_norm",
    "relative_flatness", "sam_sharpness",
)  # fmt: skip


def summary_table(results: Sequence[dict]) -> pd.DataFrame:
    """One row per run: what was trained and the headline metrics."""
    rows = []
    for result in results:
        run = result.get("run", {})
        identity = {key: run.get(key) for key in ("dataset", "arch", "control", "seed")}
        rows.append({**identity, **{key: result.get(key) for key in SUMMARY_COLUMNS if key in result}})
    return pd.DataFrame(rows)


def disagreement_by_control(results: Sequence[dict]) -> pd.DataFrame:
    """Prediction disagreement over all seed pairs of each (dataset, arch, control) with >= 2 seeds."""
    groups: dict[tuple, list[str]] = {}
    for result in results:
        run = result.get("run", {})
        groups.setdefault((run.get("dataset"), run.get("arch"), run.get("control")), []).append(result["run_dir"])
    rows = [
        {"dataset": d, "arch": a, "control": c, "seeds": len(dirs), "prediction_disagreement": disagreement_between_runs(dirs)}
        for (d, a, c), dirs in groups.items()
        if len(dirs) >= 2
    ]
    return pd.DataFrame(rows, columns=["dataset", "arch", "control", "seeds", "prediction_disagreement"])


def disagreement_or_why_not(results: Sequence[dict]) -> pd.DataFrame | str:
    """`disagreement_by_control`, or, where no control has two seeds, a sentence saying so (not an empty table)."""
    table = disagreement_by_control(results)
    if len(table):
        return table
    groups = sorted({"/".join(str(result.get("run", {}).get(key)) for key in ("dataset", "arch", "control"))
                     for result in results})
    return (f"No prediction disagreement: it compares seeds of one control, and each of {', '.join(groups)} has "
            f"one evaluated seed here. Train and evaluate a second seed (seed=1) to see it.")


# ----------------------------------------------------------------------------------------------
# Command line: `python -m sharpness evaluate RUN_DIR_OR_RUNS_ROOT ...` (no papermill needed)
# ----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", help="finished runs, or runs folders (every finished run below them)")
    parser.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES), help=f"any of {', '.join(MEASURES)}")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's training batch size")
    parser.add_argument("--max-train-samples", type=int, default=None, help="cut the train-set measures' images")
    parser.add_argument("--sam-draws", type=positive_int, default=100)
    parser.add_argument("--hessian-iterations", type=positive_int, default=20)
    parser.add_argument("--corruption-images", type=positive_int, default=None, help="test images per corruption (default: all)")
    parser.add_argument("--cifar-c-dir", default=None, help="CIFAR-10-C/100-C .npy files (default: generate corruptions)")
    parser.add_argument("--overwrite", action="store_true", help="recompute measures already in metrics.json")
    parser.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    options = {key: getattr(args, key) for key in (
        "measures", "device", "batch_size", "max_train_samples", "sam_draws", "hessian_iterations",
        "corruption_images", "cifar_c_dir", "overwrite")}  # fmt: skip
    results = evaluate_runs(args.run_dirs, **options, progress=not args.no_progress)
    if not results:
        raise FileNotFoundError(f"no finished run under {' '.join(args.run_dirs)}: train first (python -m sharpness train ...)")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        table = summary_table(results)
        print(table.to_string(index=False))
        print("units (the paper's tables): " + "; ".join(f"{name} {unit}" for name, unit in UNITS.items() if name in table))
        disagreement = disagreement_or_why_not(results)
        print(disagreement if isinstance(disagreement, str) else disagreement.to_string(index=False))
    return 0
