"""Bring a campaign archive home: `python -m sharpness campaign-import OUT/campaign.tar.gz`.

The archive (written by `sharpness.studies.campaign`) holds a manifest with its provenance (machine, GPU, torch,
commit, date, tier "gpu" or "cpu") and the finished summaries. They land where the chapters read:

| archive | results/ |
|---|---|
| `grid/<dataset>_<arch>.json` (+ `.history.csv`) | `campaign/<dataset>_<arch>.json`, merged with runs imported before |
| `batch_lr/<dataset>_<arch>.json` | `campaign/batch_lr/<dataset>_<arch>.json`, merged likewise |
| `predictions/*.npy` | `campaign/predictions/` (disagreement across seeds from different machines) |
| `bench/*.json` | `campaign/bench/`; a GPU's `grid.json` also as `bench_grid.json` (the results chapter's) |
| `toy/<device>_<preset>/` | `toy_fit/<tier>_<preset>/` |
| `landscapes/...` | `landscapes/...` |
| `manifest.json` | `campaign/imports/<date>_<host>.json` |

Every grid's provenance gets the campaign's (with `tier`), so `sharpness.studies.sweep.load_study` prefers GPU
grids to the CPU study and both to the offline stand-in; a lease's measured figures (img/s per run,
aggregate img/s, seconds per measure, admission decisions) ride along under `lease` and are read back
with `lease_figures`. Runs already imported are kept, not replaced.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import runs
from ..core.paths import RESULTS_DIR
from . import store
from .campaign import ARCHIVE_NAME, CAMPAIGN_RESULTS, MANIFEST, prediction_name, run_key


def _merge_grid(incoming: Path, target: Path, campaign: dict, predictions_dir: Path) -> tuple[int, int]:
    """Merge the grid file `incoming` into `target` (kept runs win); returns (runs added, runs in all)."""
    document = runs.read_json(incoming)
    new_rows = document["runs"]
    old_rows, history = [], pd.DataFrame()
    earlier = []
    if target.is_file():
        old = runs.read_json(target)
        old_rows, earlier = old["runs"], [*old["provenance"].get("earlier", []), _without_earlier(old["provenance"])]
        history = store.load_history(target)
    known = {run_key(row) for row in old_rows}
    added = [row for row in new_rows if run_key(row) not in known]
    merged = pd.DataFrame([*old_rows, *added])
    merged = _with_disagreement(merged, predictions_dir)
    provenance = {**document["provenance"], **campaign, "earlier": earlier}
    runs.atomic_write_json(target, {"provenance": provenance, "runs": json.loads(merged.to_json(orient="records"))})
    incoming_history = store.history_path(incoming)
    if incoming_history.is_file():
        new_history = pd.read_csv(incoming_history)
        keys = {(row["control"], int(row["seed"])) for row in added}
        new_history = new_history[[(c, int(s)) in keys for c, s in zip(new_history["control"], new_history["seed"])]]
        runs.atomic_write_text(store.history_path(target), pd.concat([history, new_history], ignore_index=True).to_csv(index=False))
    return len(added), len(merged)


def _without_earlier(provenance: dict) -> dict:
    return {key: value for key, value in provenance.items() if key != "earlier"}


def _with_disagreement(frame: pd.DataFrame, predictions_dir: Path) -> pd.DataFrame:
    """Recompute `prediction_disagreement` per run over every seed of its group whose predictions are stored."""
    from ..measuring.evaluate import prediction_disagreement

    if frame.empty:
        return frame
    frame = frame.copy()
    frame["prediction_disagreement"] = np.nan
    group_keys = [key for key in ("dataset", "arch", "control", "rho", "epochs", "batch_size", "lr") if key in frame.columns]
    for _, group in frame.groupby(group_keys, dropna=False):
        stored = {index: predictions_dir / f"{prediction_name(row)}.npy" for index, row in group.iterrows()}
        arrays = {index: np.load(path) for index, path in stored.items() if path.is_file()}
        if len(arrays) < 2:
            continue
        import torch

        tensors = {index: torch.from_numpy(array.astype(np.int64)) for index, array in arrays.items()}
        for index, own in tensors.items():
            frame.loc[index, "prediction_disagreement"] = float(np.mean(
                [prediction_disagreement([own, other]) for j, other in tensors.items() if j != index]))
    return frame


def import_archive(archive: str | Path, results_dir: str | Path = RESULTS_DIR) -> list[Path]:
    """Unpack `archive` into `results_dir` (see the module's table); returns the files written."""
    archive, results_dir = Path(archive), Path(results_dir)
    if not archive.is_file():
        raise FileNotFoundError(f"no campaign archive at {archive}: the campaign writes {ARCHIVE_NAME} into its --out folder")
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="campaign-import-") as scratch:
        try:
            with tarfile.open(archive) as pack:
                pack.extractall(scratch, filter="data")
        except tarfile.TarError as error:
            raise ValueError(f"{archive} is not a campaign archive ({error}); fetch {ARCHIVE_NAME} again") from None
        source = Path(scratch) / "campaign"
        if not (source / MANIFEST).is_file():
            raise ValueError(f"{archive} has no campaign/{MANIFEST}: not written by `python -m sharpness campaign`")
        manifest = runs.read_json(source / MANIFEST)
        provenance = manifest["provenance"]
        tier = provenance["tier"]
        campaign = {"tier": tier, "campaign": provenance, **({"lease": manifest["lease"]} if "lease" in manifest else {})}
        home = results_dir / CAMPAIGN_RESULTS

        for path in sorted((source / "predictions").glob("*.npy")):  # first: the merges below read them
            written.append(_copy(path, home / "predictions" / path.name))
        for folder, target_dir in (("grid", home), ("batch_lr", home / "batch_lr")):
            for path in sorted((source / folder).glob("*.json")):
                target = target_dir / path.name
                added, total = _merge_grid(path, target, campaign, home / "predictions")
                print(f"{target}: {added} runs added, {total} in all")
                written += [target, store.history_path(target)]
        for path in sorted((source / "bench").glob("*.json")):
            document = {**runs.read_json(path), "campaign": provenance}
            written.append(runs.atomic_write_json(home / "bench" / path.name, document))
            if path.name == "grid.json" and tier == "gpu":
                written.append(runs.atomic_write_json(store.BENCH_GRID_JSON if results_dir == RESULTS_DIR
                                                      else results_dir / "bench_grid.json", document))
        for folder in sorted(path for path in (source / "toy").glob("*") if (path / "records.csv").is_file()):
            preset = folder.name.split("_", 1)[-1]
            target = results_dir / "toy_fit" / f"{tier}_{preset}"
            for path in folder.iterdir():
                written.append(_copy(path, target / path.name))
        for path in sorted((source / "landscapes").rglob("*.json")):
            written.append(_copy(path, results_dir / "landscapes" / path.relative_to(source / "landscapes")))
        stamp = provenance["date"].replace(":", "").replace("+0000", "Z")
        written.append(runs.atomic_write_json(home / "imports" / f"{stamp}_{provenance['host']}.json", manifest))
    return written


def lease_figures(provenance: dict) -> list[dict]:
    """The measured figures of every lease behind an imported grid (its provenance), newest first: each
    with "runs" (img/s per run, seconds per measure), "aggregate_images_per_second", "measure_seconds"."""
    return [entry["lease"] for entry in [provenance, *reversed(provenance.get("earlier", []))] if entry.get("lease")]


def _copy(source: Path, target: Path) -> Path:
    """Copy one file into results/ atomically (a reader never sees half of it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as handle:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle)
    Path(handle.name).replace(target)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", help=f"the campaign's {ARCHIVE_NAME} (from its --out folder)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))


def main(args: argparse.Namespace) -> int:
    written = import_archive(args.archive, args.results_dir)
    print(f"{len(written)} files written under {args.results_dir}")
    return 0
