"""The paper's claims about the controls, tested claim by claim: paired tests over matched seeds, Holm-corrected.

The paper's central observation is five claims about a regularised control against the baseline: it is
sharper, more accurate, better calibrated, more robust to corruptions and more consistent across seeds.
Each (claim, control) gets one decision, from a one-sided paired test over the seeds both runs share
(seed k of every control starts from the same weights and sees the same data order), and the decisions
of a tally are corrected together for the number of tests with Holm's step-down method.

Which test decides. A one-sided **paired t-test**: its p-value is continuous at small n. The Wilcoxon
signed-rank test is shown beside it but does not decide: with n pairs its smallest one-sided p is 2^-n
(n = 5: 1/32 = 0.031), and Holm needs the smallest of m p-values below 0.05/m, so with m >= 2 tests
at n = 5 no Wilcoxon result could ever pass. The t-test assumes roughly normal seed-to-seed differences;
with 3 to 10 seeds that cannot be checked, which is why the Wilcoxon p stays beside it.

Correlated measures count once. The sharpness measures come in four families that measure overlapping
things (`SHARPNESS_FAMILIES`); each family is represented by one measure (`DECIDING`), and a control is
"sharper" when a majority of the families it was measured by are (the other variants are shown, not
counted). Prediction disagreement is not tested: a run's value is its mean disagreement with the other
seeds of its control, so the per-seed values share pairs and are not independent; its direction is shown.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..training import minimum

ALPHA = 0.05
#: Fewer paired seeds than this and a comparison is "not enough seeds" (a t-test on 2 pairs has 1 d.o.f.).
MIN_SEEDS = 3
#: Families of correlated sharpness measures and the measure that represents each in the tally.
SHARPNESS_FAMILIES = {
    "Fisher-Rao": ("fisher_rao_norm", "fisher_rao_norm_exact"),
    "relative flatness": ("relative_flatness", "relative_flatness_paper"),
    "SAM-sharpness": ("sam_sharpness",),
    "Hessian": ("hessian_top_eigenvalue", "hessian_trace"),
}
DECIDING = {"Fisher-Rao": "fisher_rao_norm", "relative flatness": "relative_flatness",
            "SAM-sharpness": "sam_sharpness", "Hessian": "hessian_top_eigenvalue"}
#: The claims, each with its metrics and the direction the paper claims for a regularised control.
CLAIMS = {
    "sharper": (tuple(DECIDING.values()), "greater"),
    "more accurate": (("test_accuracy",), "greater"),
    "better calibrated": (("test_ece",), "less"),
    "more robust to corruptions": (("corruption_accuracy",), "greater"),
    "more consistent across seeds": (("prediction_disagreement",), "less"),
}
UNTESTED = {"more consistent across seeds": "not tested: a run's disagreement is shared with the other seeds' runs"}
HOLDS, AGAINST, NOT_SHOWN, FEW_SEEDS, NO_DATA, NOT_TESTED = (
    "holds", "against", "not shown", "not enough seeds", "no data", "not tested")


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test).

    The i-th smallest of m p-values is multiplied by (m - i + 1); the running maximum keeps the adjusted
    values in the order of the raw ones; nothing exceeds 1. A hypothesis is rejected at level a when its
    adjusted p is below a, which is Holm's procedure.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def _one_sided_t(differences: np.ndarray, alternative: str) -> float:
    if np.all(differences == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical differences: t is infinite, p is 0
        return float(stats.ttest_1samp(differences, 0.0, alternative=alternative).pvalue)


def paired_test(runs: pd.DataFrame, metric: str, control: str, baseline: str, alternative: str) -> dict:
    """One-sided paired t-test (deciding) and Wilcoxon (beside) of `control` against `baseline` on `metric`,
    over the seeds both have a value for; `alternative` "greater" or "less" is the claim's direction."""
    by_seed = {name: runs[runs["control"] == name].set_index("seed")[metric] for name in (control, baseline)}
    by_seed = {name: values[np.isfinite(values.astype(float))] for name, values in by_seed.items()}  # no comparison
    seeds = sorted(set(by_seed[control].index) & set(by_seed[baseline].index))
    row = {"control": control, "baseline": baseline, "metric": metric, "n": len(seeds), "seeds": seeds,
           "difference": np.nan, "p": np.nan, "p_against": np.nan, "p_wilcoxon": np.nan}
    if not seeds:
        return row
    differences = by_seed[control].loc[seeds].to_numpy(float) - by_seed[baseline].loc[seeds].to_numpy(float)
    row["difference"] = float(differences.mean())
    if len(seeds) < 2:
        return row
    against = "less" if alternative == "greater" else "greater"
    row["p"], row["p_against"] = _one_sided_t(differences, alternative), _one_sided_t(differences, against)
    if np.any(differences != 0):
        row["p_wilcoxon"] = float(stats.wilcoxon(differences, alternative=alternative).pvalue)
    return row


def claim_tests(runs: pd.DataFrame, baseline: str = "baseline", controls=None) -> pd.DataFrame:
    """Every (claim, control, measure) test of one (dataset, arch): n, mean difference, the t-test's p,
    its Holm-adjusted p over the tally's tests (only deciding measures with n >= MIN_SEEDS count), the
    Wilcoxon p beside it, and the test's verdict ("holds", "against", "not shown", "not enough seeds").

    Tests against the claim (the opposite one-sided t-test) are Holm-corrected as a family of their own.
    """
    for key in ("dataset", "arch"):
        if key in runs.columns and runs[key].nunique() > 1:
            raise ValueError(f"runs span several {key}s {sorted(runs[key].unique())}; test one setting at a time")
    controls = [c for c in (controls or runs["control"].unique()) if c != baseline]
    rows = []
    for claim, (metrics, alternative) in CLAIMS.items():
        measures = metrics if claim != "sharper" else [m for family in SHARPNESS_FAMILIES.values() for m in family]
        for metric in measures:
            if metric not in runs.columns:
                continue
            family = next((f for f, members in SHARPNESS_FAMILIES.items() if metric in members), None)
            for control in controls:
                test = paired_test(runs, metric, control, baseline, alternative)
                deciding = claim not in UNTESTED and (claim != "sharper" or DECIDING[family] == metric)
                rows.append({"claim": claim, "family": family, "deciding": deciding, "alternative": alternative, **test})
    columns = ["claim", "family", "deciding", "alternative", "control", "baseline", "metric", "n", "seeds",
               "difference", "p", "p_against", "p_wilcoxon"]
    tests = pd.DataFrame(rows, columns=columns).astype({"deciding": bool, "n": int})
    counted = tests["deciding"] & (tests["n"] >= MIN_SEEDS) & tests["p"].notna()
    tests["p_holm"] = np.nan
    tests["p_against_holm"] = np.nan
    tests.loc[counted, "p_holm"] = holm(tests.loc[counted, "p"])
    tests.loc[counted, "p_against_holm"] = holm(tests.loc[counted, "p_against"])
    tests["verdict"] = [_verdict(row) for row in tests.to_dict("records")]
    return tests


def _verdict(test: dict) -> str:
    if test["claim"] in UNTESTED:
        return NOT_TESTED
    if test["n"] < MIN_SEEDS:
        return FEW_SEEDS
    if not test["deciding"] or math.isnan(test["p_holm"]):
        return NOT_SHOWN
    if test["p_holm"] < ALPHA:
        return HOLDS
    if test["p_against_holm"] < ALPHA:
        return AGAINST
    return NOT_SHOWN


def verdicts(tests: pd.DataFrame) -> pd.DataFrame:
    """One verdict per (claim, control) from `claim_tests`: the deciding test's, and for "sharper" the
    majority of the families measured (holds / against when more than half of them do; not enough seeds
    when no family has MIN_SEEDS pairs)."""
    rows = []
    for (claim, control), block in tests.groupby(["claim", "control"], sort=False):
        deciding = block[block["deciding"]] if claim not in UNTESTED else block
        found = list(deciding["verdict"]) or [NO_DATA]
        n = int(deciding["n"].max()) if len(deciding) else 0
        if claim in UNTESTED:
            verdict = NOT_TESTED
        elif all(v == FEW_SEEDS for v in found):
            verdict = FEW_SEEDS
        elif sum(v == HOLDS for v in found) > len(found) / 2:
            verdict = HOLDS
        elif sum(v == AGAINST for v in found) > len(found) / 2:
            verdict = AGAINST
        else:
            verdict = NOT_SHOWN
        detail = ", ".join(f"{f}: {v}" for f, v in zip(deciding["family"], deciding["verdict"])) if claim == "sharper" else ""
        rows.append({"claim": claim, "control": control, "n": n, "verdict": verdict, "families": detail,
                     "difference": float(deciding["difference"].iloc[0]) if len(deciding) == 1 else np.nan})
    return pd.DataFrame(rows, columns=["claim", "control", "n", "verdict", "families", "difference"])


def claim_summary(verdict_table: pd.DataFrame) -> pd.DataFrame:
    """Per claim: the controls that hold it, go against it, are not shown or have too few seeds, and whether
    it holds (or goes against) for a majority of the controls with enough seeds."""
    by_claim: dict[str, dict[str, list[str]]] = {}
    for row in verdict_table.to_dict("records"):  # plain Python: this runs for every row of the ledger
        by_claim.setdefault(row["claim"], {v: [] for v in (HOLDS, AGAINST, NOT_SHOWN, FEW_SEEDS, NOT_TESTED)})
        by_claim[row["claim"]].setdefault(row["verdict"], []).append(row["control"])
    rows = []
    for claim, by in by_claim.items():
        tested = len(by[HOLDS]) + len(by[AGAINST]) + len(by[NOT_SHOWN])
        rows.append({"claim": claim, "tested": tested, "holds for": by[HOLDS], "against": by[AGAINST],
                     "not shown": by[NOT_SHOWN], "too few seeds": by[FEW_SEEDS],
                     "majority": (HOLDS if tested and len(by[HOLDS]) > tested / 2 else
                                  AGAINST if tested and len(by[AGAINST]) > tested / 2 else
                                  NOT_TESTED if claim in UNTESTED else FEW_SEEDS if not tested else NOT_SHOWN)})
    return pd.DataFrame(rows, columns=["claim", "tested", "holds for", "against", "not shown", "too few seeds", "majority"])


def summary_sentence(summary: pd.DataFrame) -> str:
    """Claim by claim, in words: which controls hold it (Holm-corrected paired t-test at ALPHA)."""
    parts = []
    for row in summary.to_dict("records"):
        if row["majority"] == NOT_TESTED:
            parts.append(f"{row['claim']}: {UNTESTED[row['claim']]}")
            continue
        if not row["tested"]:
            parts.append(f"{row['claim']}: not enough seeds")
            continue
        text = f"{row['claim']}: {len(row['holds for'])} of {row['tested']} ({', '.join(row['holds for']) or 'none'})"
        if row["against"]:
            text += f", against for {', '.join(row['against'])}"
        parts.append(text)
    return "; ".join(parts)


def smallest_wilcoxon_p(n: int) -> float:
    """The smallest one-sided Wilcoxon signed-rank p-value attainable with n pairs: 2^-n."""
    return 2.0 ** -n if n else math.nan


def resolution_note(tests: pd.DataFrame) -> str:
    """What the tests can resolve at the n they have: the Holm threshold for the smallest p, and the
    smallest Wilcoxon p at that n (which is why the t-test decides)."""
    counted = tests[tests["deciding"] & (tests["n"] >= MIN_SEEDS)]
    if counted.empty:
        low = int(tests["n"].max()) if len(tests) else 0
        return (f"No comparison has {MIN_SEEDS} or more paired seeds (at most {low}): not enough seeds for a test.")
    m, n_low, n_high = len(counted), int(counted["n"].min()), int(counted["n"].max())
    n_text = f"n = {n_low}" if n_low == n_high else f"n = {n_low} to {n_high}"
    wilcoxon = smallest_wilcoxon_p(n_low)
    return (f"{m} tests decide ({n_text} paired seeds). Holm's correction asks the smallest p to be below "
            f"{ALPHA:g}/{m} = {ALPHA / m:.2g}. The smallest one-sided Wilcoxon p at n = {n_low} is "
            f"2^-{n_low} = {wilcoxon:.3g}" + (", so no Wilcoxon test could pass: the paired t-test, whose p is "
                                              "continuous, decides; Wilcoxon is shown beside it."
                                              if wilcoxon >= ALPHA / m else
                                              "; the paired t-test decides, Wilcoxon is shown beside it."))


def mean_verdicts(long: pd.DataFrame, baseline: str = "baseline", controls=None) -> pd.DataFrame:
    """Per (claim, control), the direction of the means only ("holds" / "against"), for figures printed
    without per-seed values (the paper's tables): `long` has control, metric, mean. "sharper" by the
    majority of the deciding measures present, as in `verdicts`; no test, so nothing is "not shown"."""
    means: dict[tuple[str, str], float] = {}
    for control, metric, mean in zip(long["control"], long["metric"], long["mean"]):
        means.setdefault((control, metric), float(mean))
    present_controls = list(dict.fromkeys(long["control"]))
    if baseline not in present_controls:
        return pd.DataFrame(columns=["claim", "control", "n", "verdict", "families", "difference"])
    controls = [c for c in (controls or present_controls) if c != baseline and c in present_controls]
    rows = []
    for claim, (metrics, alternative) in CLAIMS.items():
        for control in controls:
            signs = [np.sign(means[control, m] - means[baseline, m]) * (1 if alternative == "greater" else -1)
                     for m in metrics if np.isfinite(means.get((control, m), np.nan))
                     and np.isfinite(means.get((baseline, m), np.nan))]  # an infinite or missing mean is no comparison
            if not signs:
                continue
            ahead, behind = sum(s > 0 for s in signs), sum(s < 0 for s in signs)
            verdict = HOLDS if ahead > len(signs) / 2 else AGAINST if behind > len(signs) / 2 else NOT_SHOWN
            rows.append({"claim": claim, "control": control, "n": np.nan, "verdict": verdict,
                         "families": f"{ahead} of {len(signs)} measures" if claim == "sharper" else "",
                         "difference": np.nan})
    return pd.DataFrame(rows, columns=["claim", "control", "n", "verdict", "families", "difference"])


def by_radius(runs: pd.DataFrame) -> pd.DataFrame:
    """A rho sweep's runs with each radius as a 'control' named 'rho <r>', so that radii are compared
    like controls (seed k of every radius starts from the same weights)."""
    return runs.assign(control=[f"rho {r:g}" for r in runs["rho"]])


@dataclass
class Tally:
    """The claims tested on one setting's runs: over the runs at a minimum (what decides), and over every
    finished run (shown beside, labelled), with the minimum check they were filtered by."""

    checked: pd.DataFrame  # minimum.check of every run
    tests: pd.DataFrame  # claim_tests over the runs at a minimum
    summary: pd.DataFrame  # claim_summary of those
    all_tests: pd.DataFrame  # claim_tests over every finished run
    all_summary: pd.DataFrame

    @property
    def runs_at_minimum(self) -> str:
        return f"{int(self.checked['at_minimum'].sum())} of {len(self.checked)}"

    def left_out(self) -> list[str]:
        """Controls with enough paired seeds among all runs but not among the runs at a minimum."""
        enough = lambda tests: set(tests.loc[tests["n"] >= MIN_SEEDS, "control"])  # noqa: E731
        return sorted(enough(self.all_tests) - enough(self.tests))


def tally(runs: pd.DataFrame, history: pd.DataFrame, baseline: str = "baseline", controls=None) -> Tally:
    """`claim_tests` of one setting's finished runs, those at a minimum (`minimum.check` against
    `history`) deciding; `controls` None: every control of the runs."""
    finished = runs[runs["status"] == "finished"] if "status" in runs.columns else runs
    checked = minimum.check(runs, history)
    kept = minimum.at_minimum(finished, checked)
    controls = controls or [c for c in dict.fromkeys(finished["control"]) if c != baseline]  # listed even without minima
    tests, all_tests = claim_tests(kept, baseline, controls), claim_tests(finished, baseline, controls)
    return Tally(checked, tests, claim_summary(verdicts(tests)), all_tests, claim_summary(verdicts(all_tests)))
