"""Which loss surfaces a page shows: the stored ones under results/landscapes, else surfaces of the offline runs.

The offline path trains the book's small CPU grid of one seed through the sweep (`sweep.load_study`, shared
with the results chapter) and draws the surfaces of its runs (`measuring.landscape`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..core.progress import tqdm
from ..core.threads import single_cpu_thread
from ..measuring.landscape import (
    STORED_SURFACES, ControlLandscape, Surface, choose, interpolation_of_runs, landscape_of_run, read_landscape_json, stored_landscapes
)
from ..training.controls import CONTROLS
from .registry import offline_grid
from .sweep import load_study


def offline_run_dirs(seed: int = 0, controls: Sequence[str] | None = None, progress: bool = True) -> dict[str, Path]:
    """The book's small CPU runs of one seed (the sweep's offline grid, shared with the results
    chapter), trained and evaluated by the sweep if they are not there yet. Run dirs by control."""
    grid = offline_grid("controls", seeds=(seed,))
    if controls is not None:
        grid = replace(grid, controls=tuple(controls))
    runs = load_study("controls", grid=grid, progress=progress).runs
    return {row.control: Path(row.run_dir) for row in runs.itertuples()}


def control_interpolation(
    seed: int = 0,
    control_a: str = "baseline",
    control_b: str = "aug_sam",
    *,
    resolution: int = 21,
    subset: int = 64,
    use_stored: bool = True,
    progress: bool = True,
    **evaluation,
) -> Surface:
    """Interpolation between two controls of one seed: stored (GPU) if there is one, else the offline runs."""
    if use_stored:
        pattern = f"*/*/seed{seed}/interpolation/{control_a}__{control_b}.json"
        for path in sorted(STORED_SURFACES.glob(pattern)):
            return read_landscape_json(path, Surface.from_dict)
    run_dirs = offline_run_dirs(seed, [control_a, control_b], progress=progress)
    with single_cpu_thread():  # the offline CPU path: one thread per process is fastest on a shared machine
        return interpolation_of_runs(run_dirs[control_a], run_dirs[control_b], resolution=resolution,
                                     subset=subset, progress=progress, **evaluation)


def control_landscapes(
    seed: int = 0,
    *,
    controls: Sequence[str] | None = None,
    resolution: int = 11,
    subset: int = 64,
    sam_draws: int = 20,
    directions_seed: int = 0,
    use_stored: bool = True,
    progress: bool = True,
    **evaluation,
) -> list[ControlLandscape]:
    """One surface per control of `seed`: the stored (GPU) ones when there are any, else the offline runs.

    The offline defaults (11 x 11 grid, 64 training images, 20 SAM draws) keep the book's build to a
    few CPU minutes; the paper's setting is resolution=51 over the training set, sam_draws=100.
    """
    wanted = list(CONTROLS if controls is None else controls)
    for control in wanted:
        choose(control, CONTROLS, "control")
    if use_stored:
        stored = [item for item in stored_landscapes(seed=seed) if item.control in wanted]
        if stored:
            first = stored[0]
            same_setting = [item for item in stored if (item.dataset, item.arch) == (first.dataset, first.arch)]
            return sorted(same_setting, key=lambda item: wanted.index(item.control))
    run_dirs = offline_run_dirs(seed, wanted, progress=progress)
    with single_cpu_thread():  # the offline CPU path: one thread per process is fastest on a shared machine
        return [
            replace(
                landscape_of_run(
                    run_dirs[control], resolution=resolution, subset=subset, sam_draws=sam_draws,
                    directions_seed=directions_seed, progress=progress, **evaluation,
                ),
                source="offline runs",
            )
            for control in tqdm(wanted, desc="surfaces", disable=not progress)
        ]
