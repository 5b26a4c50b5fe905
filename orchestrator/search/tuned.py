"""Best learning rate per size from a finished search, and its power law lr_opt(N) = k N^p with a CI.

Per study (one model size), the best rate is the vertex of a parabola in ln lr through the finished
trials (loss is close to quadratic in ln lr near the optimum; cf. Wortsman et al. 2023, Porian et al.
2024 fig. 3) when the vertex lies inside the tried rates, else the best trial's rate. The power law
is least squares in log-log space (powerlaw.fit_power_law) with a Student-t 95% interval on p.
Pure functions over `optuna` frozen trials and numbers; no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna
from scipy import stats

from orchestrator.fitting.isoflop import fit_parabola
from orchestrator.fitting.powerlaw import fit_power_law

MIN_FINISHED = 1


@dataclass(frozen=True)
class SizeBest:
    """One study's outcome: N_total, the best rate (`lr_opt`, the vertex or the best trial), its loss."""

    study: str
    N_total: float
    lr_opt: float
    lr_best_trial: float
    loss_best_trial: float
    how: str
    """vertex (parabola in ln lr) or best_trial."""
    n_finished: int
    n_pruned: int
    flops: float
    """Training FLOPs the study spent (pruned trials up to the pruning point)."""
    tokens: float = math.nan
    """D of the study's point."""
    compute: float = math.nan
    """C of the study's point: its budget, else its exact FLOPs."""

    def of(self, variable: str) -> float:
        return {"N": self.N_total, "D": self.tokens, "C": self.compute}[variable]


@dataclass(frozen=True)
class LRLaw:
    """lr_opt = k x^p with x the trial's N (N_total), D (tokens) or C (its budget, else C_exact): `of`; p_lo, p_hi
    the 95% interval of p (NaN with fewer than 3 points). The best rate falls with model size (Porian et al.
    2024, Fig. 3) and, at fixed size, with the training horizon (DeepSeek LLM 2024 fit eta_opt(C))."""

    k: float
    p: float
    p_lo: float
    p_hi: float
    n: int
    of: str = "N"

    def __call__(self, *, N: float, D: float, C: float) -> float:
        return float(self.k * {"N": N, "D": D, "C": C}[self.of] ** self.p)


def size_best(study: optuna.study.Study) -> SizeBest | None:
    """The study's best rate; None when no trial finished."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    if len(done) < MIN_FINISHED:
        return None
    flops = sum(float(t.user_attrs.get("flops", 0.0)) for t in done + pruned)
    best = min(done, key=lambda t: t.value)
    lr_best = float(best.params["lr"])
    lr_opt, how = lr_best, "best_trial"
    # The final losses of the finished trials; with fewer than 3 rates finished (the rest pruned), the
    # intermediate eval losses at the latest step that at least 3 rates reached (same tokens, comparable).
    candidates = [(np.log([t.params["lr"] for t in done]), np.array([t.value for t in done]), "vertex")]
    steps = sorted({s for t in done + pruned for s in t.intermediate_values}, reverse=True)
    for step in steps:
        at = [t for t in done + pruned if step in t.intermediate_values]
        if len(at) >= 3:
            candidates.append((np.log([t.params["lr"] for t in at]),
                               np.array([t.intermediate_values[step] for t in at]), f"vertex@step{step}"))
            break
    for x, y, label in candidates:
        if len(np.unique(np.round(x, 9))) >= 3:
            (c0, c1, c2), _ = fit_parabola(x, y)
            if c2 > 0 and x.min() <= -c1 / (2 * c2) <= x.max():
                lr_opt, how = float(math.exp(-c1 / (2 * c2))), label
                break
    attrs = study.user_attrs
    budget = attrs.get("budget")
    return SizeBest(study=study.study_name, N_total=float(attrs["N_total"]), lr_opt=lr_opt,
                    lr_best_trial=lr_best, loss_best_trial=float(best.value), how=how, n_finished=len(done),
                    n_pruned=len(pruned), flops=flops, tokens=float(attrs.get("tokens") or math.nan),
                    compute=float(budget if budget is not None else attrs.get("C_exact") or math.nan))


def search_results(storage: optuna.storages.BaseStorage, sweep: str) -> list[SizeBest]:
    """Every study of `sweep` in `storage` that has a finished trial, by size."""
    names = [n for n in optuna.study.get_all_study_names(storage) if n.startswith(f"{sweep}/")]
    found = [size_best(optuna.load_study(study_name=n, storage=storage)) for n in names]
    return sorted((b for b in found if b is not None), key=lambda b: b.N_total)


def fit_lr_law(best: list[SizeBest], *, of: str = "N") -> LRLaw:
    """lr_opt = k x^p through the per-point rates, x = N, D or C (`of`); one distinct x: p = 0, the rate itself."""
    x = np.array([b.of(of) for b in best], dtype=float)
    lr = np.array([b.lr_opt for b in best])
    if not np.isfinite(x).all():
        raise ValueError(f"search.lr_law_of={of}: the search's points do not record {of} (rerun the search).")
    if len(np.unique(x)) == 1:
        return LRLaw(k=float(np.exp(np.mean(np.log(lr)))), p=0.0, p_lo=math.nan, p_hi=math.nan, n=len(x), of=of)
    law = fit_power_law(x, lr, what=f"lr_opt({of})")
    lo = hi = math.nan
    if len(np.unique(x)) >= 3:
        lx, ly = np.log(x), np.log(lr)
        resid = ly - math.log(law.k) - law.p * lx
        se = math.sqrt(np.sum(resid ** 2) / (len(x) - 2) / np.sum((lx - lx.mean()) ** 2))
        half = stats.t.ppf(0.975, len(x) - 2) * se
        lo, hi = law.p - half, law.p + half
    return LRLaw(k=law.k, p=law.p, p_lo=lo, p_hi=hi, n=len(x), of=of)
