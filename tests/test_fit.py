"""The toy-fit study: batched training against a sequential reference, measures against exact Hessians."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sharpness.toys import fit, toy

TINY = (2, 5, 4, 1)  # 42 parameters: exact Hessians are cheap


def tiny_problem(loss="mse", networks=3, points=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(points, 2, generator=generator, dtype=torch.float64) * 4 - 2
    if loss == "mse":
        targets = torch.stack([toy.get(name)(inputs[:, 0], inputs[:, 1]) for name in ("sphere", "booth", "rastrigin")])
    else:
        targets = (torch.rand(networks, points, generator=generator) > 0.5).to(torch.float64)
    objective = fit.Objective(inputs, targets[:networks], loss=loss, sizes=TINY)
    flat = fit.initial_parameters(range(networks), TINY, torch.float64)
    return objective, flat


def test_parameter_layout_matches_the_paper_mlp():
    assert fit.parameter_count() == 4417  # 2*64+64 + 64*64+64 + 64+1
    mlp = fit.reference_mlp(3, dtype=torch.float64)
    flat = fit.initial_parameters([3], dtype=torch.float64)
    inputs = torch.randn(17, 2, dtype=torch.float64)
    torch.testing.assert_close(fit.forward(flat, inputs)[0], mlp(inputs).squeeze(-1), rtol=0, atol=1e-12)


def test_batched_adam_equals_independent_sequential_runs():
    objective, flat = tiny_problem()
    steps, lr = 25, 1e-2
    trainer = fit.BatchedTrainer(objective, flat, lr)
    for epoch in range(steps):
        trainer.step(epoch)
    for row in range(flat.shape[0]):
        mlp = fit.reference_mlp(row, TINY, torch.float64)
        optimizer = torch.optim.Adam(mlp.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(mlp(objective.inputs).squeeze(-1), objective.targets[row])
            loss.backward()
            optimizer.step()
        torch.testing.assert_close(trainer.flat[row].detach(), fit.flatten_module(mlp), rtol=1e-6, atol=1e-9)


def test_targets_are_caught_at_the_first_epoch_the_loss_is_below_them():
    objective, flat = tiny_problem()
    trainer = fit.BatchedTrainer(objective, flat, 1e-2, targets=(1e9, 30.0, 1e-12))
    history, parameters = [], []
    for epoch in range(60):
        parameters.append(trainer.flat.detach().clone())
        history.append(trainer.step(epoch))
    history = torch.stack(history)  # (epochs, networks)
    for index, target in enumerate((1e9, 30.0, 1e-12)):
        for row in range(flat.shape[0]):
            below = torch.nonzero(history[:, row] <= target)
            expected = int(below[0]) if len(below) else -1
            assert int(trainer.reached_epoch[index, row]) == expected
            if expected >= 0:
                torch.testing.assert_close(trainer.snapshots[index, row], parameters[expected][row])
    assert (trainer.reached_epoch[0] == 0).all() and (trainer.reached_epoch[2] == -1).all()


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_hessian_products_and_estimators_match_exact_hessians(loss):
    objective, flat = tiny_problem(loss)
    hessians = fit.exact_hessians(objective, flat)  # (B, P, P), autograd reference
    vectors = torch.randn(flat.shape, dtype=torch.float64)
    products = fit.HessianOperator(objective, flat)(vectors)
    torch.testing.assert_close(products, torch.einsum("bij,bj->bi", hessians, vectors), rtol=1e-10, atol=1e-10)

    eigenvalues = torch.linalg.eigvalsh(hessians)
    dominant = eigenvalues.gather(1, eigenvalues.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    estimate = fit.top_eigenvalue(objective, flat, iterations=2000, tolerance=1e-12)
    torch.testing.assert_close(estimate, dominant, rtol=1e-4, atol=1e-8)

    samples = 3000
    trace = torch.diagonal(hessians, dim1=1, dim2=2).sum(dim=1)
    off_diagonal = hessians - torch.diag_embed(torch.diagonal(hessians, dim1=1, dim2=2))
    standard_error = torch.sqrt(2 * off_diagonal.pow(2).sum(dim=(1, 2)) / samples)  # Rademacher variance
    error = (fit.hutchinson_trace(objective, flat, samples=samples) - trace).abs()
    assert (error <= 5 * standard_error + 1e-12).all(), (error, standard_error)


def per_sample_directional_gradients(objective, flat):
    """<theta, grad_theta l_i> by reverse mode, one sample at a time: an independent reference."""
    values = torch.zeros(objective.targets.shape, dtype=flat.dtype)
    for row in range(flat.shape[0]):
        for i in range(objective.targets.shape[1]):
            theta = flat[row].detach().clone().requires_grad_(True)
            output = fit.forward(theta[None], objective.inputs[i : i + 1], objective.sizes)[0, 0]
            sample_loss = fit.per_sample_loss(objective.loss)(output, objective.targets[row, i])
            (gradient,) = torch.autograd.grad(sample_loss, theta)
            values[row, i] = gradient @ theta.detach()
    return values


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_fisher_rao_forms(loss):
    objective, flat = tiny_problem(loss, points=12)
    reference = per_sample_directional_gradients(objective, flat).pow(2).mean(dim=1).sqrt()
    torch.testing.assert_close(fit.fisher_rao_exact(objective, flat), reference, rtol=1e-10, atol=1e-12)

    # Biases break homogeneity: the closed form and the exact quantity differ ...
    assert not torch.allclose(fit.fisher_rao(objective, flat), reference, rtol=1e-3)
    # ... and agree on a bias-free network, where <theta, grad f> = depth * f.
    bias_free = flat.clone()
    for _, bias in fit.unflatten(bias_free, TINY):
        bias.zero_()
    torch.testing.assert_close(
        fit.fisher_rao(objective, bias_free), fit.fisher_rao_exact(objective, bias_free), rtol=1e-10, atol=1e-12
    )


def test_run_records_every_network_and_marks_missed_targets():
    config = fit.FitConfig(
        functions=("sphere", "rosenbrock"), seeds=(0, 1), epochs=30, train_points=64, test_points=32,
        target_losses=(1e12, 1e-9), measures=fit.MeasureSettings(power_iterations=3, hutchinson_samples=2),
    )
    result = fit.run(config, progress=False)
    over_training = result.over_training()
    assert sorted(over_training["epoch"].unique()) == config.record_epochs()
    assert len(over_training) == 4 * len(config.record_epochs())
    targets = result.at_targets()
    easy, impossible = targets[targets["target"] == 1e12], targets[targets["target"] == 1e-9]
    assert easy["reached"].all() and (easy["epoch"] == 0).all()
    assert not impossible["reached"].any() and impossible["top_eigenvalue"].isna().all()
    # The epoch-0 record and the target-at-epoch-0 record describe the same parameters.
    start = over_training[over_training["epoch"] == 0].set_index(["function", "seed"])
    np.testing.assert_allclose(
        easy.set_index(["function", "seed"]).loc[start.index, "train_loss"], start["train_loss"], rtol=1e-6
    )
    np.testing.assert_allclose(over_training["gap"], over_training["test_loss"] - over_training["train_loss"])


def test_save_and_load_round_trip(tmp_path):
    config = fit.FitConfig(functions=("booth",), seeds=(0,), epochs=3, train_points=16, test_points=8,
                           measures=fit.MeasureSettings(power_iterations=2, hutchinson_samples=1))
    result = fit.run(config, progress=False)
    loaded = fit.FitResult.load(result.save(tmp_path / "fit"))
    assert loaded.config == config
    assert loaded.provenance["commit"] == result.provenance["commit"]
    np.testing.assert_allclose(loaded.records["train_loss"], result.records["train_loss"])


def test_bad_input_is_rejected_with_the_accepted_values():
    with pytest.raises(ValueError, match="accepted: sphere"):
        fit.FitConfig(functions=("spherical",))
    with pytest.raises(ValueError, match="quick, medium, full"):
        fit.preset("fast")
    with pytest.raises(ValueError, match="accepted: mse, bce"):
        fit.per_sample_loss("hinge")
    with pytest.raises(ValueError, match="4417"):
        fit.forward(torch.zeros(1, 10), torch.zeros(3, 2))


def test_record_epochs_are_log_spaced_and_include_the_ends():
    epochs = fit.FitConfig(epochs=10**6, records_per_decade=4).record_epochs()
    assert epochs[0] == 0 and epochs[-1] == 10**6 and 10**3 in epochs and len(epochs) == 1 + 25
    assert all(b > a for a, b in zip(epochs, epochs[1:]))


def test_rank_agreement_uses_the_analytic_curvature_of_chapter_one():
    curvature = fit.analytic_curvature("max_eigenvalue")
    assert math.isclose(curvature["rosenbrock"], 1001.6, rel_tol=1e-4)
    assert math.isclose(curvature["sphere"], 2.0)


def synthetic_result(sharpness_of_function):
    """A FitResult whose networks' sharpness at every target is a given function of the target function."""
    rows = []
    for name in toy.FUNCTIONS:
        for seed in (0, 1):
            for target in (100.0, 1.0):
                value = sharpness_of_function(name) * (1 + 0.01 * seed)
                reached = not (target == 1.0 and name == "rosenbrock" and seed == 1)
                rows.append({"kind": "target", "function": name, "seed": seed, "target": target,
                             "epoch": 10.0 if reached else np.nan, "reached": reached,
                             **{m: value if reached else np.nan for m in fit.MEASURES}})
    config = fit.FitConfig(seeds=(0, 1), target_losses=(100.0, 1.0))
    return fit.FitResult(config, pd.DataFrame(rows), {"machine": "test", "date": "", "commit": ""})


def test_rank_agreement_is_one_for_sharpness_that_follows_the_curvature_and_minus_one_reversed():
    curvature = fit.analytic_curvature("max_eigenvalue")
    following = fit.rank_agreement(synthetic_result(lambda n: 3 * curvature[n])).set_index("target")
    reversed_ = fit.rank_agreement(synthetic_result(lambda n: 1 / curvature[n])).set_index("target")
    assert following.loc[100.0, "spearman"] == pytest.approx(1.0) and following.loc[100.0, "functions"] == 7
    assert reversed_.loc[100.0, "spearman"] == pytest.approx(-1.0)
    # Rosenbrock missed the last target in one seed: it drops out of that comparison.
    assert following.loc[1.0, "functions"] == 6


def test_figures_label_their_settings_and_skip_unreached_targets():
    from sharpness.book.figures import fit as fit_figures

    result = synthetic_result(lambda n: fit.analytic_curvature()[n])
    figure = fit_figures.ordering_figure(result)
    assert "2 seeds" in figure.layout.title.text
    assert [len(trace.x) for trace in figure.data] == [7, 6]
    assert "ρ = 1.00" in figure.data[0].name
    at_targets = fit_figures.sharpness_at_targets(result)
    rosenbrock = [t for t in at_targets.data if t.name == "Rosenbrock" and t.xaxis == "x"][0]
    assert list(rosenbrock.customdata[:, 0]) == [2, 1]  # seeds reached per target, shown on hover


def test_orderings_list_functions_from_flattest_to_sharpest():
    curvature = fit.analytic_curvature()
    table = fit.orderings(synthetic_result(lambda n: 1 / curvature[n])).set_index("target")
    assert table.loc[100.0, "chapter 1"].startswith("sphere < three_hump_camel < booth")
    assert table.loc[100.0, "networks"].endswith("booth < three_hump_camel < sphere")
    assert "rosenbrock" not in table.loc[1.0, "networks"]


def test_command_line_saves_a_loadable_run(tmp_path):
    argv = ["--preset", "quick", "--epochs", "2", "--seeds", "1", "--points", "16", "--out", str(tmp_path / "cli")]
    assert fit.main(argv) == 0
    loaded = fit.FitResult.load(tmp_path / "cli")
    assert loaded.config.epochs == 2 and loaded.config.seeds == (0,) and loaded.config.train_points == 16
    assert set(loaded.records["function"]) == set(toy.FUNCTIONS)


def test_batched_training_in_float32_on_the_toy_functions_matches_sequential_models():
    """The study's own setting (paper MLP, float32, all seven functions): same parameters to float32 rounding."""
    config = fit.FitConfig(seeds=(0,), train_points=128, test_points=1)
    data = fit.make_data(config)
    objective = fit.Objective(data.train_inputs, data.train_targets)
    trainer = fit.BatchedTrainer(objective, fit.initial_parameters(range(7)), lr=1e-3)
    for epoch in range(60):
        trainer.step(epoch)
    for row in range(7):
        mlp = fit.reference_mlp(row)
        optimizer = torch.optim.Adam(mlp.parameters(), lr=1e-3)
        for _ in range(60):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(mlp(objective.inputs).squeeze(-1), objective.targets[row]).backward()
            optimizer.step()
        torch.testing.assert_close(trainer.flat[row].detach(), fit.flatten_module(mlp), rtol=1e-5, atol=1e-6)
