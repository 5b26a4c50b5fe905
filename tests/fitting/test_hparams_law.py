"""The hparams law (orchestrator/fitting/hparams_law.py) against planted ground truth and the published Step Law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.errors import FitError
from orchestrator.fitting.hparams_law import cell_optimum, fit_hparams_law, off_optimum

REFERENCE = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "reference"
K_LR, ALPHA, BETA, K_B, GAMMA = 2.0, -0.6, 0.3, 5e-4, 0.55


def planted(*, noise: float, seed: int = 0, grid: int = 7) -> pd.DataFrame:
    """Runs on a grid of rates x batches per cell whose loss is a convex bowl in (ln lr, ln B), with a cross
    term, centred on the planted law; the grid steps (x2) are coarser than the optimum's position."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (5e7, 1e8, 2e8, 4e8, 8e8):
        for d in (2e9, 5e9, 1.2e10, 3e10):
            lr_opt, b_opt = K_LR * n ** ALPHA * d ** BETA, K_B * d ** GAMMA
            lrs = lr_opt * 2.0 ** (np.arange(grid) - grid // 2 + rng.uniform(-0.5, 0.5))
            bs = b_opt * 2.0 ** (np.arange(grid) - grid // 2 + rng.uniform(-0.5, 0.5))
            for lr in lrs:
                for b in bs:
                    x, y = math.log(lr / lr_opt), math.log(b / b_opt)
                    loss = 2.5 + 0.02 * x * x + 0.01 * y * y + 0.005 * x * y + noise * rng.standard_normal()
                    rows.append((n, d, lr, b, loss))
    return pd.DataFrame(rows, columns=["N", "D", "lr", "batch", "loss"])


def test_planted_law_is_recovered_with_intervals_that_cover_it():
    runs = planted(noise=0.002)
    law, optima = fit_hparams_law(runs.N, runs.D, runs.lr, runs.batch, runs.loss, n_resamples=200)
    assert law.alpha_free and law.resampling.startswith("cells")
    assert law.alpha == pytest.approx(ALPHA, abs=0.05)
    assert law.beta == pytest.approx(BETA, abs=0.05)
    assert law.gamma == pytest.approx(GAMMA, abs=0.05)
    for value, ci in ((ALPHA, law.alpha_ci), (BETA, law.beta_ci), (GAMMA, law.gamma_ci)):
        assert ci.lo <= value <= ci.hi
    # the prediction beyond the cells (2x N and D) lands near the planted optimum
    pr = law.predict(N=1.6e9, D=6e10)
    assert pr.lr == pytest.approx(K_LR * 1.6e9 ** ALPHA * 6e10 ** BETA, rel=0.15)
    assert pr.batch == pytest.approx(K_B * 6e10 ** GAMMA, rel=0.15)


def test_the_vertex_beats_the_grid_argmin():
    # the optimum sits between grid points: the quadratic finds it, the best run is a grid step away
    runs = planted(noise=0.0, grid=5)
    cell = runs[(runs.N == 1e8) & (runs.D == 5e9)]
    c = cell_optimum(cell.lr, cell.batch, cell.loss, N=1e8, D=5e9)
    truth_lr, truth_b = K_LR * 1e8 ** ALPHA * 5e9 ** BETA, K_B * 5e9 ** GAMMA
    assert c.how == "vertex"
    assert c.lr_opt == pytest.approx(truth_lr, rel=1e-6) and c.batch_opt == pytest.approx(truth_b, rel=1e-6)
    assert abs(math.log(c.lr_best_run / truth_lr)) + abs(math.log(c.batch_best_run / truth_b)) > 0.05


def test_an_optimum_beyond_the_tried_batches_is_the_edge_and_says_so():
    lr = np.repeat([1e-3, 2e-3, 4e-3, 8e-3], 3)
    b = np.tile([64.0, 128.0, 256.0], 4)
    x, y = np.log(lr / 3e-3), np.log(b / 16.0)  # best batch 16: below every batch tried
    loss = 3.0 + 0.02 * x ** 2 + 0.01 * y ** 2
    c = cell_optimum(lr, b, loss, N=1e4, D=1e6)
    assert c.how == "edge" and "B* at the low end" in c.edge
    assert c.batch_opt == pytest.approx(64.0)
    assert c.lr_opt == pytest.approx(3e-3, rel=1e-3)  # the rate's own optimum along that edge


def test_one_token_count_is_not_a_law():
    runs = planted(noise=0.0)
    one = runs[runs.D == 2e9]
    with pytest.raises(FitError, match="2 or more token counts"):
        fit_hparams_law(one.N, one.D, one.lr, one.batch, one.loss, n_resamples=0)


def test_off_optimum_names_runs_beyond_the_factor():
    runs = planted(noise=0.0)
    law, _ = fit_hparams_law(runs.N, runs.D, runs.lr, runs.batch, runs.loss, n_resamples=0)
    n, d = 1e8, 5e9
    lr_opt, b_opt = float(law.lr(N=n, D=d)), float(law.batch(D=d))
    off = off_optimum([n, n, n], [d, d, d], [lr_opt * 1.5, lr_opt * 3, lr_opt], [b_opt, b_opt, b_opt / 2.5],
                      law=law, factor=2.0)
    assert [o.what for o in off] == ["lr 3x above lr*", "batch 2.5x below B*"]


@pytest.mark.skipif(not (REFERENCE / "scalebench_lr_bsz_train.csv").is_file(), reason="../shared/reference absent")
def test_step_law_runs_give_intervals_that_hold_the_published_exponents():
    # Li et al. 2025 (Step Law): eta* = 1.79 N^-0.713 D^0.307, B* = 0.58 D^0.571, fitted on these runs
    t = pd.read_csv(REFERENCE / "scalebench_lr_bsz_train.csv")
    law, optima = fit_hparams_law(t.non_embedding_param_size, t.data_size, t.lr, t.bsz, t.lm_loss, n_resamples=300)
    assert len(optima) == 41
    assert law.alpha_ci.lo <= -0.713 <= law.alpha_ci.hi
    assert law.beta_ci.lo <= 0.307 <= law.beta_ci.hi
    assert law.gamma_ci.lo <= 0.571 <= law.gamma_ci.hi


def test_where_the_batch_optimum_lies_past_the_tried_batches_lr_is_read_at_the_batch_kept():
    """A pilot's cells on 2 CPU cores: the loss keeps falling toward smaller batches (more steps), and the rate's
    optimum moves with the batch (planted lr* ~ B^0.5, the square-root rule for Adam). The rule keeps the most
    steps tried (D / 2000): its rate must be the optimum at that batch, not at the cells' average batch (D / 1000,
    a rate 1.41x too high)."""
    from orchestrator.fitting.hparams_law import fit_pooled_law
    rng = np.random.default_rng(5)
    rows = []
    for n in (7e3, 1.4e4, 2.8e4):
        for d in (2.5e5, 5e5, 1e6):
            for steps in (500, 1000, 2000):
                b = d / steps
                lr_opt = 0.5 * n ** -0.5 * d ** 0.1 * (steps / 1000) ** -0.5  # lr* = ... (B / (D / 1000))^0.5
                for lr in lr_opt * np.exp(rng.uniform(-1.2, 1.2, 4)):
                    loss = 3.0 + 0.05 * math.log(lr / lr_opt) ** 2 - 0.02 * math.log(steps / 1000) \
                        + 0.001 * rng.standard_normal()
                    rows.append((n, d, lr, b, loss))
    N, D, lr, b, loss = (np.array(c) for c in zip(*rows))
    law, optima = fit_pooled_law(N, D, lr, b, loss, n_resamples=0)
    assert "(linear)" in law.resampling
    assert law.lr_batch_exponent == pytest.approx(0.5, abs=0.1)
    for n, d in ((7e3, 2.5e5), (2.8e4, 1e6), (5.6e4, 2e6)):  # the last one beyond the cells
        truth = 0.5 * n ** -0.5 * d ** 0.1 * 2 ** -0.5  # at D / 2000
        assert float(law.lr(N=n, D=d)) == pytest.approx(truth, rel=0.1)
    assert all(o.batch_opt == pytest.approx(o.D / 2000, rel=0.01) for o in optima)
