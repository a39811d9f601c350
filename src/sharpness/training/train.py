"""One training run of the study: a data set, an architecture, a control and a seed.

Matched seeds: within a seed every control starts from the same weights (initialised right after
`torch.manual_seed(seed)`) and sees the training images in the same order (a generator seeded by the
seed and the epoch alone); augmentation draws from its own generator, so switching it on changes no
other random choice (SAM itself draws none).

A run is resumable: each epoch ends with an atomic checkpoint (weights, optimizer, schedule, metric
history), and because every epoch's randomness is derived from (seed, epoch) rather than carried over,
an interrupted run continues to exactly the weights an uninterrupted one reaches (bit for bit on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.cli_values import positive_int
from ..core import runs
from ..core.progress import log_line, tqdm
from ..core.provenance import code_version
from .controls import CONTROLS, SAM_RHO, get_control, hyperparameters
from .data import DATASETS, EVALUATION_BATCH_SIZE, ImageData, augmentation_for, batches, load_dataset, textbook_batches
from .minimum import PLATEAU_EPOCHS
from .models import ARCHS, build_model
from .sam import SAM, frozen_batchnorm_stats

LOADERS = ("resident", "dataloader")
# A run has diverged when its mean training loss is not finite or exceeds this many times ln(C), the loss of a
# uniform guess over C classes (where every freshly initialised or re-headed network starts).
DIVERGENCE_FACTOR = 10
_LARGEST_RATE = torch.finfo(torch.float32).max  # SGD applies lr and rho in float32
_SMALLEST_RATE = torch.finfo(torch.float32).tiny  # below it a rate is 0 (or subnormal) in float32: nothing would train
PRECISIONS = ("auto", "bf16", "fp32")
SCHEDULES = ("constant", "cosine")
# Fields that may differ when a run is resumed: where things are, and how often the test curve is drawn and the
# checkpoint saved (a record of the run, not what is trained: the weights are the same at any spacing).
_FREE_ON_RESUME = ("data_dir", "runs_dir", "device", "download", "pretrained_weights", "monitor_every")


@dataclass
class RunConfig:
    """Everything that defines a run. None means "the study's value" (see `controls.hyperparameters`).

    `max_train_samples` / `max_test_samples` cut the data to its first N images for quick runs;
    `loader` is "resident" (data on the training device, batched augmentation) or "dataloader"
    (torch DataLoader, per-image transforms); `precision` "auto" means bf16 autocast on CUDA, fp32
    elsewhere; `channels_last` None means on for CUDA.
    """

    dataset: str = "digits"
    arch: str = "simple_cnn"
    control: str = "baseline"
    seed: int = 0
    epochs: int | None = None
    data_dir: str | None = None
    runs_dir: str = "runs"
    device: str = "auto"
    lr: float | None = None
    batch_size: int | None = None
    rho: float | None = None
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    loader: str = "resident"
    precision: str = "auto"
    channels_last: bool | None = None
    pretrained_weights: str | None = None
    download: bool = False
    lr_schedule: str | None = None  # None: the data set's ("constant" or "cosine"; see controls.hyperparameters)
    monitor_test_images: int | None = None  # per-epoch test loss/accuracy on a fixed random subset (None: all)
    monitor_every: int = 1  # a test point and a checkpoint every N epochs and at the last (long runs: as many as short)
    rho_scale: float = 1.0  # SAM's radius is rho x rho_scale (the CPU study matches the paper's radii relative to ||theta_0||)

    def __post_init__(self):
        for value, name, choices in ((self.dataset, "dataset", DATASETS), (self.arch, "arch", ARCHS),
                                     (self.control, "control", CONTROLS), (self.loader, "loader", LOADERS),
                                     (self.precision, "precision", PRECISIONS)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        study = hyperparameters(self.dataset)
        self.epochs = study.epochs if self.epochs is None else self.epochs
        self.lr = study.lr if self.lr is None else float(self.lr)
        self.batch_size = study.batch_size if self.batch_size is None else self.batch_size
        self.rho = SAM_RHO if self.rho is None else float(self.rho)
        for name in ("epochs", "batch_size", "seed", "monitor_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, got {value!r}")
        self.rho_scale = float(self.rho_scale)
        for name in ("lr", "rho", "rho_scale"):
            if not _SMALLEST_RATE <= getattr(self, name) <= _LARGEST_RATE:
                raise ValueError(f"{name} must be a positive number from {_SMALLEST_RATE:.3g} to {_LARGEST_RATE:.3g} (SGD applies "
                                 f"it in float32, where a smaller one is 0 and the weights never move), got {getattr(self, name)!r}")
        if self.lr_schedule not in (None, *SCHEDULES):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(SCHEDULES)} (or None: the data set's)")
        for name in ("max_train_samples", "max_test_samples", "monitor_test_images"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None (all images), got {value!r}")
        if self.data_dir is not None:
            self.data_dir = str(self.data_dir)
        self.runs_dir = str(self.runs_dir)

    @property
    def run_dir(self) -> Path:
        return runs.run_dir(self.runs_dir, self.dataset, self.arch, self.control, self.seed)

    @property
    def schedule(self) -> str:
        return self.lr_schedule or hyperparameters(self.dataset).schedule

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def what_is_trained(self) -> dict:
        """The fields that must match for a run directory to be resumed with this config."""
        return {k: v for k, v in self.to_dict().items() if k not in _FREE_ON_RESUME}


def derived_generator(seed: int, purpose: str, epoch: int = 0) -> torch.Generator:
    """A CPU generator that depends on (seed, purpose, epoch) only, so streams never share state."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def epoch_order(seed: int, epoch: int, count: int) -> torch.Tensor:
    """The order in which epoch `epoch` visits `count` training images (identical for every control)."""
    return torch.randperm(count, generator=derived_generator(seed, "order", epoch))


def measurement_images(data: ImageData, config: RunConfig, seed: int = 0, clean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images the sharpness measures see: as trained on, so one fixed augmented copy for aug runs
    (the paper's choice), or the clean images with `clean=True` (the paper's Appendix F.1 check).

    A fixed copy (rather than fresh augmentations per pass) keeps L(theta) and L(theta + delta) of
    SAM-sharpness, and the Hessian measures, on the same inputs; training reads its loss on the same
    copy over its last epochs, for the minimum criterion (`sharpness.training.minimum`).
    """
    images, labels = data.train_images, data.train_labels
    if get_control(config.control).augment and not clean:
        augment = augmentation_for(config.dataset, derived_generator(seed, "measure-augmentation"))
        images = torch.cat([augment(chunk) for chunk in images.split(4096)])
    return images, labels


def initial_model(config: RunConfig, num_classes: int, image_size: int) -> nn.Module:
    """The run's starting weights: a function of arch, data shape and seed only (same for every control)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(config.arch, num_classes, image_size, pretrained_weights=config.pretrained_weights)


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else as torch understands it, if this machine has it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:<index>") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU here: use --device cpu (or auto)")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s): "
                         "use cuda:0 ... or auto")
    return resolved


def divergence(train_loss: float, num_classes: int) -> str | None:
    """Why an epoch's mean training loss says the run diverged (see DIVERGENCE_FACTOR), or None."""
    limit = DIVERGENCE_FACTOR * math.log(num_classes)
    if not math.isfinite(train_loss):
        return f"training loss became {train_loss}"
    if train_loss > limit:
        return (f"training loss {train_loss:.4g} exceeds {DIVERGENCE_FACTOR} x ln({num_classes}) = {limit:.3g}, "
                f"{DIVERGENCE_FACTOR} times that of a uniform guess")
    return None


def prepare_data(config: RunConfig, progress: bool = True) -> ImageData:
    """The run's data set, cut to max_train_samples / max_test_samples."""
    data = load_dataset(config.dataset, config.data_dir, download=config.download, progress=progress)
    return data.subset(config.max_train_samples, config.max_test_samples)


class _Trainer:
    """The pieces of one run that live across epochs: model, optimizer, schedule, data, device."""

    def __init__(self, config: RunConfig, data: ImageData, device: torch.device):
        self.config, self.device = config, device
        self.control = get_control(config.control)
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
        self.channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = initial_model(config, data.num_classes, data.image_size).to(device, memory_format=memory_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=hyperparameters(config.dataset).momentum,
                                         weight_decay=self.control.weight_decay)
        self.sam = SAM(self.optimizer, rho=config.rho * config.rho_scale) if self.control.sam else None
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
                          if config.schedule == "cosine" else None)
        self.data = data.to(device) if config.loader == "resident" else data

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.model(x)
        return F.cross_entropy(logits.float(), y), logits

    def train_batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        data, seed = self.data, self.config.seed
        order = derived_generator(seed, "order", epoch)
        if self.config.loader == "dataloader":
            loader = textbook_batches(data.train_images, data.train_labels, self.config.batch_size, data=data,
                                      augment=self.control.augment, shuffle_generator=order,
                                      num_workers=4 if self.device.type == "cuda" else 0,
                                      pin_memory=self.device.type == "cuda")
            return ((x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)) for x, y in loader)
        augment = augmentation_for(data.name, derived_generator(seed, "augment", epoch)) if self.control.augment else None
        return batches(data.train_images, data.train_labels, self.config.batch_size, data=data, augment=augment,
                       shuffle_generator=order, device=self.device)

    def _start_epoch(self, epoch: int) -> None:
        self.model.train()
        torch.manual_seed(derived_generator(self.config.seed, "global", epoch).initial_seed())  # e.g. dropout

    @torch.no_grad()
    def batchnorm_pass(self, epoch: int) -> None:
        """Epoch `epoch`'s batches through the network in train mode, without a step: of all that training
        changes, only the batch-norm running statistics move (`sharpness.measuring.plateau_noise`)."""
        self._start_epoch(epoch)
        for x, _ in self.train_batches(epoch):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                self.model(x)

    def train_epoch(self, epoch: int, progress: bool) -> dict:
        """One pass over the training set; loss and accuracy are summed on the device (no per-step sync)."""
        self._start_epoch(epoch)
        totals = torch.zeros(2, device=self.device, dtype=torch.float64)  # loss sum, correct
        count = 0
        steps = -(-len(self.data.train_images) // self.config.batch_size)
        self._sync()
        start = time.perf_counter()
        for x, y in tqdm(self.train_batches(epoch), total=steps, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            loss, logits = self.loss(x, y)
            loss.backward()
            if self.sam is None:
                self.optimizer.step()
            else:
                self.sam.first_step()
                with frozen_batchnorm_stats(self.model):
                    self.loss(x, y)[0].backward()
                self.sam.second_step()
            with torch.no_grad():
                totals += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()])
            count += len(y)
        self._sync()
        seconds = time.perf_counter() - start
        loss_sum, correct = totals.tolist()
        if self.scheduler is not None:
            self.scheduler.step()
        return {"train_loss": loss_sum / count, "train_accuracy": correct / count, "train_seconds": seconds,
                "images_per_second": count / seconds}

    def monitored_test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test images the per-epoch curve is drawn on: all, or a fixed random `monitor_test_images` of them
        (the same for every run; the end-of-run evaluation always uses the whole test set)."""
        images, labels, size = self.data.test_images, self.data.test_labels, self.config.monitor_test_images
        if size is None or size >= len(labels):
            return images, labels
        chosen = torch.randperm(len(labels), generator=derived_generator(0, "monitored-test-subset"))[:size].sort().values
        return images[chosen.to(images.device)], labels[chosen.to(labels.device)]

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """Mean cross-entropy and accuracy in eval mode, in batches of EVALUATION_BATCH_SIZE."""
        self.model.eval()
        totals = torch.zeros(2, device=self.device, dtype=torch.float64)
        for x, y in batches(images, labels, EVALUATION_BATCH_SIZE, data=self.data, device=self.device):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, logits = self.loss(x, y)
            totals += torch.stack([loss.double() * len(y), (logits.argmax(1) == y).sum().double()])
        loss_sum, correct = totals.tolist()
        return loss_sum / len(labels), correct / len(labels)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def state(self, epochs_done: int, history: list[dict]) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "epochs_done": epochs_done, "history": history}

    def load_state(self, state: dict) -> tuple[int, list[dict]]:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        return state["epochs_done"], state["history"]


def stored_config(run_dir: str | Path, fix: str) -> RunConfig:
    """The config.json of a run directory; a damaged or invalid one raises runs.RunFileError ending in `fix`."""
    path = Path(run_dir) / runs.CONFIG
    values = runs.read_json(path, fix)
    try:
        return RunConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise runs.RunFileError(f"{path} does not hold valid run settings ({error}): {fix}") from error


def _check_config(config: RunConfig) -> None:
    """Refuse to resume a run directory trained with other settings (reads only)."""
    if not (config.run_dir / runs.CONFIG).is_file():
        return
    stored = stored_config(config.run_dir, f"delete the run directory {config.run_dir} to train the run again").what_is_trained()
    wanted = config.what_is_trained()
    if stored != wanted:
        differences = {k: (stored.get(k), wanted.get(k)) for k in wanted if stored.get(k) != wanted.get(k)}
        raise ValueError(f"{config.run_dir} holds a run with other settings (stored, requested): {differences}; "
                         "use another runs_dir or delete that run directory")


def _finished_summary(run_dir: Path) -> dict:
    fix = f"delete it, and the next train command writes it again from {runs.CHECKPOINT}"
    return {**runs.read_json(run_dir / runs.SUMMARY, fix), "skipped": True}


def train(config: RunConfig, progress: bool = True, stop_after_epochs: int | None = None,
          deadline: float | None = None) -> dict:
    """Train (or resume, or skip) the run described by `config`; returns its summary.

    A finished run (summary.json present) is not repeated: its summary comes back with "skipped": True.
    `stop_after_epochs` ends this call early, after that many epochs, leaving a resumable checkpoint
    (status "interrupted"; for time-limited jobs and for the resume test). `deadline` (a `time.time()`
    value) does the same before an epoch that would not end in time, judged by the slowest epoch so far.
    Everything that can be checked (settings, device, data) is checked before the run directory is
    touched; while training, the run directory is locked (a second trainer is refused with runs.RunBusyError).
    """
    if stop_after_epochs is not None and (not isinstance(stop_after_epochs, int) or isinstance(stop_after_epochs, bool)
                                          or stop_after_epochs < 1):
        raise ValueError(f"stop_after_epochs must be a positive integer (or None: train to the end), got {stop_after_epochs!r}")
    run_dir = config.run_dir
    device = resolve_device(config.device)
    _check_config(config)
    if runs.is_finished(run_dir):
        return _finished_summary(run_dir)
    data = prepare_data(config, progress)
    trainer = _Trainer(config, data, device)
    with runs.locked(run_dir / runs.LOCK, wait=False):
        summary = _train_locked(config, trainer, device, progress, stop_after_epochs, deadline)
        if runs.is_finished(run_dir):  # a finished run leaves no lock behind; a later trainer sees summary.json
            (run_dir / runs.LOCK).unlink(missing_ok=True)  # first and stops, so no one waits on the unlinked file
    return summary


def _train_locked(config: RunConfig, trainer: _Trainer, device: torch.device, progress: bool,
                  stop_after_epochs: int | None, deadline: float | None) -> dict:
    """The rest of `train`, while this process holds the run directory's lock."""
    run_dir = config.run_dir
    if runs.is_finished(run_dir):  # another process finished it while this one loaded the data
        return _finished_summary(run_dir)
    runs.remove_leftovers(run_dir)
    if not (run_dir / runs.CONFIG).is_file():
        runs.atomic_write_json(run_dir / runs.CONFIG, config.to_dict())
    epochs_done, history = 0, []
    checkpoint_path = run_dir / runs.CHECKPOINT
    if checkpoint_path.is_file():
        fix = "delete it to train the run from the start (the result is the same, bit for bit on CPU)"
        state = runs.load_checkpoint(checkpoint_path, fix, map_location=device)
        epochs_done, history = runs.restore(lambda: trainer.load_state(state), checkpoint_path,
                                            f"{config.arch} with {trainer.data.num_classes} classes (this run's settings)", fix)
    runs.atomic_write_jsonl(run_dir / runs.METRICS, history)  # the checkpoint's history is the record (a kill may
    # have come between a checkpoint and its metric rows); writing now also proves the folder writable
    started, status, reason, saved = time.perf_counter(), "finished", None, epochs_done
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, epochs_done + stop_after_epochs)
    with tqdm(total=config.epochs, initial=epochs_done, desc=f"{config.control} seed{config.seed}", disable=not progress) as bar:
        for epoch in range(epochs_done, last_epoch):
            if not _epoch_fits(deadline, history):
                break
            epoch_started = time.time()
            row = {"epoch": epoch + 1, "lr": trainer.optimizer.param_groups[0]["lr"], **trainer.train_epoch(epoch, progress)}
            reason = divergence(row["train_loss"], trainer.data.num_classes)
            # every monitor_every-th epoch, the last and a diverged one draw a test point and save the checkpoint and the
            # rows (on a long run, saving every epoch cost about a tenth of its steps' time); a stop saves after the loop
            point = (epoch + 1) % config.monitor_every == 0 or epoch + 1 == config.epochs or bool(reason)
            if point:
                row["test_loss"], row["test_accuracy"] = trainer.evaluate(*trainer.monitored_test_set())
            if epoch >= config.epochs - PLATEAU_EPOCHS - 1:  # the minimum criterion reads these (sharpness.training.minimum)
                row["measured_loss"], row["measured_accuracy"] = trainer.evaluate(*measurement_images(trainer.data, config))
            row["epoch_wall_seconds"] = time.time() - epoch_started
            history.append(row)
            if point:
                saved = _save_progress(trainer, history, checkpoint_path, run_dir)
            bar.update()
            tested = last_test_accuracy(history)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test_acc=f"{tested:.3f}")
            if progress:
                log_line(f"{config.control} seed{config.seed}: epoch {epoch + 1}/{config.epochs}, train loss "
                         f"{row['train_loss']:.3f}, train acc {row['train_accuracy']:.3f}, test acc "
                         f"{tested:.3f}, {row['epoch_wall_seconds']:.0f} s")
            if reason:
                status = "diverged"
                break
    if saved < len(history):  # stopped between saves (stop_after_epochs, a deadline)
        _save_progress(trainer, history, checkpoint_path, run_dir)
    if status == "finished" and len(history) < config.epochs:
        return {"status": "interrupted", "epochs_completed": len(history), "run_dir": str(run_dir)}
    summary = _summary(config, status, history, device, time.perf_counter() - started)
    if reason:
        summary["diverged_reason"] = reason
    runs.atomic_write_json(run_dir / runs.SUMMARY, summary)
    return summary


def _save_progress(trainer: "_Trainer", history: list[dict], checkpoint_path: Path, run_dir: Path) -> int:
    """The checkpoint after the epochs of `history`, then their rows (the checkpoint's history is the record); returns
    how many epochs are saved."""
    runs.atomic_save(trainer.state(len(history), history), checkpoint_path)
    runs.atomic_write_jsonl(run_dir / runs.METRICS, history)
    return len(history)


def _epoch_fits(deadline: float | None, history: list[dict]) -> bool:
    """Whether one more epoch ends before `deadline`, judged by the slowest epoch recorded so far."""
    if deadline is None:
        return True
    slowest = max((runs.epoch_wall_seconds(row) for row in history), default=0.0)
    return time.time() + slowest < deadline


def last_test_accuracy(history: list[dict]) -> float:
    """The newest point of the test curve (NaN before the first): with `monitor_every` > 1 most rows have none."""
    return next((row["test_accuracy"] for row in reversed(history) if "test_accuracy" in row), math.nan)


def _summary(config: RunConfig, status: str, history: list[dict], device: torch.device, seconds: float) -> dict:
    last = history[-1] if history else {}
    speeds = [row["images_per_second"] for row in history[1:]] or [row["images_per_second"] for row in history]
    return {
        "status": status,
        "epochs_completed": len(history),
        "epochs": config.epochs,
        **{key: last.get(key) for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
        "images_per_second": sum(speeds) / len(speeds) if speeds else None,
        "train_seconds": sum(row["train_seconds"] for row in history),
        "wall_seconds_this_call": seconds,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__,
        "code": code_version(),
        "config": config.to_dict(),
        "run_dir": str(config.run_dir),
    }


def _stored_run(run_dir: Path, data_dir: str | Path | None) -> tuple[RunConfig, ImageData, Path, str]:
    """A trained run's config, its data (cut as in training), its checkpoint and the fix for a damaged one."""
    checkpoint = run_dir / runs.CHECKPOINT
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no {runs.CHECKPOINT} in {run_dir}: train the run first (python -m sharpness train ...)")
    fix = f"delete the run directory {run_dir} and train the run again (python -m sharpness train ...)"
    config = stored_config(run_dir, fix)
    if data_dir is not None:
        config.data_dir = str(data_dir)
    return config, prepare_data(config), checkpoint, fix


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu", data_dir: str | Path | None = None
) -> tuple[nn.Module, RunConfig, ImageData]:
    """A trained run's model (eval mode, on `device`), its config and its data (cut as in training).

    `data_dir` says where the data set lives now, when that differs from where the run was trained.
    """
    run_dir = Path(run_dir)
    config, data, checkpoint, fix = _stored_run(run_dir, data_dir)
    model = build_model(config.arch, data.num_classes, data.image_size, pretrained=False)
    weights = runs.load_checkpoint(checkpoint, fix)["model"]
    runs.restore(lambda: model.load_state_dict(weights), checkpoint, f"{config.arch} with {data.num_classes} classes "
                 f"(its {runs.CONFIG})", fix)
    return model.to(resolve_device(device)).eval(), config, data


def load_trainer(run_dir: str | Path, data_dir: str | Path | None = None) -> tuple[_Trainer, list[dict]]:
    """A trained run as training left it, on the CPU: network, optimizer, schedule and data; and its history."""
    run_dir = Path(run_dir)
    config, data, checkpoint, fix = _stored_run(run_dir, data_dir)
    trainer = _Trainer(config, data, torch.device("cpu"))
    state = runs.load_checkpoint(checkpoint, fix)
    _, history = runs.restore(lambda: trainer.load_state(state), checkpoint, f"{config.arch} with "
                              f"{data.num_classes} classes (its {runs.CONFIG})", fix)
    return trainer, history


# ----------------------------------------------------------------------------------------------------------
# Command line: `python -m sharpness train ...`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default="baseline", help=f"one of {', '.join(CONTROLS)}")
    parser.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    parser.add_argument("--arch", default="simple_cnn", help=f"one of {', '.join(ARCHS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the study's value for the data set")
    parser.add_argument("--data-dir", default=None, help="where the data set lives (default: data/...)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--rho", type=float, default=None, help="SAM radius (default 0.05)")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-test-samples", type=int, default=None)
    parser.add_argument("--monitor-every", type=positive_int, default=1,
                        help="a test-curve point and a checkpoint every N epochs and at the last (default 1: every epoch)")
    parser.add_argument("--loader", default="resident", help=f"one of {', '.join(LOADERS)}")
    parser.add_argument("--precision", default="auto", help=f"one of {', '.join(PRECISIONS)}")
    parser.add_argument("--pretrained-weights", default=None, help="ImageNet state-dict file for *_imagenet archs")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10/100")
    parser.add_argument("--stop-after-epochs", type=int, default=None, help="leave a resumable run after N epochs")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (1 is fastest on a busy machine)")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    names = {f.name for f in fields(RunConfig)}
    config = RunConfig(**{k: v for k, v in vars(args).items() if k in names})
    summary = train(config, progress=not args.no_progress, stop_after_epochs=args.stop_after_epochs)
    shown = {k: summary.get(k) for k in ("status", "epochs_completed", "train_accuracy", "test_accuracy", "images_per_second")}
    print(f"{config.run_dir}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
          + (" (already finished, skipped)" if summary.get("skipped") else "")
          + (f"\ndiverged: {summary['diverged_reason']}" if summary.get("diverged_reason") else ""))
    return 0
