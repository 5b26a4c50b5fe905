"""Many token counts from one run: warmup-stable-decay trunks forked into cooldowns (`sweep.forks=true`).

Hägele et al. 2024 (Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations, Sec. 3-4) show
that a constant learning rate with a short cooldown (about 20% of the tokens, 1-sqrt shape) matches a cosine
run of the same length, and that before its cooldown a WSD run does not depend on its length. So the trials of
a sweep that differ only in D (same shape, data, seed and hyperparameters) share one trunk:

- the trunk is the run of the largest D trained at its constant rate up to the last fork point; at each fork
  point `at_i` (the last optimizer step that ends at or before D_i's cooldown start, D_i (1 - f)) it writes
  the checkpoint the independent WSD run of D_i would hold there (trainers/gpt.py);
- each fork is that independent run, resumed from the checkpoint: the same computation, bit for bit on a CPU,
  so it keeps the independent run's trial id; resuming, extending and deduplicating stay set differences.

Compute: independent runs cost sum_i D_i tokens; forked, the trunk's max_i at_i plus the cooldowns
sum_i (D_i - at_i). With four token counts at 1, 2, 4, 8x and f = 0.2 that is 9.4 units instead of 15.

Checkpoints live under `cluster.storage` (default ./checkpoints)/<sweep>/: the trunk's own in <trunk id>/,
each fork's starting point in trunks/<trunk id>/<fork trial id>/ (the fork's run folder: it resumes from the
newest checkpoint there). Pruning policy: a fork's folder is deleted once the fork has a result; the trunk's
once every fork of it has one. A fork whose checkpoint exists runs even while its trunk is unfinished (after a
driver was killed, say); a trunk that ends without reaching a fork point (diverged, out of memory, crashed past
its retries) settles that fork with the trunk's status and reason.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.config import Config
from orchestrator.errors import UsageError
from orchestrator.planner import Trial, human
from orchestrator.run_tags import Role, RunKind
from orchestrator.trial_source import Settled, TrialSource
from trainers.api import RESULTS, Status
from trainers.checkpoint import FILENAME
from trainers.schedule import Schedule

TRUNK_TRAINERS = ("trainers.gpt:train", "trainers.gpt.train")
"""Trainers that can train a trunk (write fork checkpoints at given token counts)."""


@dataclass(frozen=True)
class Fork:
    trial: Trial
    """The independent WSD run this fork is (its id, config and cost)."""
    at: int
    """Tokens at which it leaves the trunk."""

    @property
    def cooldown_flops(self) -> float:
        return (self.trial.tokens - self.at) * self.trial.cost.flops_per_token


@dataclass(frozen=True)
class Trunk:
    trial: Trial
    """The trunk as a runnable trial (kind=trunk in MLflow, never a fitted point)."""
    forks: tuple[Fork, ...]

    @property
    def trunk_id(self) -> str:
        return self.trial.trial_id

    @property
    def stop_at(self) -> int:
        return max(f.at for f in self.forks)


@dataclass(frozen=True)
class ForkPlan:
    trunks: tuple[Trunk, ...]
    alone: tuple[Trial, ...]
    """Trials with no other trial to share a trunk with: they run as they are."""
    root: Path
    """checkpoint_root: trunks/<trunk id>/<fork id>/ holds each fork's starting point."""

    def fork_dir(self, trunk_id: str, trial_id: str) -> Path:
        return self.root / "trunks" / trunk_id / trial_id

    @property
    def forked_flops(self) -> float:
        return sum(t.trial.cost.c_exact + sum(f.cooldown_flops for f in t.forks) for t in self.trunks) + \
            sum(t.cost.c_exact for t in self.alone)

    @property
    def independent_flops(self) -> float:
        return sum(f.trial.cost.c_exact for t in self.trunks for f in t.forks) + sum(t.cost.c_exact for t in self.alone)

    @property
    def saving(self) -> float:
        """Share of the independent runs' FLOPs the forks save."""
        return 1.0 - self.forked_flops / self.independent_flops if self.independent_flops else 0.0


def checkpoint_root(config: Config) -> Path:
    """<cluster.storage or ./checkpoints>/<sweep>: where trials, trunks and fork points keep checkpoints."""
    return Path(config.cluster.storage or Path.cwd() / "checkpoints").resolve() / config.sweep.name


def fork_point(trial: Trial) -> int:
    """The last optimizer-step boundary at or before the trial's cooldown start: where it leaves a trunk."""
    t = trial.config["trainer"]
    schedule = Schedule.for_trial(peak=t["lr"], total_tokens=trial.tokens, warmup_tokens=t["warmup_tokens"],
                                  kind=t["schedule"], min_ratio=t["min_lr_ratio"], decay_fraction=t["decay_fraction"],
                                  cooldown_shape=t.get("cooldown_shape", "1-sqrt"))
    return schedule.decay_start // t["batch_tokens"] * t["batch_tokens"]


def _share_key(trial: Trial) -> str:
    """What a trunk's forks must share: the whole trial config except D."""
    import json  # noqa: PLC0415

    return json.dumps({k: v for k, v in trial.config.items() if k != "tokens"}, sort_keys=True, default=str)


def check_forkable(trials: list[Trial]) -> None:
    """One sentence when the sweep cannot fork (before anything is written or started)."""
    if not trials:
        return
    t = trials[0].config["trainer"]
    if t["schedule"] != "wsd":
        raise UsageError(f"sweep.forks=true needs trainer.schedule=wsd, not {t['schedule']}: a {t['schedule']} run's "
                         f"rate depends on its length from the first step, so runs of different D share nothing.")
    if not 0.0 < t["decay_fraction"] < 1.0:
        raise UsageError(f"trainer.decay_fraction={t['decay_fraction']} is invalid with sweep.forks=true: the "
                         f"cooldown fraction must lie in (0, 1), so that a constant-rate trunk is left to share.")
    if t["target"] not in TRUNK_TRAINERS:
        raise UsageError(f"sweep.forks=true needs a trainer that can train a trunk (trainers.gpt:train); "
                         f"trainer.target={t['target']} cannot.")
    if any(trial.config["trainer"]["warmup_tokens"] <= 0 for trial in trials):
        raise UsageError("sweep.forks=true needs a warmup that does not depend on D: set trainer.warmup_tokens (a "
                         "token count; 0 means 2% of each run's D), or an hparams warmup rule of N.")


def plan_forks(trials: list[Trial], *, root: Path) -> ForkPlan:
    """Group trials that differ only in D under trunks (see the module docstring)."""
    check_forkable(trials)
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(_share_key(trial), []).append(trial)
    trunks, alone = [], []
    for members in groups.values():
        members = sorted({t.trial_id: t for t in members}.values(), key=lambda t: t.tokens)
        if len(members) < 2:
            alone.extend(members)
            continue
        forks = []
        for trial in members:
            at = fork_point(trial)
            if not 0 < at < trial.tokens:
                raise UsageError(f"D={trial.tokens} ({trial.name}) is too short to fork: after its warmup of "
                                 f"{trial.config['trainer']['warmup_tokens']} tokens no optimizer step of "
                                 f"trainer.batch_tokens={trial.config['trainer']['batch_tokens']} is left for a "
                                 f"trunk and a cooldown; drop it, raise its tokens or shorten the warmup.")
            forks.append(Fork(trial, at))
        trunks.append(_trunk(tuple(forks), root=root))
    if not trunks:
        raise UsageError("sweep.forks=true found no trials that differ only in D (same shape, data, seed and "
                         "hyperparameters), so nothing can share a trunk; give the sweep several token counts per "
                         "size, or set sweep.forks=false.")
    return ForkPlan(tuple(sorted(trunks, key=lambda t: t.trial.cost.c_exact)), tuple(alone), root)


def _trunk(forks: tuple[Fork, ...], *, root: Path) -> Trunk:
    longest = forks[-1].trial
    trunk_id = "trunk-" + hashlib.sha256(",".join(f.trial.trial_id for f in forks).encode()).hexdigest()[:12]
    stop = max(f.at for f in forks)
    config = {**longest.config, "trunk": {
        "stop_at": stop,
        "forks": [{"at": f.at, "config": f.trial.config, "dir": str(root / "trunks" / trunk_id / f.trial.trial_id)}
                  for f in forks]}}
    cost = longest.cost
    cost = replace(cost, tokens=stop, c_exact=float(cost.flops_per_token) * stop, c_6nd=6.0 * cost.n_total * stop)
    label = (f"trunk N={human(cost.n_total)} to {human(stop)} tokens lr={longest.config['trainer']['lr']:.3g} "
             f"s={longest.config['seed']}")
    trial = Trial(trial_id=trunk_id, config=config, cost=cost, dataset=longest.dataset, budget=None,
                  target_size=longest.target_size, label=label)
    return Trunk(trial, forks)


def format_forks(plan: ForkPlan) -> str:
    """The trunk/fork tree with FLOPs and the saving against independent runs (for action=plan)."""
    lines = [f"forks: {len(plan.trunks)} trunks, {sum(len(t.forks) for t in plan.trunks)} forks"
             + (f", {len(plan.alone)} trials alone" if plan.alone else "")
             + f"; {plan.forked_flops:.3e} FLOPs instead of {plan.independent_flops:.3e} for independent runs "
               f"(saves {100 * plan.saving:.0f}%)"]
    for trunk in plan.trunks:
        t = trunk.trial
        lines.append(f"  trunk {t.trial_id}  N={human(t.cost.n_total)} {t.shape} s={t.config['seed']}: constant "
                     f"rate to {human(trunk.stop_at)} tokens, {t.cost.c_exact:.3g} FLOPs")
        for fork in trunk.forks:
            lines.append(f"    fork {fork.trial.trial_id}  D={human(fork.trial.tokens)}"
                         + (f" C={fork.trial.budget:.3g}" if fork.trial.budget is not None else "")
                         + f": leaves at {human(fork.at)}, cooldown {fork.cooldown_flops:.3g} FLOPs")
    return "\n".join(lines)


@dataclass
class _TrunkState:
    trunk: Trunk
    forks: dict[str, Fork]
    """Forks without a result yet, by trial id."""
    submitted: bool = False
    finished: bool = False
    run_id: str | None = None


@dataclass
class ForkSource(TrialSource):
    """The runner's TrialSource for a forked sweep: a dependency graph of trunks and forks on Ray's slots.

    A fork is fed as soon as its checkpoint exists (the trunk reports `fork_ready`, or a previous driver left
    it), ahead of trunks; trunks are fed (cheapest first) only while some fork still needs their checkpoints.
    """

    plan: ForkPlan
    done_ids: set[str]
    """Trial ids that already have a result (skipped, as a plain sweep skips them)."""
    states: dict[str, _TrunkState] = field(default_factory=dict)
    ready: list[Fork] = field(default_factory=list)
    fed: set[str] = field(default_factory=set)
    settled: list[Settled] = field(default_factory=list)
    trunk_of: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for trunk in self.plan.trunks:
            pending = {f.trial.trial_id: f for f in trunk.forks if f.trial.trial_id not in self.done_ids}
            state = _TrunkState(trunk, pending)
            self.states[trunk.trunk_id] = state
            for fork in pending.values():
                self.trunk_of[fork.trial.trial_id] = trunk.trunk_id
                if self._has_checkpoint(fork):
                    self.ready.append(fork)
            if not pending:
                state.finished = True
                self._prune_trunk(state)
        self.alone = [t for t in self.plan.alone if t.trial_id not in self.done_ids]

    # -- what the runner asks -------------------------------------------------------------------
    def next_trials(self, free_slots: int) -> list[Trial]:
        out: list[Trial] = []
        while self.ready and len(out) < free_slots:
            fork = self.ready.pop(0)
            self.fed.add(fork.trial.trial_id)
            out.append(fork.trial)
        for state in self.states.values():
            if len(out) >= free_slots:
                break
            if not state.submitted and not state.finished and self._needs_trunk(state):
                state.submitted = True
                out.append(state.trunk.trial)
        while self.alone and len(out) < free_slots:
            out.append(self.alone.pop(0))
        return out

    def flops_of(self, trial: Trial) -> float:
        """What running `trial` costs here: a fork only its cooldown (the trunk paid for the rest)."""
        trunk_id = self.trunk_of.get(trial.trial_id)
        if trunk_id is None:
            return trial.cost.c_exact
        return next(f.cooldown_flops for f in self.states[trunk_id].trunk.forks if f.trial.trial_id == trial.trial_id)

    def run_dir(self, trial: Trial) -> str | None:
        """A fork runs in its fork-point folder (it resumes from the newest checkpoint there)."""
        trunk_id = self.trunk_of.get(trial.trial_id)
        return None if trunk_id is None else str(self._fork_dir(trunk_id, trial.trial_id))

    def on_start(self, trial: Trial, run_id: str) -> None:
        if trial.trial_id in self.states:
            self.states[trial.trial_id].run_id = run_id

    def on_report(self, trial: Trial, metrics: dict[str, Any]) -> bool:
        state = self.states.get(trial.trial_id)
        if state is not None and "fork_ready" in metrics:
            self._release(state, at=int(metrics["fork_ready"]))
        return False

    def on_result(self, trial: Trial, status: str, result: dict[str, Any] | None) -> None:
        state = self.states.get(trial.trial_id)
        if state is not None:  # a trunk ended: every fork point it reached is released, the rest settled
            state.finished = True
            self._release(state, at=int((result or {}).get("tokens", 0)) if status == Status.FINISHED else -1)
            reason = (result or {}).get("reason") or f"it ended {status}"
            for fork in list(state.forks.values()):
                if fork.trial.trial_id not in self.fed and fork not in self.ready:
                    if self._has_checkpoint(fork):
                        self.ready.append(fork)
                    else:
                        state.forks.pop(fork.trial.trial_id)
                        self.settled.append(Settled(
                            fork.trial, Status(status) if status != Status.FINISHED else Status.CRASHED,
                            f"its trunk {state.trunk.trunk_id} did not reach the fork point: {reason}"))
            self._prune_trunk(state)
            return
        trunk_id = self.trunk_of.get(trial.trial_id)
        if trunk_id is not None and status in RESULTS:
            state = self.states[trunk_id]
            state.forks.pop(trial.trial_id, None)
            shutil.rmtree(self._fork_dir(trunk_id, trial.trial_id), ignore_errors=True)
            self._prune_trunk(state)

    def take_settled(self) -> list[Settled]:
        """Forks settled without running (their trunk failed): the runner records them with the reason."""
        out, self.settled = self.settled, []
        return out

    def done(self) -> bool:
        return not self.ready and not self.alone and all(
            s.finished or s.submitted or not self._needs_trunk(s) for s in self.states.values())

    def tags(self, trial: Trial) -> dict[str, str]:
        if trial.trial_id in self.states:
            trunk = self.states[trial.trial_id].trunk
            return {"kind": RunKind.TRUNK, "role": Role.TRUNK, "fork_points": ",".join(str(f.at) for f in trunk.forks),
                    "stop_at": str(trunk.stop_at)}
        trunk_id = self.trunk_of.get(trial.trial_id)
        if trunk_id is None:
            return {}
        state = self.states[trunk_id]
        fork = next(f for f in state.trunk.forks if f.trial.trial_id == trial.trial_id)
        tags = {"role": Role.FORK, "trunk_id": trunk_id, "fork_point": str(fork.at)}
        if state.run_id is not None:
            tags["trunk_run_id"] = state.run_id
        return tags

    # -- bookkeeping ----------------------------------------------------------------------------
    def _fork_dir(self, trunk_id: str, trial_id: str) -> Path:
        return self.plan.fork_dir(trunk_id, trial_id)

    def _has_checkpoint(self, fork: Fork) -> bool:
        return (self._fork_dir(self.trunk_of[fork.trial.trial_id], fork.trial.trial_id) / FILENAME).is_file()

    def _needs_trunk(self, state: _TrunkState) -> bool:
        return any(f.trial.trial_id not in self.fed and f not in self.ready and not self._has_checkpoint(f)
                   for f in state.forks.values())

    def _release(self, state: _TrunkState, *, at: int) -> None:
        for fork in state.forks.values():
            if fork.at <= at and fork.trial.trial_id not in self.fed and fork not in self.ready \
                    and self._has_checkpoint(fork):
                self.ready.append(fork)

    def _prune_trunk(self, state: _TrunkState) -> None:
        """Every fork of the trunk has a result: its own checkpoints go (the policy in the module docstring)."""
        if not state.forks:
            shutil.rmtree(self.plan.root / "trunks" / state.trunk.trunk_id, ignore_errors=True)
            shutil.rmtree(self.plan.root / state.trunk.trunk_id, ignore_errors=True)
