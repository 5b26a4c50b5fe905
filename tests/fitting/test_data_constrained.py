"""The data-constrained law form (fitting/forms.py; Muennighoff et al. 2023, eq. 5): repeated tokens (R*_D) and
excess parameters (R*_N), fitted as the paper does, on planted laws and on the paper's own runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.forms import (CHINCHILLA, DATA_CONSTRAINED, MUENNIGHOFF_C4_BASE, FormData, compare_forms,
                                        fit_base_law, fit_data_constrained, fit_form, single_epoch)
from orchestrator.fitting.options import FitConfig
from orchestrator.fitting.surface import fit_surface
from orchestrator.fitting.table import tidy_runs

SIX = ComputeModel.constant(6.0)
# Muennighoff et al. 2023 (Sec. 3.1 and App. A; datablations utils/parametric_fit.ipynb): their eq. 5 fit over
# Hoffmann et al.'s C4 law, on 182 runs.
PUBLISHED_R_D, PUBLISHED_R_N = 15.387, 5.309


def planted(sigma: float, seed: int, *, r_d: float = PUBLISHED_R_D, r_n: float = PUBLISHED_R_N
            ) -> tuple[FormData, np.ndarray]:
    """Their law (C4 base, R*_D, R*_N) on a design like theirs: 7 sizes (7M..3B) x 5 unique-token counts
    (100M..30B) x 1..300 epochs up to 300B tokens (168 runs, 35 single-epoch, 107 with excess parameters),
    multiplicative noise sigma."""
    rows = [(N, U * ep, U) for U in np.geomspace(1e8, 3e10, 5) for N in np.geomspace(7e6, 3e9, 7)
            for ep in (1, 3, 10, 30, 100, 300) if U * ep <= 3e11]
    N, D, U = map(np.array, zip(*rows))
    x = FormData.of(N, D, U)
    b = MUENNIGHOFF_C4_BASE
    theta = np.array([[np.log(b.E), np.log(b.A), np.log(b.B), b.alpha, b.beta, np.log(r_d), np.log(r_n)]])
    L = np.exp(DATA_CONSTRAINED.log_loss(theta, x)[0])
    return x, L * np.exp(np.random.default_rng(seed).normal(0, sigma, len(L)))


def test_noise_free_planted_law_is_recovered_exactly():
    # The paper's procedure (base fixed, R*_D and R*_N by L-BFGS from their grid) and the registry's form (base
    # fitted to the single-epoch runs first) both return the planted values on exact data.
    x, L = planted(0.0, 0)
    for fit in (fit_data_constrained(x, L, base=MUENNIGHOFF_C4_BASE), fit_form(DATA_CONSTRAINED, x, L)):
        assert fit.values["R_D_star"] == pytest.approx(PUBLISHED_R_D, rel=1e-4)
        assert fit.values["R_N_star"] == pytest.approx(PUBLISHED_R_N, rel=1e-4)
        assert fit.values["alpha"] == pytest.approx(MUENNIGHOFF_C4_BASE.alpha, rel=1e-4)
        assert not fit.on_bound


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_r_d_and_r_n_recovered_through_noise(seed):
    # 0.5% noise (about the spread of their seed reruns). Over seeds 0..3 the registry's form (the base law fitted
    # too) lands within 6% of both planted values, the fixed-base fit within 4%: 10% leaves room for other seeds.
    x, L = planted(0.005, seed)
    for fit in (fit_data_constrained(x, L, base=MUENNIGHOFF_C4_BASE), fit_form(DATA_CONSTRAINED, x, L)):
        assert fit.values["R_D_star"] == pytest.approx(PUBLISHED_R_D, rel=0.10), fit.note
        assert fit.values["R_N_star"] == pytest.approx(PUBLISHED_R_N, rel=0.10), fit.note


def test_base_law_reads_over_sized_single_epoch_runs_with_the_excess_parameter_term():
    # 20 of the 35 single-epoch runs are larger than their data can use (N > U_N): a plain Chinchilla fit reads
    # their penalty as a steeper law (alpha 0.396 against the planted 0.353); the base fit with the term does not.
    x, L = planted(0.0, 0)
    one = single_epoch(x)
    plain = fit_surface(x.N[one], x.D[one], L[one])
    base, stuck = fit_base_law(x, L)
    assert abs(plain.alpha - MUENNIGHOFF_C4_BASE.alpha) > 0.03
    assert base.alpha == pytest.approx(MUENNIGHOFF_C4_BASE.alpha, rel=1e-4) and not stuck


def test_on_fresh_data_the_form_is_its_base_law():
    # With no unique-token count the data are fresh (D' = D) and the compute-optimal frontier is the base law's:
    # the excess-parameter term only raises the loss of models larger than that optimum.
    x, L = planted(0.0, 0)
    fit = fit_data_constrained(x, L, base=MUENNIGHOFF_C4_BASE)
    b = MUENNIGHOFF_C4_BASE
    N_opt, D_opt = fit.frontier(1e22, compute=SIX)
    G = (b.alpha * b.A / (b.beta * b.B)) ** (1 / (b.alpha + b.beta))  # Hoffmann et al. 2022, eq. 4
    assert N_opt == pytest.approx(G * (1e22 / 6) ** (b.beta / (b.alpha + b.beta)), rel=1e-3)
    N, D = np.array([1e8, 1e9]), np.array([2e9, 2e10])  # below the optimum for D: N' = N, the base law
    np.testing.assert_allclose(fit.loss(N, D), b.E + b.A / N ** b.alpha + b.B / D ** b.beta, rtol=1e-12)


def test_without_unique_tokens_or_repeats_the_form_does_not_apply():
    x, L = planted(0.0, 0)
    with pytest.raises(FitInputError, match="no unique_tokens column"):
        fit_form(DATA_CONSTRAINED, FormData.of(x.N, x.D), L)
    one = single_epoch(x)
    with pytest.raises(FitInputError, match="no run repeats its data"):
        fit_form(DATA_CONSTRAINED, FormData(N=x.N[one], D=x.D[one], U=x.U[one]), L[one])


def muennighoff(reference) -> pd.DataFrame:
    return pd.read_csv(reference("scalebench_data_constrained_train.csv"))


def test_paper_procedure_on_their_runs_reproduces_r_d_and_r_n(reference):
    # Their procedure: base fixed at their C4 law, R*_D and R*_N by L-BFGS from their grid. The CSV holds 161 of
    # their 182 runs (the 4.2B and 8.7B models and the 600B/900B-token runs are not in it); on all 182 (rebuilt
    # from their notebook) this code gives 15.372 and 5.315, on the 161 13.70 (-11%) and 5.80 (+9%). Tolerance:
    # dropping any one model size of the 161 that keeps the fit in the paper's basin moves R*_D over 12.3..13.7
    # and R*_N over 5.80..6.45 (about 10%); the CSV lacks two sizes and more, so 15%.
    d = muennighoff(reference)
    x = FormData.of(d["params"], d["tokens"], d["unique_tokens"])
    L = d["loss"].to_numpy(float)
    fit = fit_data_constrained(x, L, base=MUENNIGHOFF_C4_BASE)
    assert fit.values["R_D_star"] == pytest.approx(PUBLISHED_R_D, rel=0.15)
    assert fit.values["R_N_star"] == pytest.approx(PUBLISHED_R_N, rel=0.15)
    # The published point fits these runs within 0.1% of the fitted objective (the objective is flat along a ridge
    # where R*_D trades against R*_N).
    theta = np.array([fit.theta])
    theta[0, 5:] = np.log([PUBLISHED_R_D, PUBLISHED_R_N])
    r = DATA_CONSTRAINED.log_loss(theta, x)[0] - np.log(L)
    at_published = float(np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 5e-4)).sum())
    assert fit.objective <= at_published < 1.001 * fit.objective


def test_data_constrained_form_wins_on_their_runs_by_held_out_error(reference):
    # The registry's form (base law from their 27 single-epoch runs) predicts the largest budget's 9 runs better
    # than Chinchilla's form: repeated tokens and excess parameters are worth less than fresh ones.
    d = muennighoff(reference).rename(columns={"params": "n_params"})
    runs = tidy_runs(d, options=FitConfig(c_convention="6nd", columns={"flops": None})).runs
    out = compare_forms(runs, compute_for=lambda r: SIX, forms=(CHINCHILLA.name, DATA_CONSTRAINED.name))
    assert out["winner"] == "data_constrained", out["forms"]
    entry = out["forms"]["data_constrained"]
    assert "single-epoch runs" in entry["note"] and not entry["on_bound"]
    assert entry["params"]["R_D_star"] > 1 and entry["params"]["R_N_star"] > 0.1
