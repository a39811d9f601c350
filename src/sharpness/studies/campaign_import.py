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

The archive comes from another machine, so it is data, never instructions: its headers are read first
(sizes capped, only plain files under campaign/ with plain names), then its manifest (tier, date and host
checked, since they become file names), and only then is anything unpacked. Every write is planned first,
must resolve inside --results-dir, and a file already there with other content (a result of another
source) is refused unless --replace is given; then all are written.
"""

from __future__ import annotations

import argparse
import json
import re
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ..core import runs, untrusted
from ..core.paths import RESULTS_DIR
from . import registry, store
from .campaign import ARCHIVE_NAME, CAMPAIGN_RESULTS, MANIFEST, prediction_name
from .store import run_key

DEVICE_RETURN_LIMIT = 64 * 2**20  # the most a device machine returns: no genuine archive is larger
MEMBER_LIMIT = DEVICE_RETURN_LIMIT  # the most one unpacked file may weigh
UNPACKED_LIMIT = 4 * DEVICE_RETURN_LIMIT  # the most all unpacked files together may weigh
MEMBER_COUNT_LIMIT = 20_000
MANIFEST_LIMIT = 2**20
# The manifest's date as `campaign.Campaign.manifest` writes it (UTC, seconds).
DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\+00:00|Z)")


class ImportConflict(ValueError):
    """The archive would replace results already in results/ with other content."""


def _checked_members(pack: tarfile.TarFile, archive: Path) -> tuple[list[tarfile.TarInfo], dict]:
    """Read every header (nothing is written yet): plain files and folders under campaign/ with plain names,
    within the size caps; return the members to unpack and the checked manifest."""
    members, total, manifest = [], 0, None
    for count, member in enumerate(pack, start=1):
        where = f"{archive}: member {member.name!r}"
        if count > MEMBER_COUNT_LIMIT:
            raise ValueError(f"{archive} holds over {MEMBER_COUNT_LIMIT} files: not a campaign archive; refused")
        parts = PurePosixPath(member.name).parts
        if not parts or parts[0] != "campaign" or not (member.isfile() or member.isdir()) or member.issparse():
            raise ValueError(f"{where} is not a plain file or folder under campaign/: not a campaign archive; refused")
        if any(part.startswith(".") for part in parts[1:]):
            continue  # a temporary file the campaign left in staging: never unpacked
        for part in parts[1:]:
            untrusted.name(part, "file name", where)
        if member.size > MEMBER_LIMIT:
            raise ValueError(f"{where} would unpack to {member.size / 2**20:.0f} MiB, over the {MEMBER_LIMIT // 2**20} MiB "
                             "one file may weigh; refused (fetch the archive again)")
        total += member.size
        if total > UNPACKED_LIMIT:
            raise ValueError(f"{archive} would unpack to over {UNPACKED_LIMIT // 2**20} MiB; refused (fetch the archive again)")
        if member.name == f"campaign/{MANIFEST}":
            manifest = _checked_manifest(pack.extractfile(member).read(MANIFEST_LIMIT + 1), archive)
        members.append(member)
    if manifest is None:
        raise ValueError(f"{archive} has no campaign/{MANIFEST}: not written by `python -m sharpness campaign`")
    return members, manifest


def _checked_manifest(raw: bytes, archive: Path) -> dict:
    """The manifest, with the provenance fields that become file names checked (tier, date, host)."""
    where = f"{archive}: campaign/{MANIFEST}"
    if len(raw) > MANIFEST_LIMIT:
        raise ValueError(f"{where} is over {MANIFEST_LIMIT // 2**20} MiB: not a campaign manifest; refused")
    try:
        manifest = json.loads(raw)
        provenance = manifest["provenance"]
        tier, date, host = provenance["tier"], provenance["date"], provenance["host"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where} is not a campaign manifest ({error!r}); fetch {ARCHIVE_NAME} again") from None
    untrusted.name(tier, "provenance tier", where, accepted=registry.TIERS)
    if not isinstance(date, str) or not DATE.fullmatch(date):
        raise untrusted.UntrustedValueError(f"{where}: provenance date {date!r} is not a UTC date like "
                                            "2026-01-31T12:00:00+00:00; fix or remove that file")
    untrusted.name(host, "provenance host", where)
    return manifest


def _merge_grid(incoming: Path, target: Path, campaign: dict, prediction_dirs) -> tuple[dict, str | None, int, int]:
    """Merge the grid file `incoming` into `target` (kept runs win, duplicates collapse); returns (document,
    history CSV or None, runs added, runs in all)."""
    document = runs.read_json(incoming)
    new_rows = document["runs"]
    old_rows, history = [], pd.DataFrame()
    earlier = []
    if target.is_file():
        old = runs.read_json(target)
        old_rows, earlier = old["runs"], [*old["provenance"].get("earlier", []), _without_earlier(old["provenance"])]
        history = store.load_history(target)
    known = {run_key(row) for row in old_rows}
    added = []
    for row in new_rows:
        if run_key(row) not in known:  # a run twice in the archive (e.g. --seeds 0 0) is added once
            known.add(run_key(row))
            added.append(row)
    merged = pd.DataFrame([*old_rows, *added])
    merged = _with_disagreement(merged, prediction_dirs)
    provenance = {**document["provenance"], **campaign, "earlier": earlier}
    merged_document = {"provenance": provenance, "runs": json.loads(merged.to_json(orient="records"))}
    incoming_history, merged_history = store.history_path(incoming), None
    if incoming_history.is_file():
        new_history = pd.read_csv(incoming_history)
        keys = {(row["control"], int(row["seed"])) for row in added}
        new_history = new_history[[(c, int(s)) in keys for c, s in zip(new_history["control"], new_history["seed"])]]
        new_history = new_history.drop_duplicates(subset=[c for c in ("control", "seed", "rho", "epoch") if c in new_history])
        merged_history = pd.concat([history, new_history], ignore_index=True).to_csv(index=False)
    return merged_document, merged_history, len(added), len(merged)


def _without_earlier(provenance: dict) -> dict:
    return {key: value for key, value in provenance.items() if key != "earlier"}


def _with_disagreement(frame: pd.DataFrame, prediction_dirs) -> pd.DataFrame:
    """Recompute `prediction_disagreement` per run over every seed of its group whose predictions are stored
    (in the first of `prediction_dirs` that holds them)."""
    from ..measuring.evaluate import prediction_disagreement

    if frame.empty:
        return frame
    frame = frame.copy()
    frame["prediction_disagreement"] = np.nan
    group_keys = [key for key in ("dataset", "arch", "control", "rho", "epochs", "batch_size", "lr") if key in frame.columns]
    for _, group in frame.groupby(group_keys, dropna=False):
        stored = {index: next((folder / f"{prediction_name(row)}.npy" for folder in prediction_dirs
                               if (folder / f"{prediction_name(row)}.npy").is_file()), None)
                  for index, row in group.iterrows()}
        arrays = {index: _load_predictions(path) for index, path in stored.items() if path is not None}
        if len(arrays) < 2:
            continue
        import torch

        tensors = {index: torch.from_numpy(array.astype(np.int64)) for index, array in arrays.items()}
        for index, own in tensors.items():
            frame.loc[index, "prediction_disagreement"] = float(np.mean(
                [prediction_disagreement([own, other]) for j, other in tensors.items() if j != index]))
    return frame


def _load_predictions(path: Path) -> np.ndarray:
    """A stored prediction file: plain numbers only (a pickled array could run code)."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path} is not a plain array of predictions ({error}); remove it and import again") from None


def import_archive(archive: str | Path, results_dir: str | Path = RESULTS_DIR, replace: bool = False) -> list[Path]:
    """Unpack `archive` into `results_dir` (see the module's table); returns the files written.
    Raises ImportConflict, writing nothing, where a file there would get other content, unless `replace`."""
    archive, results_dir = Path(archive), Path(results_dir)
    if not archive.is_file():
        raise FileNotFoundError(f"no campaign archive at {archive}: the campaign writes {ARCHIVE_NAME} into its --out folder")
    if archive.stat().st_size > DEVICE_RETURN_LIMIT:
        raise ValueError(f"{archive} weighs over {DEVICE_RETURN_LIMIT // 2**20} MiB, more than a device returns; refused")
    with tempfile.TemporaryDirectory(prefix="campaign-import-") as scratch:
        try:
            with tarfile.open(archive) as pack:
                members, manifest = _checked_members(pack, archive)
                pack.extractall(scratch, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ValueError(f"{archive} is not a campaign archive ({error}); fetch {ARCHIVE_NAME} again") from None
        plan, merged, report = _plan(Path(scratch) / "campaign", manifest, results_dir)
        written = _write(plan, merged, results_dir, archive, replace)
    print("\n".join(report))
    return written


def lease_figures(provenance: dict) -> list[dict]:
    """The measured figures of every lease behind an imported grid (its provenance), newest first: each
    with "runs" (img/s per run, seconds per measure), "aggregate_images_per_second", "measure_seconds"."""
    return [entry["lease"] for entry in [provenance, *reversed(provenance.get("earlier", []))] if entry.get("lease")]


def _plan(source: Path, manifest: dict, results_dir: Path) -> tuple[dict[Path, bytes], set[Path], list[str]]:
    """Every file the import writes, with its content (nothing is written here); the grid files among them,
    which merge with what is there; and a line per grid saying how many runs it adds."""
    provenance = manifest["provenance"]
    tier = provenance["tier"]
    campaign = {"tier": tier, "campaign": provenance, **({"lease": manifest["lease"]} if "lease" in manifest else {})}
    home = results_dir / CAMPAIGN_RESULTS
    plan: dict[Path, bytes] = {}
    merged: set[Path] = set()
    report: list[str] = []
    as_json = lambda value: (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()  # noqa: E731

    for path in sorted((source / "predictions").glob("*.npy")):
        _load_predictions(path)
        plan[home / "predictions" / path.name] = path.read_bytes()
    prediction_dirs = (source / "predictions", home / "predictions")
    for folder, target_dir in (("grid", home), ("batch_lr", home / "batch_lr")):
        for path in sorted((source / folder).glob("*.json")):
            target = target_dir / path.name
            document, history, added, total = _merge_grid(path, target, campaign, prediction_dirs)
            report.append(f"{target}: {added} runs added, {total} in all")
            plan[target] = as_json(document)
            merged.add(target)
            if history is not None:
                plan[store.history_path(target)] = history.encode()
                merged.add(store.history_path(target))
    for path in sorted((source / "bench").glob("*.json")):
        document = as_json({**runs.read_json(path), "campaign": provenance})
        plan[home / "bench" / path.name] = document
        if path.name == "grid.json" and tier == "gpu":
            plan[store.BENCH_GRID_JSON if results_dir == RESULTS_DIR else results_dir / "bench_grid.json"] = document
    for folder in sorted(path for path in (source / "toy").glob("*") if (path / "records.csv").is_file()):
        preset = untrusted.name(folder.name.split("_", 1)[-1], "toy preset", f"archive folder toy/{folder.name}")
        for path in folder.iterdir():
            if path.is_file():
                plan[results_dir / "toy_fit" / f"{tier}_{preset}" / path.name] = path.read_bytes()
    for path in sorted((source / "landscapes").rglob("*.json")):
        plan[results_dir / "landscapes" / path.relative_to(source / "landscapes")] = path.read_bytes()
    stamp = provenance["date"].replace(":", "").replace("+0000", "Z")
    plan[home / "imports" / f"{stamp}_{provenance['host']}.json"] = as_json(manifest)
    return plan, merged, report


def _write(plan: dict[Path, bytes], merged: set[Path], results_dir: Path, archive: Path, replace: bool) -> list[Path]:
    """Check every planned write (inside results_dir; no other content over an existing file unless
    `replace`, grids excepted: they merge), then write them all atomically."""
    for target in plan:
        untrusted.inside(results_dir, target, str(archive))
    conflicts = [target for target, content in plan.items()
                 if target not in merged and target.is_file() and target.read_bytes() != content]
    if conflicts and not replace:
        listed = "\n  ".join(str(path) for path in conflicts)
        raise ImportConflict(f"{archive} would replace {len(conflicts)} results of another source (nothing was written):"
                             f"\n  {listed}\nkeep them (import nothing), or add --replace to take the archive's")
    written = []
    for target, content in plan.items():
        if target.is_file() and target.read_bytes() == content:
            continue
        written.append(runs.atomic_write_bytes(target, content))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", help=f"the campaign's {ARCHIVE_NAME} (from its --out folder)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--replace", action="store_true",
                        help="let the archive replace results already there with other content (refused without it)")


def main(args: argparse.Namespace) -> int:
    written = import_archive(args.archive, args.results_dir, replace=args.replace)
    print(f"{len(written)} files written under {args.results_dir}")
    return 0
