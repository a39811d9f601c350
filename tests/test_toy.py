"""The toy functions against independent truths: the paper's tables, hand-derived Hessians, finite differences."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sharpness.core.paths import REFERENCE_DIR
from sharpness.toys import toy

REFERENCE = pd.read_csv(REFERENCE_DIR / "toy_hessians.csv", dtype=str)
COLUMNS = ("condition_number", "hessian_trace", "hessian_determinant", "max_eigenvalue")


def printed_tolerance(text: str) -> float:
    """Half a unit in the last printed digit ('157438.0' was printed as an integer: tolerance 0.5)."""
    if "." not in text or text.endswith(".0"):
        return 0.5
    return 0.5 * 10 ** -len(text.split(".")[1])


@pytest.mark.parametrize("row", REFERENCE.to_dict("records"), ids=lambda r: f"{r['function']}@{r['x']},{r['y']}")
def test_hessian_stats_match_paper_tables_to_printed_precision(row):
    point = (float(row["x"]), float(row["y"]))
    ours = toy.hessian_stats(row["function"], point).as_dict()
    for column in COLUMNS:
        assert ours[column] == pytest.approx(float(row[column]), abs=printed_tolerance(row[column])), column


def test_every_reference_minimum_is_in_the_library_and_vice_versa():
    ours = {(r["function"], round(r["x"], 4), round(r["y"], 4)) for r in toy.minima_table()}
    paper = {(r["function"], round(float(r["x"]), 4), round(float(r["y"]), 4)) for r in REFERENCE.to_dict("records")}
    assert ours == paper


def test_minima_are_stationary_and_lowest_on_a_grid():
    for name, function in toy.FUNCTIONS.items():
        for x, y in function.minima:
            at = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
            value = function(at[0], at[1])
            (gradient,) = torch.autograd.grad(value, at)
            assert gradient.norm() < 1e-3, name  # Himmelblau's minima are printed to 6 decimals
        _, _, z = toy.grid(name, 201)
        minimum = min(float(function(x, y)) for x, y in function.minima)
        assert minimum <= z.min() + 1e-9, name


def test_hessians_against_hand_derivations():
    # Rosenbrock at (a, a^2): [[2 + 8 b a^2, -4 b a], [-4 b a, 2 b]]
    a, b = 1.3, 37.0
    expected = np.array([[2 + 8 * b * a**2, -4 * b * a], [-4 * b * a, 2 * b]])
    np.testing.assert_allclose(toy.hessian("rosenbrock", (a, a**2), a=a, b=b), expected, rtol=1e-12)
    # Rastrigin at 0: (2 + 4 pi^2 A) I
    np.testing.assert_allclose(toy.hessian("rastrigin", (0, 0), A=3.0), (2 + 12 * math.pi**2) * np.eye(2), rtol=1e-12)
    # Booth is quadratic: constant Hessian [[10, 8], [8, 10]]
    np.testing.assert_allclose(toy.hessian("booth", (-4.2, 7.7)), [[10, 8], [8, 10]], rtol=1e-12)


@pytest.mark.parametrize("name", list(toy.FUNCTIONS))
def test_hessian_matches_central_finite_differences(name):
    rng = np.random.default_rng(0)
    x_min, x_max, y_min, y_max = toy.get(name).domain
    point = (rng.uniform(x_min, x_max) / 2, rng.uniform(y_min, y_max) / 2)
    f = lambda p: float(toy.get(name)(torch.tensor(p[0], dtype=torch.float64), torch.tensor(p[1], dtype=torch.float64)))
    h = 1e-4
    numeric = np.zeros((2, 2))
    for i in range(2):
        for j in range(2):
            e_i, e_j = np.eye(2)[i] * h, np.eye(2)[j] * h
            p = np.array(point)
            numeric[i, j] = (f(p + e_i + e_j) - f(p + e_i - e_j) - f(p - e_i + e_j) + f(p - e_i - e_j)) / (4 * h * h)
    np.testing.assert_allclose(toy.hessian(name, point), numeric, rtol=1e-4, atol=1e-3)


def test_condition_number_uses_absolute_eigenvalues_at_saddles():
    stats = toy.hessian_stats("rosenbrock", (0.5, 1.0))  # a saddle region: one negative eigenvalue
    low, high = stats.eigenvalues
    assert low < 0 < high
    assert stats.condition_number == pytest.approx(max(abs(low), abs(high)) / min(abs(low), abs(high)))
    assert stats.determinant == pytest.approx(low * high)


def test_bad_names_and_parameters_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"'spheer'.*accepted: sphere, rosenbrock"):
        toy.get("spheer")
    with pytest.raises(ValueError, match=r"\['c'\].*accepted parameters: a, b"):
        toy.hessian_stats("rosenbrock", (1, 1), c=2.0)
    with pytest.raises(ValueError, match="accepted parameters: none"):
        toy.get("booth")(0.0, 0.0, A=1.0)


def test_rosenbrock_minimum_follows_its_parameter():
    assert toy.get("rosenbrock").minima_for(a=1.5) == [(1.5, 2.25)]
    assert toy.hessian_stats("rosenbrock", (1.5, 2.25), a=1.5).max_eigenvalue > 0


def test_formula_list_names_every_function_with_its_minima():
    text = toy.formulas_markdown()
    for function in toy.FUNCTIONS.values():
        (line,) = [l for l in text.splitlines() if l.startswith(f"- **{function.label}**")]
        assert line.count("$(") == len(function.minima)
    assert "$b = 100$" in text and "$A = 10$" in text
