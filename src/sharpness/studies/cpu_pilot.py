"""The pilot that chose the CPU study's protocol: which network, how many images and epochs reach a minimum.

The hardest controls to fit are the augmentation ones (a network must classify every crop and flip of its
training images), so the pilot trains `aug` (and `aug_sam`, SAM slows fitting further) of seed 0 under each
candidate protocol and records, from the runs themselves, the accuracy and loss on one fixed augmented copy
of the training images (the images the sharpness measures see), the fall of the training loss over the last
epochs, the test accuracy and the cost. `python -m sharpness cpu-pilot` trains what is missing and writes
`results/cpu_pilot/pilot.json`; the setup chapter shows it beside the protocol it led to.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..core import runs
from ..core.paths import RESULTS_DIR, RUNS_DIR
from ..training import models

PILOT_FILE = RESULTS_DIR / "cpu_pilot" / "pilot.json"
DEFAULT_RUNS_DIR = RUNS_DIR / "cpu_pilot"
PILOT_CONTROLS = ("aug", "aug_sam")
# (arch, training images, epochs, schedule, SAM radius scale): the old protocol first, then the levers in turn.
CANDIDATES = (
    ("cnn_mlp", 5_000, 40, "cosine", 1.0),
    ("cnn_mlp", 2_000, 100, "cosine", 1.0),
    ("cnn_mlp_h1024", 2_000, 60, "cosine", 1.0),
    ("cnn_mlp_wide", 1_000, 100, "cosine", 1.0),
    ("cnn_mlp_wide", 1_000, 100, "cosine", 0.18),
    ("cnn_mlp_wide", 800, 120, "cosine", 0.18),
)
# SAM on the baseline at the paper's two largest radii, absolute (scale 1) and relative (the study's scale), for
# PROBE_EPOCHS epochs of the chosen protocol: whether the network still computes (dead units, logit spread).
RADIUS_PROBES = ((0.5, 1.0), (0.25, 1.0), (0.5, 0.18), (0.25, 0.18))
PROBE_EPOCHS = 10
SHARED = {"dataset": "cifar10_folder", "seed": 0, "lr": 1e-2, "batch_size": 128, "channels_last": True,
          "monitor_test_images": 1_000, "device": "cpu"}


def candidate_config(arch: str, images: int, epochs: int, schedule: str, rho_scale: float, control: str, runs_dir,
                     data_dir=None, rho: float | None = None, lr: float = SHARED["lr"],
                     batch_size: int = SHARED["batch_size"]):
    """One pilot run's configuration; its folder names the candidate (and the learning rate and batch size where
    they are not SHARED's)."""
    from ..training.train import RunConfig
    from .registry import monitor_every

    other_lr = "" if lr == SHARED["lr"] else f"_lr{lr:g}"
    other_batch = "" if batch_size == SHARED["batch_size"] else f"_b{batch_size}"
    folder = Path(runs_dir) / f"{arch}_{images}_{epochs}_{schedule}_rho-scale{rho_scale:g}{other_lr}{other_batch}"
    return RunConfig(arch=arch, control=control, epochs=epochs, max_train_samples=images, lr_schedule=schedule,
                     rho=rho, rho_scale=rho_scale, runs_dir=str(folder), data_dir=data_dir, monitor_every=monitor_every(epochs),
                     **{**SHARED, "lr": lr, "batch_size": batch_size})


def measure(run_dir: Path) -> dict:
    """What the pilot records of one run, finished or stopped early (`epochs_done` says which)."""
    import torch

    from ..measuring.evaluate import measured_set_diagnostics
    from ..measuring.measures import classifier_pass
    from ..training.data import batches
    from ..training.minimum import loss_drop, reached_minimum
    from ..training.train import last_test_accuracy, load_run, measurement_images

    history = runs.read_jsonl(run_dir / runs.METRICS)
    model, config, data = load_run(run_dir)
    images, labels = measurement_images(data, config)
    with torch.no_grad():
        measured = measured_set_diagnostics(classifier_pass(model, lambda: batches(images, labels, 128, data=data), progress=False))
    drop, drop_read_from = loss_drop(history)
    finished = len(history) == config.epochs
    status = runs.read_json(run_dir / runs.SUMMARY).get("status", "finished") if runs.is_finished(run_dir) else "stopped"
    verdict, reason = reached_minimum(history, measured["accuracy"]) if finished else (
        False, f"{'diverged' if status == 'diverged' else 'stopped'} after {len(history)} of {config.epochs} epochs")
    radius = config.rho * config.rho_scale if config.control.endswith("sam") else None
    return {
        "arch": config.arch, "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": config.max_train_samples, "epochs": config.epochs, "epochs_done": len(history), "lr": config.lr,
        "status": status,
        "batch_size": config.batch_size,
        "lr_schedule": config.lr_schedule, "control": config.control, "sam_radius": radius,
        "relative_radius": radius / models.initial_weight_norm(config.arch, config.seed) if radius else None,
        "measured_set_accuracy": measured["accuracy"], "measured_set_loss": measured["loss"],
        "loss_drop_last_5_epochs": drop, "loss_drop_read_from": drop_read_from,
        "reached_minimum": verdict, "reason": reason,
        "dead_unit_fraction": measured["dead_unit_fraction"], "logit_spread": measured["logit_spread"],
        "test_accuracy_monitored": last_test_accuracy(history),
        "train_seconds": sum(row["train_seconds"] for row in history),
        "images_per_second": sum(row["images_per_second"] for row in history) / len(history),
    }  # fmt: skip


def train_pilot(runs_dir=DEFAULT_RUNS_DIR, data_dir=None, candidates=CANDIDATES) -> None:
    """Every candidate's pilot runs, then the radius probes on the chosen protocol; what exists is skipped."""
    from ..training.train import train
    from .registry import PROTOCOL

    for candidate in candidates:
        for control in PILOT_CONTROLS:
            config = candidate_config(*candidate, control, runs_dir, data_dir)
            if not runs.is_finished(config.run_dir):
                started = time.perf_counter()
                train(config, progress=False)
                print(f"pilot {candidate} {control}: trained in {time.perf_counter() - started:.0f} s")
    chosen = (PROTOCOL["arch"], PROTOCOL["train_images"], PROTOCOL["epochs"], PROTOCOL["lr_schedule"])
    for rho, scale in RADIUS_PROBES:
        config = candidate_config(*chosen, scale, "baseline_sam", Path(runs_dir) / f"probe_rho{rho:g}", data_dir, rho=rho)
        if not (config.run_dir / runs.CHECKPOINT).is_file():
            train(config, progress=False, stop_after_epochs=PROBE_EPOCHS)
            print(f"radius probe rho {rho:g} x {scale:g}: {PROBE_EPOCHS} epochs trained")


def record_pilot(runs_dir=DEFAULT_RUNS_DIR, path: Path = PILOT_FILE, command: str = "python -m sharpness cpu-pilot") -> Path:
    """Measure every run found under `runs_dir` and write `path` (runs stopped early are recorded as such)."""
    from ..core.provenance import code_version

    found = [checkpoint.parent for checkpoint in sorted(Path(runs_dir).glob(f"**/{runs.CHECKPOINT}"))]
    document = {"provenance": {"command": command, "code": code_version(), "settings": SHARED,
                               "date": time.strftime("%Y-%m-%d")},
                "runs": [measure(run_dir) for run_dir in found]}
    return runs.atomic_write_json(path, document)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR))
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 ImageFolder pack (default: data/cifar10-jpeg)")
    parser.add_argument("--record-only", action="store_true", help="measure the runs there, train nothing")


def main(args: argparse.Namespace) -> int:
    if not args.record_only:
        train_pilot(args.runs_dir, args.data_dir)
    print(f"pilot written: {record_pilot(args.runs_dir)}")
    return 0


# --- for the setup chapter -------------------------------------------------------------------------


def load_pilot(path: Path = PILOT_FILE):
    """The recorded pilot as a table, one row per pilot run (empty when none is committed)."""
    import pandas as pd

    if not Path(path).is_file():
        return pd.DataFrame()
    return pd.DataFrame(runs.read_json(path)["runs"])


def pilot_table(pilot) -> "object":
    """The candidates side by side: what each setting left the hardest controls at."""
    candidates = pilot[pilot["epochs_done"].gt(PROBE_EPOCHS) | pilot["control"].ne("baseline_sam")]
    table = candidates.assign(
        network=candidates["arch"] + " (" + (candidates["parameters"] / 1000).round().astype(int).astype(str) + "k)",
        radius=candidates["sam_radius"].map(lambda r: "-" if r != r or r is None else f"{r:.4g}"),
        epochs=candidates["epochs_done"].astype(str) + " / " + candidates["epochs"].astype(str),
        accuracy=candidates["measured_set_accuracy"].map("{:.1%}".format),
        minimum=candidates["reached_minimum"].map({True: "yes", False: "no"}) + ": " + candidates["reason"],
    )
    columns = {"network": "network", "train_images": "training images", "epochs": "epochs done / planned",
               "control": "control", "radius": "SAM radius", "accuracy": "accuracy on the measured images",
               "minimum": "minimum?"}
    return table[list(columns)].rename(columns=columns).sort_values(["training images", "network"], ascending=[False, True])


def pilot_finding(pilot, protocol: dict) -> str:
    """Which candidate settings brought the augmentation controls over the accuracy bar, read from the pilot."""
    from ..training.minimum import MIN_ACCURACY

    if pilot.empty:
        return "No pilot is committed (python -m sharpness cpu-pilot records one)."
    tried = pilot[pilot["control"].isin(PILOT_CONTROLS)]
    finished = tried[tried["epochs_done"].eq(tried["epochs"])]

    def name(row) -> str:
        return f"{row.arch} on {row.train_images:,} images for {row.epochs} epochs ({row.control}: {row.measured_set_accuracy:.1%})"

    over = [name(r) for r in finished.itertuples() if r.measured_set_accuracy >= MIN_ACCURACY]
    under = [name(r) for r in finished.itertuples() if r.measured_set_accuracy < MIN_ACCURACY]
    stopped = tried[tried["epochs_done"].lt(tried["epochs"])]
    parts = [f"The pilot ran {len(tried)} augmentation runs; {len(stopped)} were stopped early to spend the CPU on more "
             f"promising candidates (their accuracy on the measured images then: at most {stopped['measured_set_accuracy'].max():.1%})."
             if len(stopped) else f"The pilot ran {len(tried)} augmentation runs."]
    if under:
        parts.append(f"Run to the end but under the bar: {'; '.join(under)}.")
    if over:
        parts.append(f"Over the bar: {'; '.join(over)}.")
    parts.append(f"The study uses {protocol['arch']} on {protocol['train_images']:,} images for {protocol['epochs']} epochs; its "
                 "own runs record the loss on the measured images over their last epochs, and each is judged by the full "
                 "criterion in the results chapter (the pilot's early runs recorded only the noisy running loss).")
    return " ".join(parts)


def probe_table(pilot):
    """The radius probes: SAM at the paper's largest radii, absolute and relative, after PROBE_EPOCHS epochs."""
    probes = pilot[pilot["control"].eq("baseline_sam") & pilot["epochs_done"].eq(PROBE_EPOCHS)]
    columns = {"sam_radius": "SAM radius applied", "relative_radius": "radius / ||theta_0||",
               "dead_unit_fraction": "hidden units dead", "logit_spread": "logit spread (std over images)",
               "measured_set_accuracy": f"train accuracy after {PROBE_EPOCHS} epochs"}
    return probes[list(columns)].rename(columns=columns).sort_values("SAM radius applied", ascending=False)


def probe_finding(pilot) -> str:
    """What the radius probes show, read from them: which radii leave the network computing."""
    probes = pilot[pilot["control"].eq("baseline_sam") & pilot["epochs_done"].eq(PROBE_EPOCHS)]
    if probes.empty:
        return "No radius probe is committed (python -m sharpness cpu-pilot runs them)."
    lines = [f"radius {r.sam_radius:.4g} ({r.relative_radius:.2%} of the initial weight norm): {r.dead_unit_fraction:.0%} "
             f"of the hidden units dead, logit spread {r.logit_spread:.2f}, train accuracy {r.measured_set_accuracy:.1%}"
             for r in probes.sort_values("sam_radius", ascending=False).itertuples()]
    return f"After {PROBE_EPOCHS} epochs of SAM on the baseline: " + "; ".join(lines) + "."
