"""sharpness.measuring.plateau_noise: batch-norm-only passes, windows judged by the criterion, the stored measurement."""

import json

import pytest
import torch

import sharpness.measuring.plateau_noise as plateau_noise
from sharpness.measuring.plateau_noise import noise_finding, noise_table, windows
from sharpness.training.train import RunConfig, load_trainer, measurement_images, train

QUICK = dict(dataset="digits", max_train_samples=128, max_test_samples=64, batch_size=32, device="cpu", epochs=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run of a network with batch norm (simple_cnn) and one without (vit_small), augmented."""
    runs_dir = tmp_path_factory.mktemp("runs")
    dirs = {}
    for arch in ("simple_cnn", "vit_small"):
        config = RunConfig(arch=arch, control="aug", runs_dir=str(runs_dir), **QUICK)
        train(config, progress=False)
        dirs[arch] = config.run_dir
    return dirs


def test_a_batchnorm_pass_moves_the_running_statistics_and_no_weight(trained):
    trainer, _ = load_trainer(trained["simple_cnn"])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.batchnorm_pass(epoch=1)
    after = trainer.model.state_dict()
    weights = {k for k, _ in trainer.model.named_parameters()}
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)
    moved = [k for k in after if k.endswith("running_mean") and not torch.equal(before[k], after[k])]
    assert moved, "no batch-norm running mean moved"


def test_frozen_losses_start_at_the_loss_training_recorded_and_move_only_with_batch_norm(trained):
    runs = {arch: plateau_noise.frozen_weight_losses(d, passes=3) for arch, d in trained.items()}
    for run in runs.values():  # the checkpoint is the last epoch's state: the same loss the criterion read
        assert run["frozen"][0] == pytest.approx(run["recorded"][-1], rel=1e-6)
        assert len(run["frozen"]) == 4
    assert len(set(runs["simple_cnn"]["frozen"])) > 1  # running statistics move the eval-mode loss
    assert len(set(runs["vit_small"]["frozen"])) == 1  # layer norm has no running statistics: nothing moves


def test_frozen_losses_are_those_of_the_stored_weights_on_the_measured_images(trained):
    """The first loss recomputed by hand from the checkpoint's network (eval mode, the measured images)."""
    trainer, _ = load_trainer(trained["simple_cnn"])
    images, labels = measurement_images(trainer.data, trainer.config)
    trainer.model.eval()
    with torch.no_grad():
        by_hand = torch.nn.functional.cross_entropy(trainer.model(trainer.data.normalise(images)), labels).item()
    assert plateau_noise.frozen_weight_losses(trained["simple_cnn"], passes=1)["frozen"][0] == pytest.approx(by_hand, rel=1e-5)


def test_windows_are_judged_by_the_criterions_rule():
    # 3% fall of 0.1 nats is 3e-3 nats: still falling; 3% of 0.01 is 3e-4 nats, under the 1e-3 floor: a plateau
    table = windows([0.100, 0.100, 0.100, 0.100, 0.100, 0.097, 0.098])
    assert list(table["start"]) == [0, 1]
    assert table["fall"].tolist() == pytest.approx([0.03, 0.02])
    assert table["still_falling"].tolist() == [True, True]
    assert windows([0.0100, 0.01, 0.01, 0.01, 0.01, 0.0097])["still_falling"].tolist() == [False]
    assert windows([0.100, 0.101, 0.099, 0.100, 0.101, 0.0985])["still_falling"].tolist() == [False]  # 1.5% < 2%
    assert windows([0.1, 0.1, 0.1]).empty  # shorter than one window


def document():
    run = dict(dataset="cifar10_folder", arch="cnn_mlp_wide", seed=0, batch_size=256, lr=0.01, epochs=360, train_images=800)
    return {"provenance": {"passes": 6}, "runs": [
        {**run, "control": "aug", "recorded": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
         "frozen": [0.100, 0.102, 0.099, 0.100, 0.101, 0.097, 0.096]},
        {**run, "control": "aug_sam", "recorded": [0.104, 0.103, 0.102, 0.101, 0.100, 0.099],
         "frozen": [0.100, 0.100, 0.101, 0.100, 0.100, 0.101, 0.100]},
    ]}


def test_noise_table_and_sentence_by_hand():
    table = noise_table(document()).set_index("control")
    # aug: windows 0.100 -> 0.097 (3%) and 0.102 -> 0.096 (5.9%); aug_sam: 0.100 -> 0.101 (-1%), 0.100 -> 0.100
    assert table.loc["aug", "largest_fall"] == pytest.approx(0.006 / 0.102)
    assert table.loc["aug", "largest_fall_nats"] == pytest.approx(0.006)
    assert table.loc["aug_sam", "largest_rise"] == pytest.approx(0.01)
    assert table["still_falling"].to_dict() == {"aug": 2, "aug_sam": 0}
    assert table.loc["aug_sam", "trained_fall"] == pytest.approx(0.005 / 0.104)
    sentence = noise_finding(noise_table(document()))
    assert sentence.startswith("With the weights of 2 finished runs (aug, aug_sam) frozen")
    assert "fell by up to 5.9% (and by at most 6.0e-03 nats) and rose by up to 1.0%" in sentence
    assert "2 of 4 such windows as still falling, in 1 of the 2 runs (aug): a run can fail" in sentence
    quiet = document()
    quiet["runs"] = quiet["runs"][1:]
    assert "0 of 2 such windows as still falling, in 0 of the 1 runs: at this threshold the rule clears" in noise_finding(
        noise_table(quiet))


@pytest.mark.parametrize("field, value, message", [
    ("control", "<script>", "control '<script>' is not one of"),
    ("arch", "<i>net</i>", "arch '<i>net</i>' is not one of"),
    ("dataset", "../cifar", "dataset '../cifar' may not name a file"),
    ("seed", "<b>0</b>", "seed '<b>0</b>' is not a finite number"),
    ("frozen", [0.1, "nan"], "frozen 'nan' is not a finite number"),
    ("recorded", [], r"recorded \[\] is not a list of losses"),
])
def test_a_stored_measurement_with_a_foreign_value_is_refused(tmp_path, field, value, message):
    bad = document()
    bad["runs"][0][field] = value
    path = tmp_path / "plateau_noise.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=message):
        plateau_noise.load(path)
    path.write_text(json.dumps(document()))
    assert plateau_noise.load(path)["runs"][0]["control"] == "aug"


def test_a_stored_measurement_without_runs_is_refused(tmp_path):
    path = tmp_path / "plateau_noise.json"
    path.write_text(json.dumps({"provenance": {"passes": 6}, "runs": []}))
    with pytest.raises(ValueError, match="holds no measured runs"):
        plateau_noise.load(path)


def test_the_command_resumes_and_refuses_what_it_cannot_measure(trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "minimum" / "noise.json"  # a folder the command makes
    with pytest.raises(ValueError, match="--passes 2 makes no window"):
        plateau_noise.main([str(trained["simple_cnn"]), "--passes", "2", "--out", str(out)])
    assert plateau_noise.main([str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "not finished" in capsys.readouterr().err
    measured = []
    real = plateau_noise.frozen_weight_losses
    monkeypatch.setattr(plateau_noise, "frozen_weight_losses",
                        lambda run_dir, passes, data_dir: measured.append(run_dir) or real(run_dir, passes, data_dir))
    assert plateau_noise.main([str(trained["simple_cnn"]), "--passes", "5", "--out", str(out)]) == 0
    assert plateau_noise.main([*map(str, trained.values()), "--passes", "5", "--out", str(out)]) == 0
    assert measured == [trained["simple_cnn"], trained["vit_small"]]  # the first run was not measured again
    stored = plateau_noise.load(out)
    assert [run["arch"] for run in stored["runs"]] == ["simple_cnn", "vit_small"]
    assert stored["provenance"]["passes"] == 5 and len(stored["runs"][1]["frozen"]) == 6
    with pytest.raises(ValueError, match="measured with --passes 5, not 6: give that --passes to add to it"):
        plateau_noise.main([str(trained["simple_cnn"]), "--passes", "6", "--out", str(out)])
    assert plateau_noise.load(out) == stored  # nothing measured earlier is lost


def test_all_windows_label_each_window_with_its_run():
    frozen = plateau_noise.all_windows(document())
    assert frozen[["control", "start"]].values.tolist() == [["aug", 0], ["aug", 1], ["aug_sam", 0], ["aug_sam", 1]]
    assert frozen["fall_nats"].tolist() == pytest.approx([0.003, 0.006, -0.001, 0.0])


def test_the_figure_draws_every_window_and_the_trained_fall_per_run_beside_the_threshold():
    from sharpness.book.figures.training import plateau_noise as figure_of

    figure = figure_of(document(), "title")
    frozen, trained = figure.data[0], figure.data[1]  # the aug run: its two windows, then its training's last epochs
    assert list(frozen.x) == pytest.approx([3.0, 100 * 0.006 / 0.102])  # 0.100 -> 0.097, 0.102 -> 0.096
    assert list(frozen.customdata) == pytest.approx([0.003, 0.006])
    assert list(trained.x) == pytest.approx([0.0]) and len(figure.data) == 4
    assert [shape.x0 for shape in figure.layout.shapes] == [2.0]
