"""Each sharpness measure against an independent truth on tiny float64 networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sharpness.measuring import measures


def relu_net(bias: bool = False, seed: int = 0) -> nn.Sequential:
    """Three weight layers; without biases the logits are 3-homogeneous in the parameters."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 7, bias=bias), nn.ReLU(), nn.Linear(7, 6, bias=bias), nn.ReLU(), nn.Linear(6, 3, bias=bias)
    ).double()


def bn_net(seed: int = 0) -> nn.Sequential:
    """A smooth net with BN (eval-mode statistics made non-trivial) and biases everywhere."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 4)).double()
    net[1].running_mean.uniform_(-0.5, 0.5)
    net[1].running_var.uniform_(0.5, 2.0)
    return net


def data(count: int = 20, features: int = 5, classes: int = 3, sizes=(8, 7, 5), seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, features, generator=generator, dtype=torch.float64)
    y = torch.randint(0, classes, (count,), generator=generator)
    batches = list(zip(x.split(list(sizes)), y.split(list(sizes))))
    return x, y, batches


def flat_loss(model: nn.Module, x, y):
    """Mean loss as a function of one flat parameter vector, for autograd.functional.hessian."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss(flat):
        pieces = flat.split([math.prod(shape) for shape in shapes])
        params = {name: piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)}
        logits = torch.func.functional_call(model, {**params, **buffers}, (x,))
        return nn.functional.cross_entropy(logits, y)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return loss, flat


def exact_hessian(model, x, y):
    model.eval()
    loss, flat = flat_loss(model, x, y)
    return torch.autograd.functional.hessian(loss, flat)


# ---------------------------------------------------------------- Fisher-Rao


def test_fisher_rao_formula_matches_jvp_on_homogeneous_relu_net():
    net, (_, _, batches) = relu_net(), data()
    exact = measures.fisher_rao_norm_exact(net, batches, progress=False)
    # Degree of homogeneity is 3 = number of weight layers, so (L+1) must be 3.
    assert measures.fisher_rao_norm(net, batches, num_layers=2, progress=False) == pytest.approx(exact, rel=1e-10)
    # The paper's count L = 3 weight layers overstates it by (L+1)/L.
    paper = measures.fisher_rao_norm(net, batches, num_layers=3, progress=False)
    assert paper / exact == pytest.approx(4 / 3, rel=1e-10)


def test_fisher_rao_exact_matches_autograd_per_sample_gradients():
    net, (x, y, batches) = bn_net(), data(classes=4)
    net.eval()
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    directional = []
    for i in range(len(y)):
        loss, _ = flat_loss(net, x[i : i + 1], y[i : i + 1])
        flat = theta.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss(flat), flat)
        directional.append(float(gradient @ theta))
    expected = math.sqrt(sum(d * d for d in directional) / len(directional))
    assert measures.fisher_rao_norm_exact(net, batches, progress=False) == pytest.approx(expected, rel=1e-10)
    net.train()
    measures.fisher_rao_norm_exact(net, batches, progress=False)
    assert net.training and net[1].training, "the model's mode must be restored"


def test_fisher_rao_formula_is_wrong_with_biases():
    """Biases break homogeneity: the formula and the exact value then differ."""
    net, (_, _, batches) = relu_net(bias=True), data()
    formula = measures.fisher_rao_norm(net, batches, num_layers=2, progress=False)
    assert formula != pytest.approx(measures.fisher_rao_norm_exact(net, batches, progress=False), rel=1e-3)


def test_one_shot_iterator_is_refused():
    net, (_, _, batches) = relu_net(), data()
    with pytest.raises(ValueError, match="re-iterable"):
        measures.fisher_rao_norm(net, iter(batches), num_layers=2)


# ---------------------------------------------------------------- relative flatness


@pytest.mark.parametrize("make_net", [relu_net, bn_net])
def test_relative_flatness_closed_form_matches_autograd_hessian(make_net):
    net = make_net()
    classes = net[-1].out_features
    _, _, batches = data(classes=classes)
    closed = measures.relative_flatness(net, batches, layer=net[-1], progress=False)
    reference = measures.relative_flatness_reference(net, batches, layer=net[-1])
    assert closed == pytest.approx(reference, rel=1e-10)
    assert closed > 0


def test_relative_flatness_matches_finite_differences():
    """kappa = sum_j sum_k lambda_k d^2 L / dt^2 along v_k e_j^T, with W W^T = sum_k lambda_k v_k v_k^T."""
    net, (x, y, batches) = bn_net(), data(classes=4)
    net.eval()
    weight = net[-1].weight
    lambdas, vectors = torch.linalg.eigh(weight.detach() @ weight.detach().T)
    original = weight.detach().clone()
    step = 1e-4

    def loss_at(direction, t):
        with torch.no_grad():
            weight.copy_(original + t * direction)
            return float(nn.functional.cross_entropy(net(x), y))

    kappa = 0.0
    for k in range(len(lambdas)):
        for j in range(weight.shape[1]):
            direction = torch.zeros_like(original)
            direction[:, j] = vectors[:, k]
            second = (loss_at(direction, step) - 2 * loss_at(direction, 0) + loss_at(direction, -step)) / step**2
            kappa += float(lambdas[k]) * second
    with torch.no_grad():
        weight.copy_(original)
    closed = measures.relative_flatness(net, batches, layer=net[-1], progress=False)
    assert closed == pytest.approx(kappa, rel=1e-5)


def test_relative_flatness_paper_compatible_is_rescaled_batch_sum():
    """The authors' value: features scaled to unit std (weights compensating), per-batch means summed."""
    net, (x, y, _) = bn_net(), data(count=24, classes=4, sizes=(8, 8, 8))
    net.eval()
    with torch.no_grad():
        features = net[:-1](x)
    sigma = features.std(dim=0, unbiased=False)

    class Rescaled(nn.Module):  # the same function, reparametrised as the authors intended
        def __init__(self):
            super().__init__()
            self.body = net[:-1]
            self.head = nn.Linear(6, 4).double()
            with torch.no_grad():
                self.head.weight.copy_(net[-1].weight * sigma)
                self.head.bias.copy_(net[-1].bias)

        def forward(self, inputs):
            return self.head(self.body(inputs) / sigma)

    rescaled = Rescaled().eval()
    torch.testing.assert_close(rescaled(x), net(x))
    batches = list(zip(x.split(8), y.split(8)))
    expected = sum(measures.relative_flatness_reference(rescaled, [batch], layer=rescaled.head) for batch in batches)
    paper = measures.relative_flatness(net, batches, paper_compatible=True, layer=net[-1], progress=False)
    assert paper == pytest.approx(expected, rel=1e-9)


def test_relative_flatness_paper_compatible_ignores_per_feature_rescaling():
    """Scaling feature j by c_j and weight column j by 1/c_j keeps f; only the paper's value is invariant."""
    net, (_, _, batches) = relu_net(), data()
    clean = measures.relative_flatness(net, batches, layer=net[-1], progress=False)
    paper = measures.relative_flatness(net, batches, paper_compatible=True, layer=net[-1], progress=False)
    scales = torch.linspace(0.5, 3.0, 6, dtype=torch.float64)
    with torch.no_grad():
        net[2].weight.mul_(scales[:, None])  # ReLU is positively homogeneous: phi_j -> c_j phi_j
        net[4].weight.div_(scales[None, :])
    assert measures.relative_flatness(
        net, batches, paper_compatible=True, layer=net[-1], progress=False
    ) == pytest.approx(paper, rel=1e-10)
    assert measures.relative_flatness(net, batches, layer=net[-1], progress=False) != pytest.approx(clean, rel=1e-3)


def test_relative_flatness_is_scale_invariant_between_layers():
    """Multiplying the features by c and the classifier weight by 1/c changes neither f nor kappa."""
    net, (_, _, batches) = relu_net(), data()
    before = measures.relative_flatness(net, batches, layer=net[-1], progress=False)
    with torch.no_grad():
        net[2].weight.mul_(3.0)
        net[4].weight.div_(3.0)
    after = measures.relative_flatness(net, batches, layer=net[-1], progress=False)
    assert after == pytest.approx(before, rel=1e-10)


# ---------------------------------------------------------------- SAM-sharpness


def test_sam_sharpness_small_rho_matches_gradient_norm():
    """For small rho, |dL| ~ |g . delta| with delta ~ N(0, rho^2/P): E|dL|/rho = ||g|| sqrt(2 / (pi P))."""
    net, (x, y, _) = relu_net(bias=True), data()
    batches = [(x, y)]
    loss, flat = flat_loss(net, x, y)
    flat.requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss(flat), flat)
    parameters = flat.numel()
    expected = float(gradient.norm()) * math.sqrt(2 / (math.pi * parameters))
    draws = 1500
    score = measures.sam_sharpness(net, batches, rho=1e-5, draws=draws, progress=False)
    # Monte-Carlo relative std of the mean of |N(0,1)| is sqrt(pi/2 - 1) / sqrt(draws) ~ 1.4%.
    assert score == pytest.approx(expected, rel=5 * math.sqrt(math.pi / 2 - 1) / math.sqrt(draws))


def test_sam_sharpness_is_deterministic_and_restores_weights_exactly():
    net, (_, _, batches) = bn_net(), data(classes=4)
    net.train()
    before = {name: t.clone() for name, t in net.state_dict().items()}
    first = measures.sam_sharpness(net, batches, draws=5, seed=3, progress=False)
    assert first == measures.sam_sharpness(net, batches, draws=5, seed=3, progress=False)
    assert first != measures.sam_sharpness(net, batches, draws=5, seed=4, progress=False)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert net.training


def test_sam_sharpness_perturbs_bn_running_statistics():
    """The authors perturb every floating state-dict tensor: moving only the running stats changes L."""
    net, (_, _, batches) = bn_net(), data(classes=4)
    with torch.no_grad():
        for p in net.parameters():
            p.requires_grad_(False)
    assert measures.sam_sharpness(net, batches, draws=3, progress=False) > 0


def test_sam_sharpness_is_the_papers_definition_draw_by_draw():
    """One draw by hand from the paper's definition (the authors' public code): N(0,1) * rho / sqrt(P) added to every floating state-dict
    tensor (weights, biases, BN running mean and variance; not the integer batch counter), P counting
    parameters only, loss in eval mode, score |L(theta + delta) - L(theta)| / rho."""
    from torch.func import functional_call

    net, (x, y, batches) = bn_net(), data(classes=4)
    net.train()  # the measure must switch to eval mode itself
    rho, seed = 0.01, 7
    state = net.state_dict()
    parameter_count = sum(p.numel() for p in net.parameters())
    assert parameter_count == 5 * 6 + 6 + 6 + 6 + 6 * 4 + 4  # Linear, BN affine, Linear: buffers not counted
    generator = torch.Generator().manual_seed(seed)
    moved = {name: tensor + torch.randn(tensor.shape, generator=generator).double() * rho / math.sqrt(parameter_count)
             if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    assert not torch.equal(moved["1.running_var"], state["1.running_var"])
    assert torch.equal(moved["1.num_batches_tracked"], state["1.num_batches_tracked"])

    def loss(values):
        net.eval()
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(functional_call(net, values, (x,)), y))

    expected = abs(loss(moved) - loss(state)) / rho
    net.train()
    assert measures.sam_sharpness(net, batches, rho=rho, draws=1, seed=seed, progress=False) == pytest.approx(expected, rel=1e-9)


def test_sam_sharpness_rejects_bad_rho():
    net, (_, _, batches) = relu_net(), data()
    with pytest.raises(ValueError, match="rho"):
        measures.sam_sharpness(net, batches, rho=0.0)


# ---------------------------------------------------------------- Hessian extras


def test_power_iteration_and_hutchinson_match_exact_hessian():
    net, (x, y, batches) = bn_net(), data(classes=4)
    hessian = exact_hessian(net, x, y)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    top = float(eigenvalues[eigenvalues.abs().argmax()])
    estimate = measures.hessian_top_eigenvalue(net, batches, iterations=60, tol=1e-12, progress=False)
    assert estimate == pytest.approx(top, rel=1e-6)

    draws = 100
    trace = measures.hessian_trace(net, batches, draws=draws, seed=0, progress=False)
    # Hutchinson with Rademacher vectors: variance 2 * sum_{i != j} H_ij^2 per draw.
    off_diagonal = hessian - torch.diag(torch.diag(hessian))
    standard_error = math.sqrt(2 * float(off_diagonal.square().sum()) / draws)
    assert abs(trace - float(torch.trace(hessian))) < 4 * standard_error
    assert trace == measures.hessian_trace(net, batches, draws=draws, seed=0, progress=False)


def test_hessian_vector_product_sums_unequal_batches_correctly():
    net, (x, y, batches) = bn_net(), data(classes=4, sizes=(11, 2, 7))
    hessian = exact_hessian(net, x, y)
    params = list(net.parameters())
    vector = [torch.randn_like(p) for p in params]
    product = measures.hessian_vector_product(net, batches, vector)
    flat_product = torch.cat([p.reshape(-1) for p in product])
    torch.testing.assert_close(flat_product, hessian @ torch.cat([v.reshape(-1) for v in vector]))
