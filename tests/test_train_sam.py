"""SAM against a hand-written SAM step, BatchNorm statistics under SAM, and the controls table."""

import pytest
import torch
from torch import nn

from sharpness.training.controls import CONTROLS, get_control, hyperparameters
from sharpness.training.sam import SAM, frozen_batchnorm_stats


def test_sam_step_matches_the_definition():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss_at = lambda params: nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)  # noqa: E731
    w = {k: v.detach().clone() for k, v in model.named_parameters()}
    # by hand: e = rho g/||g||, gradient at w + e, plain SGD step from w
    rho, lr = 0.3, 0.1
    g = torch.func.grad(loss_at)(w)
    norm = torch.sqrt(sum((t**2).sum() for t in g.values()))
    g_sharp = torch.func.grad(loss_at)({k: w[k] + rho * g[k] / norm for k in w})
    expected = {k: w[k] - lr * g_sharp[k] for k in w}

    sam = SAM(torch.optim.SGD(model.parameters(), lr=lr), rho=rho)
    nn.functional.cross_entropy(model(x), y).backward()
    sam.first_step()
    assert all(p.grad is None for p in model.parameters())
    nn.functional.cross_entropy(model(x), y).backward()
    sam.second_step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-6, atol=1e-7)


def test_sam_rejects_bad_rho_and_a_lone_second_step():
    optimizer = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="rho"):
        SAM(optimizer, rho=0.0)
    with pytest.raises(RuntimeError, match="first_step"):
        SAM(optimizer).second_step()


def test_batchnorm_running_stats_see_each_batch_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 2, (6,))
    model(x)  # materialise the lazy layer
    bn = model[1]
    bn.reset_running_stats()
    once = nn.BatchNorm2d(4)
    once(model[0](x))  # one look at the batch from the same starting statistics
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.5), rho=0.5)
    nn.functional.cross_entropy(model(x), y).backward()
    sam.first_step()
    with frozen_batchnorm_stats(model):
        nn.functional.cross_entropy(model(x), y).backward()
    sam.second_step()
    assert torch.equal(bn.running_mean, once.running_mean) and torch.equal(bn.running_var, once.running_var)
    assert bn.num_batches_tracked.item() == 1
    model(x)  # outside the context the statistics move again
    assert not torch.equal(bn.running_mean, once.running_mean)


def test_controls_switch_the_three_regularisers():
    table = {name: (c.augment, c.sam, c.weight_decay) for name in CONTROLS for c in [get_control(name)]}
    assert table == {
        "baseline": (False, False, 0.0), "baseline_sam": (False, True, 0.0),
        "aug": (True, False, 0.0), "aug_sam": (True, True, 0.0),
        "wd": (False, False, 5e-4), "wd_sam": (False, True, 5e-4),
    }
    with pytest.raises(ValueError, match="unknown control 'sam'.*aug_sam"):
        get_control("sam")


def test_study_hyperparameters_follow_the_paper():
    c10, c100, tiny = hyperparameters("cifar10"), hyperparameters("cifar100"), hyperparameters("tiny_imagenet")
    assert (c10.lr, c10.schedule, c10.epochs, c10.batch_size, c10.momentum) == (1e-3, "constant", 100, 256, 0.9)
    assert (c100.lr, c100.schedule) == (1e-2, "cosine") and tiny.lr == 1e-3
    assert hyperparameters("cifar10_folder") == c10
    with pytest.raises(ValueError, match="unknown dataset"):
        hyperparameters("imagenet")
