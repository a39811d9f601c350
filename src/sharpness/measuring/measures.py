"""Sharpness measures of a trained classifier, with the definitions the paper's authors used.

Every measure takes a model and a re-iterable data source `batches` (a list of `(x, y)` batches, or a
callable returning a fresh iterator), works on whatever device the model lives on, evaluates the model
in eval mode (restoring its mode afterwards) and shows progress with tqdm.

- `fisher_rao_norm`: Liang et al.'s closed form, (L+1) * sqrt(mean_i (<softmax f_i, f_i> - f_i[y_i])^2),
  which equals the exact sqrt(mean_i <theta, grad l_i>^2) only for bias-free, BN-free ReLU networks
  (and then with L+1 equal to the number of weight layers, see `fisher_rao_norm_exact`).
- `relative_flatness`: Petzka et al.'s kappa on the classifier layer in closed form, O(N*C*m).
- `sam_sharpness`: mean |L(theta + delta) - L(theta)| / rho over random state-dict perturbations.
- `hessian_top_eigenvalue`, `hessian_trace`: Lanczos and Hutchinson on Hessian-vector products
  of the loss over the whole data set.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import tqdm
from ..core.threads import single_cpu_thread

SAM_SHARPNESS_RHO = 0.005  # the radius of the authors' SAM-sharpness measure (not SAM's training rho)

if TYPE_CHECKING:
    import pandas

Tensor = torch.Tensor


# ----------------------------------------------------------------------------------------------
# Plumbing shared by every measure
# ----------------------------------------------------------------------------------------------


def iterate_batches(batches) -> Iterator[tuple[Tensor, Tensor]]:
    """A fresh pass over `batches`; refuses one-shot iterators, since measures need several passes."""
    if callable(batches):
        return iter(batches())
    if isinstance(batches, Iterator):
        raise ValueError(
            f"batches must be re-iterable (a list of (x, y) batches or a callable returning an "
            f"iterator), got a one-shot iterator {type(batches).__name__}"
        )
    return iter(batches)


def passes(batches, model: nn.Module, desc: str, progress: bool):
    """Iterate once over the batches, moved to the model's device and memory format, with a progress bar."""
    device, memory_format = model_device(model), model_memory_format(model)
    total = len(batches) if hasattr(batches, "__len__") else None
    for x, y in tqdm(iterate_batches(batches), total=total, desc=desc, disable=not progress, leave=False):
        yield in_memory_format(x.to(device, non_blocking=True), memory_format), y.to(device, non_blocking=True)


def prepared_batches(batches, model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """The batches normalised, moved and laid out once, for a measure that passes over them many times."""
    return list(passes(batches, model, "", progress=False))


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's 4-D weights are stored so (then its inputs should be too)."""
    for parameter in model.parameters():
        if parameter.dim() == 4 and not parameter.is_contiguous():
            if parameter.is_contiguous(memory_format=torch.channels_last):
                return torch.channels_last
    return torch.contiguous_format


def in_memory_format(x: Tensor, memory_format: torch.memory_format) -> Tensor:
    """`x` laid out as `memory_format` if it is an image batch (4-D); anything else as it is."""
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x


def to_channels_last(model: nn.Module) -> nn.Module:
    """The model with its 4-D weights channels_last (in place): on a CPU forward passes run x1.2-2 faster
    that way (issue 25), and the measures' values move only by float rounding. Returns the model."""
    return model.to(memory_format=torch.channels_last)


def contiguous_model(model: nn.Module) -> nn.Module:
    """The model itself when it is in the contiguous format, else a contiguous copy: double backward
    (the Hessian measures) through channels_last convolutions measured x1.4 slower on a CPU (issue 25)."""
    if model_memory_format(model) == torch.contiguous_format:
        return model
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """Eval mode for the duration (BN uses running statistics, dropout is off), then the old modes back."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# ----------------------------------------------------------------------------------------------
# Fisher-Rao norm
# ----------------------------------------------------------------------------------------------


def fisher_rao_terms(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample <softmax(f), f> - f[y] (= <f, d loss / d f>), in float64."""
    logits = logits.double()
    return (logits.softmax(dim=1) * logits).sum(dim=1) - logits.gather(1, labels[:, None]).squeeze(1)


def fisher_rao_from_logits(logits: Tensor, labels: Tensor, num_layers: int) -> float:
    """(L+1) * sqrt(mean_i term_i^2): the paper's formula from logits already computed."""
    terms = fisher_rao_terms(logits, labels)
    return float((num_layers + 1) * terms.square().mean().sqrt())


def fisher_rao_norm(model: nn.Module, batches, num_layers: int | None = None, progress: bool = True) -> float:
    """The paper's Fisher-Rao norm; `num_layers` defaults to the model's Linear/Conv/Embedding count."""
    if num_layers is None:
        from ..training.models import count_weight_layers

        num_layers = count_weight_layers(model)
    square_sum, count = 0.0, 0
    with evaluation_mode(model), torch.no_grad():
        for x, y in passes(batches, model, "Fisher-Rao norm", progress):
            square_sum += float(fisher_rao_terms(model(x), y).square().sum())
            count += len(y)
    return (num_layers + 1) * math.sqrt(square_sum / count)


def parameter_directional_losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-sample <theta, grad_theta l_i>: one forward-mode jvp with the parameters as tangent."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b for name, b in model.named_buffers()}

    def per_sample_loss(parameters):
        logits = torch.func.functional_call(model, {**parameters, **buffers}, (x,))
        return F.cross_entropy(logits, y, reduction="none")

    with warnings.catch_warnings():  # torch's forward AD scripts its decompositions on first use
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
        _, directional = torch.func.jvp(per_sample_loss, (params,), (params,))
    return directional


def fisher_rao_norm_exact(model: nn.Module, batches, progress: bool = True) -> float:
    """sqrt(mean_i <theta, grad l_i>^2) exactly, valid with biases and BN (which break the formula)."""
    square_sum, count = 0.0, 0
    with evaluation_mode(model), torch.no_grad():
        for x, y in passes(batches, model, "Fisher-Rao norm (exact)", progress):
            square_sum += float(parameter_directional_losses(model, x, y).double().square().sum())
            count += len(y)
    return math.sqrt(square_sum / count)


# ----------------------------------------------------------------------------------------------
# Relative flatness
# ----------------------------------------------------------------------------------------------


@dataclass
class ClassifierPass:
    """What one forward pass over the data leaves behind: classifier inputs, logits, labels, batch sizes."""

    features: Tensor  # N x m, the input phi of the classifier layer
    logits: Tensor  # N x C
    labels: Tensor  # N
    batch_sizes: list[int]


def resolve_classifier(model: nn.Module, layer: nn.Linear | None) -> nn.Linear:
    if layer is None:
        from ..training.models import classifier_layer

        layer = classifier_layer(model)
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"relative flatness needs the classifier as an nn.Linear, got {type(layer).__name__}")
    return layer


def classifier_batches(model: nn.Module, batches, layer: nn.Linear, desc: str, progress: bool):
    """Yield (classifier input phi, logits, labels) batch by batch, eval mode, phi caught by a hook."""
    caught: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: caught.append(inputs[0].detach()))
    try:
        with evaluation_mode(model), torch.no_grad():
            for x, y in passes(batches, model, desc, progress):
                logits = model(x)
                features = caught.pop()
                if features.dim() != 2:
                    raise ValueError(f"classifier input must be N x m, got shape {tuple(features.shape)}")
                yield features, logits, y
    finally:
        handle.remove()


def classifier_pass(
    model: nn.Module, batches, layer: nn.Linear | None = None, progress: bool = True, desc: str = "forward pass"
) -> ClassifierPass:
    """Run the model once over the data and keep the classifier inputs, logits, labels and batch sizes."""
    features, logits, labels = zip(*classifier_batches(model, batches, resolve_classifier(model, layer), desc, progress))
    return ClassifierPass(torch.cat(features), torch.cat(logits), torch.cat(labels), [len(y) for y in labels])


def relative_flatness_terms(features: Tensor, probabilities: Tensor, weight: Tensor) -> Tensor:
    """Per-sample ||phi||^2 (sum_s p_s ||w_s||^2 - ||W^T p||^2), whose mean is kappa (float64)."""
    features, probabilities, weight = features.double(), probabilities.double(), weight.double()
    spread = probabilities @ weight.square().sum(dim=1) - (probabilities @ weight).square().sum(dim=1)
    return features.square().sum(dim=1) * spread


def relative_flatness_from_pass(result: ClassifierPass, weight: Tensor, paper_compatible: bool = False) -> float:
    """Kappa from a finished `classifier_pass`: the clean mean, or the authors' rescaled batch sum.

    The authors divide each feature by its standard deviation over the data and multiply the matching
    weight column by it (the function is unchanged), then add up the per-batch mean values, so their
    number grows with N / batch size. We apply that rescaling exactly instead of through the layers
    before the classifier.
    """
    probabilities = result.logits.double().softmax(dim=1)
    features = result.features
    if paper_compatible:
        sigma = features.double().std(dim=0, unbiased=False)
        # Constant features (sigma 0) are left as they are; their weight column becomes zero, as theirs.
        features = features.double() / torch.where(sigma > 0, sigma, torch.ones_like(sigma))
        weight = weight.double() * sigma
    terms = relative_flatness_terms(features, probabilities, weight)
    if not paper_compatible:
        return float(terms.mean())
    return float(sum(chunk.mean() for chunk in terms.split(result.batch_sizes)))


def relative_flatness(
    model: nn.Module,
    batches,
    paper_compatible: bool = False,
    layer: nn.Linear | None = None,
    progress: bool = True,
) -> float:
    """Relative flatness kappa of the classifier layer (Petzka et al. 2021), closed form, one forward pass.

    kappa = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'}) with H the Hessian of the mean cross-entropy in the
    classifier weight W; for softmax cross-entropy this is mean_i ||phi_i||^2 (sum_s p_is ||w_s||^2 -
    ||W^T p_i||^2). `layer` defaults to `sharpness.training.models.classifier_layer(model)`.
    """
    layer = resolve_classifier(model, layer)
    if not paper_compatible:  # stream: nothing kept but two running sums
        total, count = 0.0, 0
        for features, logits, y in classifier_batches(model, batches, layer, "relative flatness", progress):
            total += float(relative_flatness_terms(features, logits.double().softmax(dim=1), layer.weight.detach()).sum())
            count += len(y)
        return total / count
    result = classifier_pass(model, batches, layer, progress, desc="relative flatness")
    return relative_flatness_from_pass(result, layer.weight.detach(), paper_compatible=True)


def classifier_hessian(model: nn.Module, batches, layer: nn.Linear | None = None) -> Tensor:
    """Exact Hessian (C*m x C*m) of the mean loss in the classifier weight, by double backward (small layers)."""
    layer = resolve_classifier(model, layer)
    weight = layer.weight
    size = weight.numel()
    hessian = torch.zeros(size, size, dtype=torch.float64, device=weight.device)
    count = 0
    with evaluation_mode(model):
        for x, y in passes(batches, model, "classifier Hessian", progress=False):
            loss = F.cross_entropy(model(x), y, reduction="sum")
            (gradient,) = torch.autograd.grad(loss, weight, create_graph=True)
            gradient = gradient.reshape(-1)
            for index in range(size):
                (row,) = torch.autograd.grad(gradient[index], weight, retain_graph=True)
                hessian[index] += row.reshape(-1).double()
            count += len(y)
    return hessian / count


def relative_flatness_reference(model: nn.Module, batches, layer: nn.Linear | None = None) -> float:
    """Kappa from the exact autograd Hessian: the slow, independent check of `relative_flatness`."""
    layer = resolve_classifier(model, layer)
    classes, width = layer.weight.shape
    blocks = classifier_hessian(model, batches, layer).reshape(classes, width, classes, width)
    block_traces = torch.einsum("sjtj->st", blocks)
    weight = layer.weight.detach().double()
    return float((weight @ weight.T * block_traces).sum())


# ----------------------------------------------------------------------------------------------
# SAM-sharpness
# ----------------------------------------------------------------------------------------------


def mean_loss(model: nn.Module, batches, progress: bool = False) -> float:
    """Mean per-sample cross-entropy over the data, as the model is (no mode change).

    The loss is taken in float64: SAM-sharpness differences are tiny (the paper's ResNet-18 values
    mean |dL| ~ 1e-7), below what float32 log-softmax resolves for well-fitted samples.
    """
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in passes(batches, model, "loss", progress):
            total += float(F.cross_entropy(model(x).double(), y, reduction="sum"))
            count += len(y)
    return total / count


def sam_sharpness(
    model: nn.Module, batches, rho: float = SAM_SHARPNESS_RHO, draws: int = 100, seed: int = 0, progress: bool = True
) -> float:
    """Mean |L(theta + delta_k) - L(theta)| / rho over `draws` random perturbations (the authors' measure).

    Each draw adds N(0, 1) * rho / sqrt(P) to every floating tensor of the state dict (BN running
    statistics included, as the authors did; P counts parameters only). L is the mean training
    cross-entropy in eval mode. Noise comes from a CPU generator seeded with `seed`, so the score is
    the same on every device; the weights are restored bit for bit afterwards. The images are held
    normalised in memory for the draws (N x C x H x W floats).
    """
    if rho <= 0 or draws < 1:
        raise ValueError(f"need rho > 0 and draws >= 1, got rho={rho}, draws={draws}")
    batches = prepared_batches(batches, model)  # normalised once, not once per draw
    scale = rho / math.sqrt(count_parameters(model))
    state = {name: tensor for name, tensor in model.state_dict(keep_vars=False).items() if tensor.is_floating_point()}
    saved = {name: tensor.clone() for name, tensor in state.items()}
    generator = torch.Generator().manual_seed(seed)
    changes = []
    with evaluation_mode(model):
        base = mean_loss(model, batches)
        try:
            for _ in tqdm(range(draws), desc="SAM-sharpness", disable=not progress, leave=False):
                for name, tensor in state.items():
                    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                    tensor.add_(noise.to(tensor.device, tensor.dtype), alpha=scale)
                changes.append(abs(mean_loss(model, batches) - base) / rho)
                for name, tensor in state.items():
                    tensor.copy_(saved[name])
        finally:
            for name, tensor in state.items():
                tensor.copy_(saved[name])
    return sum(changes) / len(changes)


# ----------------------------------------------------------------------------------------------
# Hessian spectrum extras: Lanczos and Hutchinson over the whole data set
# ----------------------------------------------------------------------------------------------


def hessian_vector_product(model: nn.Module, batches, vector: list[Tensor], progress: bool = False) -> list[Tensor]:
    """H v for the mean loss over all of `batches` (double backward, batch by batch, summed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    product = [torch.zeros_like(p) for p in params]
    count = 0
    for x, y in passes(batches, model, "Hessian-vector product", progress):
        loss = F.cross_entropy(model(x), y, reduction="sum")
        gradients = torch.autograd.grad(loss, params, create_graph=True)
        pieces = torch.autograd.grad(gradients, params, grad_outputs=vector)
        for total, piece in zip(product, pieces):
            total.add_(piece.detach())
        count += len(y)
    return [total / count for total in product]


def _dot(left: list[Tensor], right: list[Tensor]) -> float:
    return float(sum((a.double() * b.double()).sum() for a, b in zip(left, right)))


def _random_like(params: list[Tensor], generator: torch.Generator, rademacher: bool) -> list[Tensor]:
    """Random vectors drawn on the CPU (same numbers on every device), then moved to the parameters."""
    vectors = []
    for p in params:
        if rademacher:
            draw = torch.randint(0, 2, p.shape, generator=generator).float() * 2 - 1
        else:
            draw = torch.randn(p.shape, generator=generator)
        vectors.append(draw.to(p.device, p.dtype))
    return vectors


# Where the Hessian extras stop (stated in every metrics.json beside the values and their accuracy):
HESSIAN_EIGENVALUE_TOL = 1e-3  # Lanczos: the top Ritz value changed by less than this, relative
HESSIAN_TRACE_TOL = 0.05  # Hutchinson: standard error over the probes at most this fraction of |trace|
HUTCHINSON_ROUND = 5  # probes per pass over the data (they share each batch's graph)
HUTCHINSON_MIN_PROBES = 10  # before the probes' spread is trusted as a standard error


@dataclass
class HessianEstimate:
    """An iterative Hessian figure with what it cost and how accurate it is.

    `steps`: Lanczos steps or Hutchinson probes used (each one Hessian-vector product per image).
    `standard_error`: Hutchinson, sample standard deviation of v^T H v over the probes / sqrt(probes).
    `residual`: Lanczos, ||H x - theta x|| for the final unit Ritz vector x; some eigenvalue of H lies within
    it of `value` (Bauer-Fike for a symmetric matrix). `relative_change`: the last step's change of the
    value, relative. `converged`: whether the tolerance was met before the step budget ran out.
    """

    value: float
    steps: int
    tolerance: float | None
    converged: bool
    relative_change: float | None = None
    standard_error: float | None = None
    residual: float | None = None

    def record(self) -> dict:
        """The accuracy fields for metrics.json (the value itself is stored under the measure's name)."""
        return {key: value for key, value in asdict(self).items() if key != "value" and value is not None}


def hessian_top_eigenvalue_estimate(
    model: nn.Module, batches, iterations: int = 20, tol: float = HESSIAN_EIGENVALUE_TOL, seed: int = 0,
    progress: bool = True,
) -> HessianEstimate:
    """Largest-magnitude Hessian eigenvalue (the top one at a minimum) by Lanczos, eval mode.

    Step k multiplies the k-th Lanczos vector by H (one Hessian-vector product over all of `batches`) and
    takes the largest-magnitude Ritz value of the k-dimensional Krylov space so far (its vectors kept
    orthonormal by re-orthogonalising twice against all of them). Power iteration's k-th Rayleigh quotient
    lies in the same space, so Lanczos is never further from the eigenvalue after as many products, and
    usually much closer (`bench/hessian_top.py` measures the products saved on the study's runs). Stops when
    the estimate changes by less than `tol` relative, or after `iterations` products, or when the space stops
    growing (H maps it into itself: the Ritz values are eigenvalues). `residual` is ||H x - theta x|| for the
    unit Ritz vector x, which Lanczos gives without another product: beta_k times the last entry of theta's
    eigenvector of the tridiagonal matrix. Runs on a contiguous copy of a channels_last model (`contiguous_model`).
    """
    import numpy as np

    if iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    model = contiguous_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    start = _random_like(params, torch.Generator().manual_seed(seed), rademacher=False)
    norm = math.sqrt(_dot(start, start))
    vector = [v / norm for v in start]
    basis: list[list[Tensor]] = []
    alphas: list[float] = []
    betas: list[float] = []
    estimate, change, converged, steps, residual = None, None, False, 0, None
    with evaluation_mode(model):
        for steps in tqdm(range(1, iterations + 1), desc="Hessian top eigenvalue", disable=not progress, leave=False):
            basis.append(vector)
            product = hessian_vector_product(model, batches, vector)
            alphas.append(_dot(vector, product))
            for _ in range(2):  # "twice is enough" to keep the basis orthonormal in floating point
                for q in basis:
                    overlap = _dot(q, product)
                    product = [w - overlap * qi for w, qi in zip(product, q)]
            beta = math.sqrt(_dot(product, product))
            tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
            values, vectors = np.linalg.eigh(tridiagonal)
            top = int(np.abs(values).argmax())
            value, residual = float(values[top]), beta * abs(float(vectors[-1, top]))
            if estimate is not None:
                change = abs(value - estimate) / (abs(estimate) + 1e-12)
                converged = change <= tol
            estimate = value
            if beta <= 1e-6 * abs(value):  # the space no longer grows (to float32 precision)
                converged = True
            if converged:
                break
            betas.append(beta)
            vector = [w / beta for w in product]
    return HessianEstimate(estimate, steps, tol, converged, relative_change=change, residual=residual)


def hessian_top_eigenvalue(
    model: nn.Module, batches, iterations: int = 20, tol: float = HESSIAN_EIGENVALUE_TOL, seed: int = 0,
    progress: bool = True,
) -> float:
    """The value of `hessian_top_eigenvalue_estimate`."""
    return hessian_top_eigenvalue_estimate(model, batches, iterations, tol, seed, progress).value


def hessian_quadratic_forms(model: nn.Module, batches, vectors: list[list[Tensor]], progress: bool = False) -> list[float]:
    """v^T H v for each of `vectors`, H the Hessian of the mean loss over all of `batches`.

    One forward and one create_graph backward per batch serve every vector (autograd.grad with
    retain_graph), instead of one of each per vector: the same products, summed in the same order
    as `hessian_vector_product`, so the same numbers, at about two thirds of the time (issue 25).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    products = [[torch.zeros_like(p) for p in params] for _ in vectors]
    count = 0
    for x, y in passes(batches, model, "Hessian quadratic forms", progress):
        loss = F.cross_entropy(model(x), y, reduction="sum")
        gradients = torch.autograd.grad(loss, params, create_graph=True)
        for index, (vector, product) in enumerate(zip(vectors, products)):
            last = index == len(vectors) - 1
            pieces = torch.autograd.grad(gradients, params, grad_outputs=vector, retain_graph=not last)
            for total, piece in zip(product, pieces):
                total.add_(piece.detach())
        count += len(y)
    return [_dot(vector, [total / count for total in product]) for vector, product in zip(vectors, products)]


def hutchinson_standard_error(forms: list[float]) -> float:
    """Standard error of the mean of the probes' v^T H v: sample standard deviation / sqrt(probes)."""
    if len(forms) < 2:
        return math.inf
    mean = sum(forms) / len(forms)
    return math.sqrt(sum((form - mean) ** 2 for form in forms) / (len(forms) - 1) / len(forms))


def hessian_trace_estimate(
    model: nn.Module, batches, draws: int = 20, tol: float | None = HESSIAN_TRACE_TOL, seed: int = 0,
    progress: bool = True,
) -> HessianEstimate:
    """Hutchinson's estimate of the Hessian trace, mean of v^T H v over Rademacher v, eval mode.

    Probes come in rounds of HUTCHINSON_ROUND that share each batch's graph (`hessian_quadratic_forms`);
    after each round, from HUTCHINSON_MIN_PROBES probes on, it stops once the standard error is at most
    `tol` x |estimate| (`tol` None: all `draws` probes). The k-th probe is the same whatever the stop.
    Runs on a contiguous copy of a channels_last model (`contiguous_model`).
    """
    if draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    model = contiguous_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    forms: list[float] = []
    converged = False
    with evaluation_mode(model), tqdm(total=draws, desc="Hessian trace", disable=not progress, leave=False) as bar:
        while len(forms) < draws and not converged:
            size = min(HUTCHINSON_ROUND if tol is not None else draws, draws - len(forms))
            vectors = [_random_like(params, generator, rademacher=True) for _ in range(size)]
            forms += hessian_quadratic_forms(model, batches, vectors)
            bar.update(size)
            mean = sum(forms) / len(forms)
            converged = (tol is not None and len(forms) >= min(HUTCHINSON_MIN_PROBES, draws)
                         and hutchinson_standard_error(forms) <= tol * abs(mean))
    mean = sum(forms) / len(forms)
    error = hutchinson_standard_error(forms)
    return HessianEstimate(mean, len(forms), tol, converged, standard_error=error if math.isfinite(error) else None)


def hessian_trace(
    model: nn.Module, batches, draws: int = 20, tol: float | None = None, seed: int = 0, progress: bool = True
) -> float:
    """The value of `hessian_trace_estimate`; by default all `draws` probes (no early stop)."""
    return hessian_trace_estimate(model, batches, draws, tol, seed, progress).value


MEASURES: dict[str, Callable] = {
    "fisher_rao_norm": fisher_rao_norm,
    "fisher_rao_norm_exact": fisher_rao_norm_exact,
    "relative_flatness": relative_flatness,
    "sam_sharpness": sam_sharpness,
    "hessian_top_eigenvalue": hessian_top_eigenvalue,
    "hessian_trace": hessian_trace,
}


# ----------------------------------------------------------------------------------------------
# Independent references on tiny networks (for the book's verification; tests keep their own)
# ----------------------------------------------------------------------------------------------


def exact_hessian(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The full Hessian of the mean loss in all parameters, eval mode (tiny networks only)."""
    names, shapes = zip(*[(name, p.shape) for name, p in model.named_parameters()])
    buffers = dict(model.named_buffers())

    def loss(flat: Tensor) -> Tensor:
        pieces = flat.split([math.prod(shape) for shape in shapes])
        params = {name: piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, {**params, **buffers}, (x,)), y)

    with evaluation_mode(model):
        return torch.autograd.functional.hessian(loss, torch.cat([p.detach().reshape(-1) for p in model.parameters()]))


def verification_table(seed: int = 0, samples: int = 64, batch_size: int = 16) -> "pandas.DataFrame":
    """Each fast measure next to an independent reference on tiny float64 networks, one row each."""
    with single_cpu_thread():
        return _verification_rows(seed, samples, batch_size)


def _verification_rows(seed: int, samples: int, batch_size: int) -> "pandas.DataFrame":
    import pandas as pd

    torch.manual_seed(seed)
    x = torch.randn(samples, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (samples,))
    batches = list(zip(x.split(batch_size), y.split(batch_size)))
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 4)).double()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5), net[1].running_var.uniform_(0.5, 2.0)
    relu = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False)).double()
    hessian = exact_hessian(net, x, y)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    # Without buffers, SAM-sharpness at small rho is E|g . delta| / rho = ||g|| sqrt(2 / (pi P)).
    gradient = torch.autograd.grad(F.cross_entropy(relu(x), y), list(relu.parameters()))
    gradient_norm = math.sqrt(sum(float(g.square().sum()) for g in gradient))
    quiet = dict(progress=False)
    rows = [
        ("relative_flatness", relative_flatness(net, batches, layer=net[3], **quiet),
         relative_flatness_reference(net, batches, layer=net[3]), "double-backward Hessian of the classifier weight"),
        ("fisher_rao_norm (ReLU, no bias, L+1 = 2)", fisher_rao_norm(relu, batches, num_layers=1, **quiet),
         fisher_rao_norm_exact(relu, batches, **quiet), "exact per-sample <theta, grad l_i> by jvp"),
        ("hessian_top_eigenvalue", hessian_top_eigenvalue(net, batches, iterations=100, tol=1e-10, **quiet),
         float(eigenvalues[eigenvalues.abs().argmax()]), "eigvalsh of the exact Hessian"),
        ("hessian_trace (Hutchinson, 200 draws)", hessian_trace(net, batches, draws=200, **quiet),
         float(hessian.trace()), "trace of the exact Hessian"),
        ("sam_sharpness (ReLU net, rho 1e-5, 500 draws)", sam_sharpness(relu, [(x, y)], rho=1e-5, draws=500, **quiet),
         gradient_norm * math.sqrt(2 / (math.pi * count_parameters(relu))), "||g|| sqrt(2 / (pi P)), small-rho limit"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["measure", "ours", "reference", "reference_is"])
