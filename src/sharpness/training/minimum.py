"""When a trained network sits at a minimum: the criterion every comparison of sharpness rests on.

Sharpness describes a minimum, so the study compares it only between runs that reached one. A run reached
a minimum when (1) its accuracy on the images its sharpness is measured on (one fixed augmented copy of the
training set for augmentation controls, the clean set otherwise) is at least MIN_ACCURACY, and (2) its loss
on those images has stopped falling: over the last PLATEAU_EPOCHS epochs it fell by less than PLATEAU_DROP of
its value, or by less than PLATEAU_FLOOR nats (a network that fits its images perfectly has a loss near 0,
where a relative change of a few per cent is a change of 1e-4 nats: no descent left to measure). Training records that loss, deterministically (eval mode, fixed images), for the final
PLATEAU_EPOCHS + 1 epochs; a run recorded before that carries only the running training loss, whose
per-epoch sampling noise (fresh augmentations, batch statistics) is judged the same way and says so.
"""

from __future__ import annotations

from typing import Sequence

MIN_ACCURACY = 0.95
PLATEAU_EPOCHS = 5
PLATEAU_DROP = 0.02
PLATEAU_FLOOR = 1e-3  # nats
CRITERION = (f"accuracy >= {MIN_ACCURACY:.0%} on the images its sharpness is measured on, and a loss on them that fell "
             f"by less than {PLATEAU_DROP:.0%} (or {PLATEAU_FLOOR:g} nats) over the last {PLATEAU_EPOCHS} epochs")


def loss_drop(history: Sequence[dict], absolute: bool = False) -> tuple[float | None, str]:
    """Relative (or, with `absolute`, plain) fall of the loss over the last PLATEAU_EPOCHS epochs, and which loss
    it was read from."""
    key = "measured_loss" if len(history) > PLATEAU_EPOCHS and all(
        "measured_loss" in row for row in history[-PLATEAU_EPOCHS - 1:]) else "train_loss"
    if len(history) <= PLATEAU_EPOCHS:
        return None, key
    before, last = history[-PLATEAU_EPOCHS - 1][key], history[-1][key]
    if absolute:
        return before - last, key
    return (before - last) / before if before else None, key


def reached_minimum(history: Sequence[dict], measured_accuracy: float | None) -> tuple[bool, str]:
    """(verdict, reason in words) for one run from its per-epoch history and its final measured-set accuracy."""
    if measured_accuracy is None:
        return False, "no accuracy on the measured images"
    drop, key = loss_drop(history)
    if drop is None:
        return False, f"history too short ({len(history)} epochs) to judge the loss"
    if measured_accuracy < MIN_ACCURACY:
        return False, f"accuracy {measured_accuracy:.1%} on the measured images (< {MIN_ACCURACY:.0%})"
    if drop >= PLATEAU_DROP and loss_drop(history, absolute=True)[0] >= PLATEAU_FLOOR:
        return False, f"{key.replace('_', ' ')} still falling ({drop:.1%} over the last {PLATEAU_EPOCHS} epochs)"
    fell = loss_drop(history, absolute=True)[0]
    return True, (f"accuracy {measured_accuracy:.1%}, {key.replace('_', ' ')} fell {drop:.1%} ({fell:.1e} nats) over the "
                  f"last {PLATEAU_EPOCHS} epochs")
