"""Loss landscapes: direction normalisation, the origin, batched vs plain evaluation, interpolation."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from sharpness.measuring import landscape


def small_bn_net(seed: int = 0) -> nn.Module:
    """Conv + BN + residual-free head, with BN running statistics moved away from their defaults."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1, bias=False),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(20, 4),
    )
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 8, 8) * 2 + 0.5)
    return model.eval()


@pytest.fixture
def data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(37, 3, 8, 8, generator=generator), torch.randint(0, 4, (37,), generator=generator)


def reference_loss(model: nn.Module, directions, coefficients, images, labels):
    """Straightforward reference: write each point into a copy of the model and run it in eval mode."""
    probe = copy.deepcopy(model).eval()
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses, accuracies = [], []
    with torch.no_grad():
        for row in coefficients:
            for name, parameter in probe.named_parameters():
                parameter.copy_(base[name] + sum(c * d[name] for c, d in zip(row, directions)))
            logits = probe(images)
            losses.append(F.cross_entropy(logits, labels).item())
            accuracies.append((logits.argmax(1) == labels).float().mean().item())
    return np.array(losses), np.array(accuracies)


def test_every_filter_has_the_norm_of_the_weights_filter():
    model = small_bn_net()
    direction = landscape.filter_normalised_direction(model, generator=torch.Generator().manual_seed(3))
    checked = 0
    for name, weight in model.named_parameters():
        if weight.dim() < 2:
            continue
        for index in range(weight.shape[0]):
            assert direction[name][index].norm().item() == pytest.approx(weight[index].norm().item(), rel=1e-5)
            checked += 1
        # a rescaled Gaussian, not a copy of the weights
        assert not torch.allclose(direction[name], weight.detach())
    assert checked == 6 + 5 + 4


def test_one_dim_tensors_are_zero_by_default_and_optional():
    model = small_bn_net()
    one_dim_names = [name for name, p in model.named_parameters() if p.dim() == 1]
    assert len(one_dim_names) == 6  # first conv's bias, two BN weights and biases, the linear bias
    zero, random, weights = (
        landscape.filter_normalised_direction(model, generator=torch.Generator().manual_seed(0), one_dim=option)
        for option in ("zero", "random", "weights")
    )
    parameters = dict(model.named_parameters())
    for name in one_dim_names:
        assert torch.count_nonzero(zero[name]) == 0
        assert random[name].norm().item() == pytest.approx(parameters[name].norm().item(), rel=1e-5)
        assert torch.equal(weights[name], parameters[name].detach())
    for name in parameters.keys() - set(one_dim_names):  # the filters do not depend on the option
        assert torch.equal(zero[name], random[name]) and torch.equal(zero[name], weights[name])
    assert not any("running" in name for name in zero)


def test_directions_follow_their_seed():
    model = small_bn_net()
    first, again, other = (landscape.random_directions(model, 2, seed=s) for s in (5, 5, 6))
    name = "0.weight"
    assert torch.equal(first[0][name], again[0][name]) and torch.equal(first[1][name], again[1][name])
    assert not torch.equal(first[0][name], first[1][name])
    assert not torch.equal(first[0][name], other[0][name])


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_surface_at_origin_is_the_models_loss(data, method):
    images, labels = data
    model = small_bn_net()
    surface = landscape.loss_surface(model, images, labels, resolution=5, batch_size=10, method=method, progress=False)
    with torch.no_grad():
        logits = model(images)
    assert surface.loss.shape == (5, 5)
    assert surface.value_at_origin() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert surface.value_at_origin(surface.accuracy) == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert surface.provenance["subset_size"] == len(images) and surface.provenance["directions_seed"] == 0


def test_batched_evaluation_equals_a_plain_loop(data):
    images, labels = data
    model = small_bn_net()
    directions = landscape.random_directions(model, 2, seed=2)
    coefficients = np.array([[0.0, 0.0], [0.5, -0.25], [-1.0, 1.0], [0.1, 0.9], [1.0, 0.0]])
    expected_loss, expected_accuracy = reference_loss(model, directions, coefficients, images, labels)
    for method, chunk_size in (("vmap", 2), ("vmap", 16), ("loop", 1)):
        loss, accuracy = landscape.evaluate_points(
            model, directions, coefficients, images, labels, batch_size=8, chunk_size=chunk_size, method=method,
            progress=False,
        )
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
        np.testing.assert_allclose(accuracy, expected_accuracy)
    # the points differ from each other, so the comparison is not trivially the origin five times
    assert np.ptp(expected_loss) > 1e-2


def test_batched_evaluation_handles_resnet18():
    """The real architecture (residual blocks, BN, downsampling) also goes through vmap unchanged."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    directions = landscape.random_directions(model, 1, seed=0)
    coefficients = np.array([[0.0], [0.3], [-0.6]])
    expected, _ = reference_loss(model, directions, coefficients, images, labels)
    loss, _ = landscape.evaluate_points(model, directions, coefficients, images, labels, method="vmap", progress=False)
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_evaluation_leaves_the_model_as_it_was(data):
    images, labels = data
    model = small_bn_net().train()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    landscape.loss_surface(model, images, labels, dims=1, resolution=3, one_dim="random", progress=False)
    assert model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_interpolation_ends_are_the_two_models(data):
    images, labels = data
    model_a, model_b = small_bn_net(0), small_bn_net(1)  # different weights and BN running statistics
    surface = landscape.interpolation(model_a, model_b, images, labels, resolution=9, span=(-0.5, 1.5), progress=False)
    alphas = surface.axes[0]
    with torch.no_grad():
        for alpha, model in ((0.0, model_a), (1.0, model_b)):
            index = int(np.argmin(np.abs(alphas - alpha)))
            assert alphas[index] == pytest.approx(alpha)
            assert surface.loss[index] == pytest.approx(F.cross_entropy(model(images), labels).item(), rel=1e-5)
    # the midpoint is the averaged state (parameters and running statistics)
    middle = copy.deepcopy(model_a)
    state_b = model_b.state_dict()
    middle.load_state_dict({k: (v + state_b[k]) / 2 if v.is_floating_point() else v for k, v in model_a.state_dict().items()})
    with torch.no_grad():
        expected_middle = F.cross_entropy(middle(images), labels).item()
    assert surface.loss[int(np.argmin(np.abs(alphas - 0.5)))] == pytest.approx(expected_middle, rel=1e-5)


def test_surface_survives_json(tmp_path, data):
    images, labels = data
    surface = landscape.loss_surface(small_bn_net(), images, labels, resolution=4, progress=False)
    path = tmp_path / "surface.json"
    path.write_text(json.dumps(surface.to_dict()))
    restored = landscape.Surface.from_dict(json.loads(path.read_text()))
    np.testing.assert_allclose(restored.loss, surface.loss, rtol=1e-6)
    np.testing.assert_allclose(restored.axes[1], surface.axes[1])
    assert restored.provenance == surface.provenance


def test_training_subset_normalises_a_seeded_subset():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    data = SimpleNamespace(train_images=images, train_labels=torch.arange(10), normalise=lambda x: x.float() / 255)
    x, y = landscape.training_subset(data, 4, seed=3)
    again, _ = landscape.training_subset(data, 4, seed=3)
    assert torch.equal(x, again) and len(set(y.tolist())) == 4
    assert torch.allclose(x[:, 0, 0, 0] * 255, y.float())  # images stay paired with their labels
    with pytest.raises(ValueError, match="between 1 and 10"):
        landscape.training_subset(data, 11)


def test_bad_input_is_named(data):
    images, labels = data
    model = small_bn_net()
    with pytest.raises(ValueError, match="one_dim.*zero, random, weights"):
        landscape.filter_normalised_direction(model, one_dim="bn")
    with pytest.raises(ValueError, match="method 'fast'"):
        landscape.loss_surface(model, images, labels, resolution=3, method="fast")
    with pytest.raises(ValueError, match="resolution"):
        landscape.loss_surface(model, images, labels, resolution=1)
    with pytest.raises(ValueError, match="not the same architecture"):
        landscape.interpolation(model, nn.Linear(3, 4), images, labels)
    with pytest.raises(ValueError, match="shape"):
        landscape.evaluate_points(model, landscape.random_directions(model, 2), [[0.0]], images, labels)


def test_extrapolated_interpolation_keeps_the_nearer_ends_statistics(data):
    """Beyond the ends the parameters extrapolate, BN statistics stay at the nearer model (no negative variance)."""
    images, labels = data
    model_a, model_b = small_bn_net(0), small_bn_net(1)
    with torch.no_grad():  # make a linearly extrapolated running variance negative at alpha = -0.5
        model_b[1].running_var.copy_(model_a[1].running_var * 4)
    surface = landscape.interpolation(model_a, model_b, images, labels, resolution=5, span=(-0.5, 1.5), progress=False)
    assert np.isfinite(surface.loss).all()
    expected = copy.deepcopy(model_a)
    parameters_b = dict(model_b.named_parameters())
    with torch.no_grad():
        for name, parameter in expected.named_parameters():
            parameter.copy_(1.5 * parameter - 0.5 * parameters_b[name])
        assert surface.loss[0] == pytest.approx(F.cross_entropy(expected(images), labels).item(), rel=1e-5)


def test_command_line_stores_surfaces_that_the_chapter_finds(tmp_path, capsys):
    """Train one tiny run, then `python -m sharpness.measuring.landscape` stores its surface, measures and provenance."""
    from sharpness.training.train import RunConfig, load_run, train

    config = RunConfig(dataset="digits", arch="simple_cnn", control="baseline", seed=0, epochs=1,
                       max_train_samples=64, max_test_samples=32, runs_dir=str(tmp_path / "runs"), device="cpu")
    train(config, progress=False)
    arguments = ["--runs-dir", str(tmp_path / "runs"), "--dataset", "digits", "--arch", "simple_cnn",
                 "--controls", "baseline", "--resolution", "3", "--subset", "16", "--sam-draws", "2",
                 "--interpolate", "baseline", "baseline", "--device", "cpu", "--out", str(tmp_path / "stored")]
    assert landscape.main(arguments) == 0
    (item,) = landscape.stored_landscapes("digits", "simple_cnn", 0, root=tmp_path / "stored")
    assert item.control == "baseline" and item.surface.loss.shape == (3, 3)
    assert set(item.measures) == set(landscape.MEASURE_LABELS)
    assert item.surface.provenance["subset_size"] == 16 and item.source.endswith("baseline.json")
    model, _, data = load_run(config.run_dir)
    images, labels = landscape.training_subset(data, 16, seed=0)
    with torch.no_grad():
        assert item.surface.value_at_origin() == pytest.approx(F.cross_entropy(model(images), labels).item(), rel=1e-5)
    assert landscape.main([*arguments[:2], "--dataset", "digits", "--arch", "simple_cnn", "--seed", "7"]) == 1
    assert "not trained" in capsys.readouterr().err
