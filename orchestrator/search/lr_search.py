"""sweep.kind=lr_search: per-size learning-rate search with Optuna, trials run by the Ray runner.

One Optuna study per point of the sweep (a model size at a token count or budget), named
`<sweep>/<point>` in the search's storage (storage.py). `LRSearch` is the runner's TrialSource: it asks
each study for a rate (and batch size / warmup when `search.batch_tokens` / `search.warmup_tokens`
are given), turns it into a planned Trial (its id hashes the rate, so a rate tried before is a result
read back, not a rerun), reports every intermediate `eval_loss` to the study and prunes when the pruner
says so (median: below the median of earlier trials at the same step, Optuna's MedianPruner; or
successive halving). Each trial is a child run of the sweep's parent run, tagged stage=lr_search,
optuna_study and optuna_trial. On resume, trials a dead driver left RUNNING are failed and re-asked.

Output: the best rate per size and the power law lr_opt(N) (tuned.py), printed, written to
<fit.out_dir, default reports>/<sweep>/lr_search.json and attached to the parent run; any sweep then uses the rates with
`sweep.lr_from=<this sweep>`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import TrialState

from trainers.api import Status
from orchestrator.config import Config, reports_dir
from orchestrator.planner import Trial, with_lr
from orchestrator.run_tags import Stage
from orchestrator.search.options import SearchConfig
from orchestrator.search.storage import open_storage, storage_label, study_name
from orchestrator.search.tuned import fit_lr_law, search_results
from orchestrator.trial_source import TrialSource

MAX_ASKS_PER_TRIAL = 3  # a study whose trials keep crashing stops after 3x its trial count


def point_label(trial: Trial) -> str:
    where = f"C={trial.budget:.3g}" if trial.budget is not None else f"D={trial.tokens:.3g}"
    return f"N={trial.cost.n_total:.4g} {where} {trial.dataset} s={trial.config['seed']}"


def make_sampler(search: SearchConfig, *, seed: int) -> optuna.samplers.BaseSampler:
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=search.startup_trials)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)


def make_pruner(search: SearchConfig, *, percentile: float | None = None) -> optuna.pruners.BasePruner:
    """search.pruner's pruner; with `percentile` (a pilot's), Optuna's PercentilePruner: a trial is stopped only
    when its loss is in the worst (100 - percentile)% at its step, so most trials finish and give the per-cell
    fit its points."""
    if percentile is not None:
        return optuna.pruners.PercentilePruner(percentile, n_startup_trials=search.startup_trials, n_warmup_steps=0)
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=0)
    if search.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


class LRSearch(TrialSource):
    """The TrialSource of a learning-rate search (see the module docstring)."""

    def __init__(self, config: Config, *, points: list[Trial], storage: optuna.storages.BaseStorage,
                 previous: dict[str, tuple[str, float | None]], batch_choices: list[list[int]] | None = None,
                 tags: dict[str, str] | None = None, prune_percentile: float | None = None) -> None:
        """`batch_choices`: per point, the batch sizes (tokens) its study searches (a pilot's, whose choices
        follow each point's D); None: search.batch_tokens for every point. Intermediate losses are then keyed
        by tokens seen, not steps, so that the pruner compares runs of different batches at equal tokens."""
        self.search, self.points, self.previous = config.search, points, previous
        self.batch_choices, self.extra_tags = batch_choices, tags or {}
        assert batch_choices is None or len(batch_choices) == len(points)
        self.studies: list[optuna.study.Study] = []
        for index, point in enumerate(points):
            study = optuna.create_study(
                study_name=study_name(config.sweep.name, point_label(point)), storage=storage,
                sampler=make_sampler(self.search, seed=self.search.seed + index),
                pruner=make_pruner(self.search, percentile=prune_percentile),
                direction="minimize", load_if_exists=True)
            study.set_user_attr("N_total", point.cost.n_total)
            study.set_user_attr("budget", point.budget)
            study.set_user_attr("tokens", point.tokens)
            study.set_user_attr("C_exact", point.cost.c_exact)
            for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.tell(stale.number, state=TrialState.FAIL)  # left by a dead driver: re-asked below
            self.studies.append(study)
        self.running: dict[str, tuple[int, optuna.trial.Trial]] = {}
        self.asked = [0] * len(points)
        self.resumed = sum(self._counted(i) for i in range(len(points)))

    def _counted(self, index: int) -> int:
        """Trials of the study that count towards search.trials_per_size: finished or pruned."""
        return len(self.studies[index].get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def _inflight(self, index: int) -> int:
        return sum(1 for i, _ in self.running.values() if i == index)

    def _open(self, index: int) -> bool:
        return (self._counted(index) + self._inflight(index) < self.search.trials_per_size
                and self.asked[index] < MAX_ASKS_PER_TRIAL * self.search.trials_per_size)

    def next_trials(self, free_slots: int) -> list[Trial]:
        out: list[Trial] = []
        progress = True
        while len(out) < free_slots and progress:
            progress = False
            for index, point in enumerate(self.points):  # round robin over sizes
                if len(out) >= free_slots:
                    break
                if not self._open(index) or self._inflight(index) >= self.search.parallel_per_size:
                    continue
                trial = self._ask(index, point)
                progress = True
                if trial is not None:
                    out.append(trial)
        return out

    def _ask(self, index: int, point: Trial) -> Trial | None:
        """A new trial of study `index`; None when its rate was already run (its result is told)."""
        study, search = self.studies[index], self.search
        self.asked[index] += 1
        ot = study.ask()
        lr = ot.suggest_float("lr", search.lr_min, search.lr_max, log=True)
        keys: dict[str, Any] = {}
        choices = self.batch_choices[index] if self.batch_choices is not None else search.batch_tokens
        if choices:
            keys["batch_tokens"] = ot.suggest_categorical("batch_tokens", sorted(choices))
        if search.warmup_tokens:
            keys["warmup_tokens"] = ot.suggest_categorical("warmup_tokens", sorted(search.warmup_tokens))
        trial = with_lr(point, lr, **keys)
        status, loss = self.previous.get(trial.trial_id, (None, None))
        if trial.trial_id in self.running:
            study.tell(ot, state=TrialState.FAIL)  # the same config is in flight: ask again
            return None
        if status == Status.FINISHED and loss is not None and math.isfinite(loss):
            study.tell(ot, loss)
            return None
        if status == Status.PRUNED:
            study.tell(ot, state=TrialState.PRUNED)
            return None
        self.running[trial.trial_id] = (index, ot)
        return trial

    def on_report(self, trial: Trial, metrics: dict[str, Any]) -> bool:
        index, ot = self.running[trial.trial_id]
        loss = metrics.get("eval_loss")
        if loss is None or not math.isfinite(loss):
            return False
        searched_batch = self.batch_choices is not None or bool(self.search.batch_tokens)
        ot.report(float(loss), int(metrics.get("tokens" if searched_batch else "step", 0)))
        return self.search.pruner != "none" and bool(ot.should_prune())

    def on_result(self, trial: Trial, status: str, result: dict[str, Any] | None) -> None:
        index, ot = self.running.pop(trial.trial_id)
        flops = (result or {}).get("flops") or (trial.cost.c_exact if status == Status.FINISHED else 0.0)
        ot.set_user_attr("flops", float(flops))
        ot.set_user_attr("trial_id", trial.trial_id)
        loss = (result or {}).get("final_eval_loss")
        if status == Status.FINISHED and loss is not None and math.isfinite(loss):
            self.studies[index].tell(ot, float(loss))
        elif status == Status.PRUNED:
            self.studies[index].tell(ot, state=TrialState.PRUNED)
        else:  # crashed, diverged, oom, lost: not a loss the sampler should model
            self.studies[index].tell(ot, state=TrialState.FAIL)

    def finished_runs(self) -> tuple[list[tuple[float, int, float, float, float]], int]:
        """((N_total, D, lr, batch_tokens, final loss) of every finished trial, the number pruned) over the
        studies; batch_tokens is the point's own where the batch was not searched."""
        rows, pruned = [], 0
        for point, study in zip(self.points, self.studies):
            for t in study.get_trials(deepcopy=False):
                if t.state == TrialState.COMPLETE:
                    batch = t.params.get("batch_tokens", point.config["trainer"]["batch_tokens"])
                    rows.append((point.cost.n_total, point.tokens, t.params["lr"], batch, t.value))
                pruned += t.state == TrialState.PRUNED
        return rows, pruned

    def done(self) -> bool:
        return not any(self._open(i) for i in range(len(self.points)))

    def tags(self, trial: Trial) -> dict[str, str]:
        index, ot = self.running[trial.trial_id]
        return {"stage": Stage.LR_SEARCH, "optuna_study": self.studies[index].study_name,
                "optuna_trial": str(ot.number), **self.extra_tags}


def previous_results(config: Config) -> dict[str, tuple[str, float | None]]:
    """trial_id -> (best status, its final eval loss) from the sweep's MLflow experiment."""
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    tracker = open_sweep_store(config, create=False)
    if tracker is None:
        return {}
    return {trial_id: (r.status, r.final_eval_loss) for trial_id, r in tracker.results().items()}


def summary(config: Config) -> dict[str, Any]:
    """The search's per-size best rates and their power law, as written to lr_search.json."""
    storage = open_storage(config.search, tracking_uri=config.tracking.uri)
    best = search_results(storage, config.sweep.name)
    out: dict[str, Any] = {"sweep": config.sweep.name, "storage": storage_label(config.search,
                                                                                  tracking_uri=config.tracking.uri),
                           "sizes": [asdict(b) for b in best]}
    if best:
        out["law"] = asdict(fit_lr_law(best, of=config.search.lr_law_of))
    return out


def format_summary(data: dict[str, Any]) -> str:
    lines = [f"lr search {data['sweep']} ({data['storage']}):",
             f"  {'N_total':>10s} {'lr_opt':>10s} {'how':>10s} {'best trial lr':>13s} {'loss':>9s} "
             f"{'finished':>8s} {'pruned':>6s} {'FLOPs':>9s}"]
    for b in data["sizes"]:
        lines.append(f"  {b['N_total']:10.4g} {b['lr_opt']:10.4g} {b['how']:>10s} {b['lr_best_trial']:13.4g} "
                     f"{b['loss_best_trial']:9.4f} {b['n_finished']:8d} {b['n_pruned']:6d} {b['flops']:9.3g}")
    law = data.get("law")
    if law:
        ci = "" if math.isnan(law["p_lo"]) else f" (95% CI {law['p_lo']:.3f} .. {law['p_hi']:.3f})"
        lines.append(f"  lr_opt({law['of']}) = {law['k']:.4g} * {law['of']}^{law['p']:.3f}{ci}; use it with "
                     f"sweep.lr_from={data['sweep']}")
    return "\n".join(lines)


def run_lr_search(config: Config, *, points: list[Trial]) -> int:
    """Run (or resume) the search over `points`, then print and record the per-size rates and the law."""
    from orchestrator.runner import run_sweep  # noqa: PLC0415
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    storage = open_storage(config.search, tracking_uri=config.tracking.uri)
    source = LRSearch(config, points=points, storage=storage, previous=previous_results(config))
    print(f"lr search {config.sweep.name}: {len(points)} sizes x {config.search.trials_per_size} trials "
          f"(sampler {config.search.sampler}, pruner {config.search.pruner}); {source.resumed} already done; "
          f"optuna storage {storage_label(config.search, tracking_uri=config.tracking.uri)}", flush=True)
    code = run_sweep(config, trials=points, source=source)
    data = summary(config)
    print(format_summary(data), flush=True)
    out_dir = reports_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "lr_search.json"
    path.write_text(json.dumps(data, indent=2, allow_nan=True))
    open_sweep_store(config, create=True).log_to_latest_sweep_run(path)
    return code


def tuned_lr_law(config: Config):
    """The LRLaw of the search named by sweep.lr_from; ValueError when it has no results yet."""
    storage = open_storage(config.search, tracking_uri=config.tracking.uri, create=False)
    best = search_results(storage, config.sweep.lr_from) if storage is not None else []
    if not best:
        raise ValueError(f"sweep.lr_from={config.sweep.lr_from} has no finished search results in "
                         f"{storage_label(config.search, tracking_uri=config.tracking.uri)}: run "
                         f"sweep={config.sweep.lr_from} (a kind=lr_search sweep) first.")
    return fit_lr_law(best, of=config.search.lr_law_of)
