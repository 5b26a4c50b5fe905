"""Adaptive IsoFLOP placement (sweep.kind=isoflop, adaptive.enabled=true): sizes where they inform N_opt.

A fixed IsoFLOP grid spends most of its runs far from each budget's minimum. Here each budget starts
with a first wave (the planned `sizes_per_budget` sizes), and after each of its results settles the
`decide` policy fits the parabola L = c0 + c1 ln N + c2 (ln N)^2 (Hoffmann et al. 2022, approach 2;
fitting/isoflop.fit_parabola) and either
- extends the grid one wave step past an edge when the lowest loss sits at the smallest or largest
  size (the minimum is unbracketed), or when the parabola's vertex has fewer than 2 sampled sizes on a
  side (the IsoFLOP fit's edge rule), or
- stops, when the relative uncertainty of N_opt is below `adaptive.tolerance`. The uncertainty
  in ln N is the larger of twice the vertex's standard error from the loss noise (delta method on the
  parabola's covariance, sigma = the trials' eval_loss_se or the residual scatter) and the vertex's
  shift when the size farthest from it is dropped (the parabola is only a local model: Besiroglu et
  al. 2024), or
- adds a size at the current vertex (or, when a size already sits there, in the middle of the wider
  gap beside it): where the vertex is least certain.
It also stops a budget at `adaptive.max_sizes` sizes, when a new size resolves to a shape it
already has, or when the sweep has spent `adaptive.max_flops`. Each decision and its reason is
printed and written to <fit.out_dir, default reports>/<sweep>/adaptive_decisions.json (also attached
to the parent run).
The N_opt of a budget is the vertex through the 4 sizes nearest its lowest loss (`local_vertex`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from trainers.api import Status
from orchestrator.config import Config, reports_dir
from orchestrator.fitting.isoflop import fit_parabola
from orchestrator.planner import PlanError, Trial
from orchestrator.run_tags import Stage
from orchestrator.trial_source import TrialSource
from trainers.config import DataConfig

LOCAL_SIZES = 4


@dataclass
class Profile:
    """One budget's sizes so far: finished (ln N, loss, se) and what is queued or in flight."""

    budget: float
    key: tuple
    step: float
    """ln of the ratio between neighbouring first-wave sizes: how far an edge extension goes."""
    points: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    pending: list[Trial] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)
    stopped: str = ""


def vertex_uncertainty(x: np.ndarray, y: np.ndarray, *, se: float) -> tuple[float, float, float]:
    """(x*, 2 x its standard error from the noise, shift when the farthest size is dropped), in ln N."""
    (c0, c1, c2), sigma = fit_parabola(x, y)
    x_opt = -c1 / (2 * c2)
    sigma = max(sigma, se)
    X = np.stack([np.ones_like(x), x, x * x], axis=1)
    cov = sigma ** 2 * np.linalg.pinv(X.T @ X)
    g = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2 ** 2)])
    noise = 2 * float(np.sqrt(max(g @ cov @ g, 0.0)))
    shift = math.inf
    if len(x) >= 4:
        keep = np.argsort(np.abs(x - x_opt))[:-1]
        (d0, d1, d2), _ = fit_parabola(x[keep], y[keep])
        if d2 > 0:
            shift = abs(-d1 / (2 * d2) - x_opt)
    return float(x_opt), noise, shift


def local_vertex(x: np.ndarray, y: np.ndarray) -> float | None:
    """ln N_opt: the parabola's vertex through the LOCAL_SIZES sizes nearest the lowest loss (None if none)."""
    near = np.argsort(np.abs(x - x[np.argmin(y)]))[:LOCAL_SIZES]
    if len(near) < 3:
        return None
    (c0, c1, c2), _ = fit_parabola(x[near], y[near])
    return float(-c1 / (2 * c2)) if c2 > 0 else None


class AdaptiveIsoFLOP(TrialSource):
    """The TrialSource of adaptive placement (see the module docstring)."""

    def __init__(self, config: Config, *, first_wave: list[Trial], plan_point: Callable[[Profile, float], Trial],
                 previous: dict[str, tuple[str, float | None]]) -> None:
        self.limits, self.plan_point, self.previous = config.adaptive, plan_point, previous
        self.order = config.cluster.order
        self.profiles: dict[tuple, Profile] = {}
        self.spent = 0.0
        self.decisions: list[dict[str, Any]] = []
        for trial in first_wave:
            key = (trial.budget, trial.dataset, trial.config["seed"])
            profile = self.profiles.setdefault(key, Profile(budget=trial.budget, key=key, step=0.0))
            profile.pending.append(trial)
        for profile in self.profiles.values():
            sizes = sorted(t.cost.n_total for t in profile.pending)
            gaps = np.diff(np.log(sizes))
            profile.step = float(np.mean(gaps)) if len(gaps) else math.log(2.0)
            self._log(profile, "first wave", f"{len(sizes)} sizes {', '.join(f'{n:.3g}' for n in sizes)}")
            profile.pending = [t for t in profile.pending if not self._known(profile, t)]
        self._owner: dict[str, Profile] = {}

    def _known(self, profile: Profile, trial: Trial) -> bool:
        """Record a trial finished by an earlier invocation (resume); True when it needs no run."""
        profile.tried.add(trial.trial_id)
        status, loss = self.previous.get(trial.trial_id, (None, None))
        if status == Status.FINISHED and loss is not None:
            profile.points[trial.trial_id] = (math.log(trial.cost.n_total), float(loss), 0.0)
            self.spent += trial.cost.c_exact
            return True
        return status in (Status.DIVERGED, Status.OOM)

    def _log(self, profile: Profile, decision: str, reason: str, **numbers: float) -> None:
        entry = {"budget": profile.budget, "dataset": profile.key[1], "seed": profile.key[2], "decision": decision,
                 "reason": reason, "sizes_done": len(profile.points), **numbers}
        self.decisions.append(entry)
        print(f"adaptive C={profile.budget:.3g}: {decision}: {reason}", flush=True)

    # -- the policy --------------------------------------------------------------------------------
    def decide(self, profile: Profile) -> None:
        """After a budget's results settle: extend, refine or stop (sets profile.pending or .stopped)."""
        x = np.array([p[0] for p in profile.points.values()])
        y = np.array([p[1] for p in profile.points.values()])
        se = float(np.median([p[2] for p in profile.points.values()])) if len(x) else 0.0
        if len(np.unique(np.round(x, 9))) < 3:
            return self._stop(profile, f"only {len(x)} sizes finished: a parabola needs 3")
        order = np.argsort(x)
        best = int(np.argmin(y))
        if best in (order[0], order[-1]):
            low = best == order[0]
            target = math.exp(x[best] + (-1 if low else 1) * profile.step)
            edge = "smallest" if low else "largest"
            return self._add(profile, target, "extend",
                             f"minimum unbracketed: the lowest loss is at the {edge} size N={math.exp(x[best]):.3g}; "
                             f"adding N={target:.3g} one step beyond")
        x_opt, noise, shift = vertex_uncertainty(x, y, se=se)
        # The IsoFLOP fit calls a vertex with fewer than 2 sampled sizes on a side an edge (fitting/isoflop.py):
        # one more size on that side brackets it as the fit and the report's checks require.
        sizes = np.unique(np.round(x, 9))
        below, above = int(np.sum(sizes < x_opt)), int(np.sum(sizes > x_opt))
        if min(below, above) < 2 and np.isfinite(x_opt):
            low = below < above
            target = math.exp((sizes[0] if low else sizes[-1]) + (-1 if low else 1) * profile.step)
            return self._add(profile, target, "extend",
                             f"minimum thinly bracketed: the vertex N={math.exp(x_opt):.3g} has {min(below, above)} "
                             f"sampled size(s) {'below' if low else 'above'} it (2 needed); adding N={target:.3g}")
        width = max(noise, shift)
        numbers = {"N_opt": math.exp(local_vertex(x, y) or x_opt), "rel_uncertainty": math.expm1(width),
                   "noise_rel": math.expm1(noise), "shift_rel": math.expm1(shift) if math.isfinite(shift) else None}
        if math.expm1(width) < self.limits.tolerance:
            return self._stop(profile, f"N_opt={numbers['N_opt']:.3g} known within {100 * math.expm1(width):.1f}% "
                                       f"(< adaptive.tolerance={self.limits.tolerance})", **numbers)
        xs = np.sort(x)
        if np.min(np.abs(xs - x_opt)) > math.log1p(self.limits.tolerance) / 2:
            target, where = math.exp(x_opt), "at the current vertex"
        else:
            i = int(np.searchsorted(xs, x_opt))
            lo_gap = (xs[i - 1], xs[i]) if 0 < i < len(xs) else None
            gaps = [g for g in ((xs[max(i - 2, 0)], xs[i - 1]) if i >= 2 else None, lo_gap,
                                (xs[i], xs[i + 1]) if i + 1 < len(xs) else None) if g is not None]
            a, b = max(gaps, key=lambda g: g[1] - g[0])
            target, where = math.exp((a + b) / 2), "in the widest gap beside the vertex"
        if math.isfinite(shift):
            why = f"{100 * math.expm1(width):.1f}%"
        elif len(x) < 4:
            why = "unknown (4 sizes needed to test the parabola's locality)"
        else:
            why = "unknown (without its farthest size the parabola has no minimum: the profile is not parabolic)"
        return self._add(profile, target, "refine", f"N_opt={numbers['N_opt']:.3g} uncertain by {why}; "
                                                      f"adding N={target:.3g} {where}", **numbers)

    def _stop(self, profile: Profile, reason: str, **numbers: Any) -> None:
        profile.stopped = reason
        self._log(profile, "stop", reason, **numbers)

    def _add(self, profile: Profile, target: float, decision: str, reason: str, **numbers: Any) -> None:
        if len(profile.tried) >= self.limits.max_sizes:
            return self._stop(profile, f"adaptive.max_sizes={self.limits.max_sizes} sizes reached "
                                       f"(next would have been: {reason})", **numbers)
        try:
            trial = self.plan_point(profile, target)
        except PlanError as err:
            return self._stop(profile, f"cannot place N={target:.3g}: {err}", **numbers)
        if trial.trial_id in profile.tried:
            return self._stop(profile, f"N={target:.3g} resolves to a shape already run: the shape grid's resolution "
                                       f"is reached", **numbers)
        cap = self.limits.max_flops
        if cap and self.spent + trial.cost.c_exact > cap:
            return self._stop(profile, f"adaptive.max_flops={cap:.3g} would be exceeded "
                                       f"(spent {self.spent:.3g})", **numbers)
        self._log(profile, decision, reason, N_new=trial.cost.n_total, **numbers)
        if not self._known(profile, trial):
            profile.pending.append(trial)
        else:
            self.decide(profile)

    # -- TrialSource -------------------------------------------------------------------------------
    def outlook(self) -> str:
        """What is planned now and what may follow, for the run's header (orchestrator/runner/__init__.py)."""
        now = [t for p in self.profiles.values() for t in p.pending]
        placed = sum(len(p.points) for p in self.profiles.values())
        more = len(self.profiles) * self.limits.max_sizes - len(now) - placed
        cap = (f"{self.limits.max_flops:.3g} FLOPs in all (adaptive.max_flops)" if self.limits.max_flops
               else "no FLOP cap")
        return (f"adaptive placement: {len(now)} trials planned now ({sum(t.cost.c_exact for t in now):.3g} FLOPs, the "
                f"first wave of {len(self.profiles)} budget profile(s)); up to {max(more, 0)} more may follow as "
                f"results come in (adaptive.max_sizes={self.limits.max_sizes} per budget, {cap})")

    def next_trials(self, free_slots: int) -> list[Trial]:
        out: list[Trial] = []
        # cluster.order=budget (the default): smallest budgets first, as the plain runner does, so that the cheap
        # profiles settle (and their added sizes are placed) before the long trials take the slots; cost: the
        # cheapest pending trial first; plan: the budgets in the plan's order.
        for profile in sorted(self.profiles.values(), key=self._order):
            if not profile.stopped and not profile.pending and not profile.running:
                self.decide(profile)
            while profile.pending and len(out) < free_slots:
                trial = profile.pending.pop(0)
                profile.running.add(trial.trial_id)
                self._owner[trial.trial_id] = profile
                out.append(trial)
        return out

    def _order(self, profile: Profile) -> float:
        if self.order == "budget":
            return profile.budget
        if self.order == "cost":
            return min((t.cost.c_exact for t in profile.pending), default=profile.budget)
        return 0.0  # a stable sort keeps the plan's order

    def on_result(self, trial: Trial, status: str, result: dict[str, Any] | None) -> None:
        profile = self._owner.pop(trial.trial_id)
        profile.running.discard(trial.trial_id)
        self.spent += trial.cost.c_exact
        loss = (result or {}).get("final_eval_loss")
        if status == Status.FINISHED and loss is not None and math.isfinite(loss):
            profile.points[trial.trial_id] = (math.log(trial.cost.n_total), float(loss),
                                              float((result or {}).get("eval_loss_se") or 0.0))

    def done(self) -> bool:
        return all(p.stopped for p in self.profiles.values())

    def tags(self, trial: Trial) -> dict[str, str]:  # noqa: ARG002
        return {"stage": Stage.ADAPTIVE}

    def estimates(self) -> dict[tuple, float | None]:
        """N_opt per budget key (local_vertex), None where no minimum was found."""
        out = {}
        for key, profile in self.profiles.items():
            x = np.array([p[0] for p in profile.points.values()])
            y = np.array([p[1] for p in profile.points.values()])
            v = local_vertex(x, y) if len(x) >= 3 else None
            out[key] = None if v is None else math.exp(v)
        return out


def point_planner(config: Config, *, datasets: dict[str, DataConfig]) -> Callable[[Profile, float], Trial]:
    """How a size the policy adds becomes a trial: planned like the first wave (same datasets, so the same trial
    identity), at the profile's budget and seed; PlanError when it would not be a valid scaling point."""
    from orchestrator.sweep_plan import plan_trials  # noqa: PLC0415

    def plan_point(profile: Profile, target: float) -> Trial:
        sweep = replace(config.sweep, sizes=[target], budgets=[profile.budget], seeds=[profile.key[2]], datasets=[])
        one = replace(config, sweep=sweep)
        (trial,) = plan_trials(one, datasets={profile.key[1]: datasets[profile.key[1]]})
        if trial.invalid is not None and not config.hparams.allow_invalid:
            raise PlanError(f"it would not be a valid scaling point ({trial.invalid})")
        return trial

    return plan_point


def run_adaptive(config: Config, *, first_wave: list[Trial], datasets: dict[str, DataConfig]) -> int:
    """Run the first wave and the sizes the policy adds; write and attach the decision log.

    `datasets` are the ones the first wave was planned with (composed once, with the user's `data.*`
    overrides), so every size placed later has the same data config, and trial identity, as the first wave.
    """
    from orchestrator.runner import run_sweep  # noqa: PLC0415
    from orchestrator.search.lr_search import previous_results  # noqa: PLC0415
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    source = AdaptiveIsoFLOP(config, first_wave=first_wave, plan_point=point_planner(config, datasets=datasets),
                             previous=previous_results(config))
    code = run_sweep(config, trials=first_wave, source=source)
    out_dir = reports_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "adaptive_decisions.json"
    estimates = [{"budget": k[0], "dataset": k[1], "seed": k[2], "N_opt": v} for k, v in source.estimates().items()]
    path.write_text(json.dumps({"decisions": source.decisions, "N_opt": estimates, "flops": source.spent}, indent=2))
    open_sweep_store(config, create=True).log_to_latest_sweep_run(path)
    print(f"adaptive: {len(source.decisions)} decisions, {source.spent:.3g} FLOPs; log {path}", flush=True)
    return code
