"""The seven two-dimensional test functions of the paper and the geometry of their minima.

Every function is written once, in torch, so that the same expression gives values on a grid
(for plots), gradients and Hessians by autograd (for the tables), and targets for the networks of
the fitting chapter. Hessians are always taken in float64: the paper's tables print up to six
significant digits and Rosenbrock's condition number (~2508) leaves little room in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

Tensor = torch.Tensor


def _sphere(x: Tensor, y: Tensor) -> Tensor:
    return x**2 + y**2


def _rosenbrock(x: Tensor, y: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    return (a - x) ** 2 + b * (y - x**2) ** 2


def _rastrigin(x: Tensor, y: Tensor, A: float = 10.0) -> Tensor:
    return 2 * A + (x**2 - A * torch.cos(2 * math.pi * x)) + (y**2 - A * torch.cos(2 * math.pi * y))


def _beale(x: Tensor, y: Tensor) -> Tensor:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _booth(x: Tensor, y: Tensor) -> Tensor:
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _three_hump_camel(x: Tensor, y: Tensor) -> Tensor:
    return 2 * x**2 - 1.05 * x**4 + x**6 / 6 + x * y + y**2


def _himmelblau(x: Tensor, y: Tensor) -> Tensor:
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


@dataclass(frozen=True)
class ToyFunction:
    """A test function with its global minima, default parameters and a sensible plotting box."""

    name: str
    label: str
    formula: str  # LaTeX, for the book
    expression: Callable[..., Tensor]
    minima: tuple[tuple[float, float], ...]
    domain: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max
    params: Mapping[str, float] = field(default_factory=dict)
    # Parameter a reader may vary with a slider: name -> (low, high).
    param_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, x, y, **params) -> Tensor:
        merged = self.resolve_params(params)
        return self.expression(torch.as_tensor(x), torch.as_tensor(y), **merged)

    def resolve_params(self, params: Mapping[str, float]) -> dict[str, float]:
        unknown = set(params) - set(self.params)
        if unknown:
            accepted = ", ".join(sorted(self.params)) or "none"
            raise ValueError(
                f"{self.name} has no parameter(s) {sorted(unknown)}; accepted parameters: {accepted}"
            )
        return {**self.params, **params}

    def minima_for(self, **params) -> list[tuple[float, float]]:
        """Global minima, following parameters that move them (Rosenbrock's lies at (a, a^2))."""
        merged = self.resolve_params(params)
        if self.name == "rosenbrock":
            return [(merged["a"], merged["a"] ** 2)]
        return list(self.minima)


FUNCTIONS: dict[str, ToyFunction] = {
    f.name: f
    for f in [
        ToyFunction("sphere", "Sphere", r"x^2 + y^2", _sphere, ((0.0, 0.0),), (-3.5, 3.5, -3.5, 3.5)),
        ToyFunction(
            "rosenbrock",
            "Rosenbrock",
            r"(a - x)^2 + b\,(y - x^2)^2",
            _rosenbrock,
            ((1.0, 1.0),),
            (-2.0, 2.0, -1.0, 3.0),
            params={"a": 1.0, "b": 100.0},
            param_ranges={"a": (0.5, 1.5), "b": (1.0, 200.0)},
        ),
        ToyFunction(
            "rastrigin",
            "Rastrigin",
            r"2A + \sum_{u \in \{x, y\}} \left(u^2 - A\cos 2\pi u\right)",
            _rastrigin,
            ((0.0, 0.0),),
            (-3.5, 3.5, -3.5, 3.5),
            params={"A": 10.0},
            param_ranges={"A": (0.0, 20.0)},
        ),
        ToyFunction(
            "beale",
            "Beale",
            r"(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2",
            _beale,
            ((3.0, 0.5),),
            (-4.5, 4.5, -4.5, 4.5),
        ),
        ToyFunction(
            "booth", "Booth", r"(x + 2y - 7)^2 + (2x + y - 5)^2", _booth, ((1.0, 3.0),), (-10, 10, -10, 10)
        ),
        ToyFunction(
            "three_hump_camel",
            "Three-hump camel",
            r"2x^2 - 1.05x^4 + \tfrac{x^6}{6} + xy + y^2",
            _three_hump_camel,
            ((0.0, 0.0),),
            (-2.5, 2.5, -2.5, 2.5),
        ),
        ToyFunction(
            "himmelblau",
            "Himmelblau",
            r"(x^2 + y - 11)^2 + (x + y^2 - 7)^2",
            _himmelblau,
            ((3.0, 2.0), (-2.805118, 3.131312), (-3.77931, -3.283186), (3.584428, -1.848126)),
            (-5.0, 5.0, -5.0, 5.0),
        ),
    ]
}


def get(name: str) -> ToyFunction:
    """Look a function up by name, with an error that lists the accepted names."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown toy function {name!r}; accepted: {', '.join(FUNCTIONS)}") from None


def hessian(name: str, point, **params) -> np.ndarray:
    """2x2 Hessian at `point` by autograd (float64)."""
    function = get(name)
    merged = function.resolve_params(params)
    at = torch.as_tensor(point, dtype=torch.float64)

    def value(xy: Tensor) -> Tensor:
        return function.expression(xy[0], xy[1], **merged)

    return torch.autograd.functional.hessian(value, at).numpy()


@dataclass(frozen=True)
class HessianStats:
    condition_number: float
    trace: float
    determinant: float
    max_eigenvalue: float
    eigenvalues: tuple[float, float]
    eigenvectors: np.ndarray  # columns, matching `eigenvalues` (ascending)

    def as_dict(self) -> dict[str, float]:
        return {
            "condition_number": self.condition_number,
            "hessian_trace": self.trace,
            "hessian_determinant": self.determinant,
            "max_eigenvalue": self.max_eigenvalue,
        }


def hessian_stats(name: str, point, **params) -> HessianStats:
    """Curvature summary at a point: condition number |l_max / l_min|, trace, determinant, l_max."""
    H = hessian(name, point, **params)
    eigenvalues, eigenvectors = np.linalg.eigh(H)
    magnitudes = np.abs(eigenvalues)
    condition = float(magnitudes.max() / magnitudes.min()) if magnitudes.min() > 0 else math.inf
    return HessianStats(
        condition_number=condition,
        trace=float(np.trace(H)),
        determinant=float(np.linalg.det(H)),
        max_eigenvalue=float(eigenvalues.max()),
        eigenvalues=(float(eigenvalues[0]), float(eigenvalues[1])),
        eigenvectors=eigenvectors,
    )


def minima_table(**params_by_function) -> list[dict]:
    """One row per global minimum of every function: the content of the paper's Tables 1-2."""
    rows = []
    for name, function in FUNCTIONS.items():
        params = params_by_function.get(name, {})
        for x, y in function.minima_for(**params):
            stats = hessian_stats(name, (x, y), **params)
            rows.append({"function": name, "x": x, "y": y, **stats.as_dict()})
    return rows


def formulas_markdown() -> str:
    """A Markdown list of the functions, their formulas and default parameters, for the book."""
    lines = []
    for f in FUNCTIONS.values():
        params = ", ".join(f"${k} = {v:g}$" for k, v in f.params.items())
        minima = "; ".join(f"$({x:g}, {y:g})$" for x, y in f.minima)
        lines.append(
            f"- **{f.label}**: $f(x, y) = {f.formula}$" + (f" with {params}" if params else "") + f"; minimum at {minima}"
        )
    return "\n".join(lines)


def grid(name: str, resolution: int = 101, domain=None, **params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values on a regular grid over the function's box (or `domain`): xs, ys, z[len(ys), len(xs)]."""
    function = get(name)
    x_min, x_max, y_min, y_max = domain or function.domain
    xs = torch.linspace(x_min, x_max, resolution, dtype=torch.float64)
    ys = torch.linspace(y_min, y_max, resolution, dtype=torch.float64)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    Z = function(X, Y, **params)
    return xs.numpy(), ys.numpy(), Z.numpy()
