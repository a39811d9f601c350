"""sharpness.studies.sweep: a tiny grid (CPU, digits) on worker processes and on a local Ray, skipping finished runs,
reporting failures."""

import json

import pytest

from sharpness.studies import registry, store, sweep

pytestmark = pytest.mark.slow
CHEAP_MEASURES = ("test_accuracy", "test_ece")


def tiny_grid(runs_dir, **changes):
    settings = dict(
        datasets=("digits",), archs=("simple_cnn",), controls=("baseline", "baseline_sam"), seeds=(0,),
        epochs=1, runs_dir=runs_dir, measures=CHEAP_MEASURES, train_options={"max_train_samples": 256},
    )
    return registry.Grid(**{**settings, **changes})


def start_ray():
    """A local Ray, or a skip that says why Ray itself could not start. Ray waits a fixed 30 s for its
    node (ray/_private/node.py); on a loaded machine that can pass, so three tries before giving up."""
    ray = pytest.importorskip("ray")
    errors = []
    for _ in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            return ray
        except Exception as error:  # Ray raises a bare Exception for a node that timed out during startup
            errors.append(f"{type(error).__name__}: {error}")
            ray.shutdown()
    pytest.skip(f"Ray could not start on this machine (3 tries): {errors[-1]}")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep of the tiny grid on the local backend (worker processes: no service that must start in
    time), then the same sweep again (shared by the tests below)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    grid = tiny_grid(runs_dir)
    first = sweep.run_sweep(grid, backend="local", num_cpus=2, progress=False)
    stamps = {path: path.stat().st_mtime_ns for path in runs_dir.rglob("*.json")}
    second = sweep.run_sweep(grid, backend="local", num_cpus=2, progress=False)
    return grid, first, second, stamps


def test_local_sweep_trains_and_evaluates_every_run(swept):
    grid, first, _, _ = swept
    assert not first.failed, first
    assert len(first.completed) == first.total == 2
    for config in grid.configs():
        assert sweep.run_state(config.run_dir) == "done"
        # each run is a papermill execution of notebooks/train.ipynb where papermill is there
        assert (config.run_dir / "train.out.ipynb").is_file() == sweep.papermill_available()
    runs = sweep.grid_runs(grid)
    assert sorted(runs["control"]) == ["baseline", "baseline_sam"]
    assert runs["test_accuracy"].between(0, 1).all()


def test_ray_sweep_trains_and_evaluates_a_run(tmp_path):
    ray = start_ray()
    try:
        grid = tiny_grid(tmp_path / "runs", controls=("baseline_sam",))
        report = sweep.run_sweep(grid, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert not report.failed, report
    assert len(report.completed) == report.total == 1
    (config,) = grid.configs()
    assert sweep.run_state(config.run_dir) == "done"


def test_rerun_skips_finished_runs_without_touching_them(swept):
    grid, _, second, stamps = swept
    assert second.completed == [] and len(second.skipped) == 2 and not second.failed
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_grid_expands_rho_only_for_sam_controls(tmp_path):
    grid = registry.Grid(controls=None, seeds=(0, 1), rhos=(0.05, 0.5), runs_dir=tmp_path)
    configs = grid.configs()
    # 3 plain controls x 2 seeds + 3 SAM controls x 2 seeds x 2 rhos
    assert len(configs) == 3 * 2 + 3 * 2 * 2
    run_dirs = [str(c.run_dir) for c in configs]
    assert len(set(run_dirs)) == len(run_dirs)
    off_default = [c for c in configs if c.rho == 0.5]
    assert all(c.control.endswith("sam") and "rho0.5" in str(c.run_dir) for c in off_default)


def test_command_line_radii():
    assert sweep.parse_rhos(["paper"]) == registry.PAPER_RHOS
    assert sweep.parse_rhos(["0.5", "0.05"]) == (0.5, 0.05)
    with pytest.raises(ValueError, match="'big'"):
        sweep.parse_rhos(["big"])


def test_grid_rejects_unknown_controls_and_rhos(tmp_path):
    with pytest.raises(ValueError, match="'sgd'"):
        registry.Grid(controls=("sgd",), runs_dir=tmp_path)
    with pytest.raises(ValueError, match="positive"):
        registry.Grid(rhos=(0.0,), runs_dir=tmp_path)
    with pytest.raises(ValueError, match="'dask'"):
        sweep.run_sweep(registry.Grid(runs_dir=tmp_path), backend="dask")


def test_failures_are_reported_kept_and_retried_only_on_request(tmp_path):
    # A missing data folder makes training fail; the sweep reports it instead of raising.
    grid = tiny_grid(tmp_path / "runs", datasets=("cifar10_folder",), controls=("baseline",),
                     data_dir=tmp_path / "no-such-data")
    first = sweep.run_sweep(grid, backend="serial", use_papermill=False, progress=False)
    (run_dir, error), = first.failed.items()
    assert "no-such-data" in error or "cifar10" in error
    assert json.loads((tmp_path / "runs").rglob(sweep.FAILURE_FILE).__next__().read_text())["error"] == error
    again = sweep.run_sweep(grid, backend="serial", use_papermill=False, progress=False)
    assert again.pending_failed == [run_dir] and not again.failed and not again.completed
    retried = sweep.run_sweep(grid, backend="serial", use_papermill=False, retry_failed=True, progress=False)
    assert list(retried.failed) == [run_dir]


def test_cli_reports_and_writes_a_grid_summary_with_provenance(swept, tmp_path, capsys):
    grid, _, _, _ = swept
    summary = tmp_path / "grid.json"
    from sharpness.__main__ import main as command_line

    code = command_line([
        "sweep", "--controls", "baseline", "baseline_sam", "--epochs", "1", "--runs-dir", str(grid.runs_dir),
        "--backend", "serial", "--measures", *CHEAP_MEASURES, "--results", str(summary),
    ])
    assert code == 0
    assert "2 already done" in capsys.readouterr().out
    runs, provenance = store.load_grid(summary)
    assert len(runs) == 2 and provenance["settings"]["epochs"] == 1


def test_chapters_read_committed_grids_before_training_offline(swept, tmp_path):
    grid, _, _, _ = swept
    runs = sweep.grid_runs(grid)
    store.save_grid(runs, tmp_path / "digits_simple_cnn.json", settings={"epochs": 1}, data="digits")
    store.save_grid(runs[runs["control"] == "baseline_sam"], tmp_path / "digits_simple_cnn_rho.json",
                      settings={"rhos": [0.05]}, data="digits")
    (tmp_path / "bench_grid.json").write_text("{}")  # a benchmark file is not a grid
    controls = sweep.load_study("controls", results_dir=tmp_path)
    rho = sweep.load_study("rho", results_dir=tmp_path)
    assert not controls.offline and len(controls.runs) == 2 and len(rho.runs) == 1
    assert sorted(controls.history["control"].unique()) == ["baseline", "baseline_sam"]
    assert controls.provenance["data"] == "digits"


def test_offline_rho_grid_sweeps_sam_on_the_baseline():
    configs = registry.offline_grid("rho", seeds=(0, 1)).configs()
    assert {(c.control, c.rho) for c in configs} == {("baseline_sam", rho) for rho in registry.PAPER_RHOS}
    assert len(configs) == len(registry.PAPER_RHOS) * 2
    with pytest.raises(ValueError, match="'landscape'"):
        registry.offline_grid("landscape")
