"""The planner: a sweep config in, the exact list of trials out. Pure: no I/O, no side effects.

Every trial carries its resolved config (what the trainer receives) and its exact cost. A trial's id
is a hash of that canonical config, independent of key order and of the sweep it came from, so the
same trial planned twice is one trial, and resuming or extending a sweep is a set difference.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from orchestrator.accounting import Cost, count_params, train_flops_per_token, training_cost
from orchestrator.config import LIST_TRIAL_KEYS, SweepConfig
from trainers.config import DataConfig, ModelConfig, TrainerConfig

# Keys of the trainer section that change how a trial is observed, never its result: they are left
# out of the trial's identity so that, e.g., checkpointing more often does not make a new trial.
NON_IDENTITY_TRAINER_KEYS = ("eval_interval_tokens", "checkpoint_interval_tokens")
SHAPE_RULE_KEYS = ("aspect_ratio", "head_dim")
MAX_LAYERS = 128


class PlanError(ValueError):
    """A sweep that cannot be planned; the message names the key, the value and what is allowed."""


class PlanWarning(UserWarning):
    """Something the user should know about a plan that still runs (e.g. collapsed duplicates)."""


@dataclass(frozen=True)
class Trial:
    """One planned training run."""

    trial_id: str
    config: dict[str, Any]
    """The resolved trial config: {"model", "data", "trainer", "tokens", "seed"} (see trainers/api.py)."""
    cost: Cost
    dataset: str
    """Name of the dataset config the trial trains on."""
    budget: float | None = None
    """The nominal FLOP budget C the trial was planned for (None when D was given directly)."""
    target_size: float | None = None
    """The target parameter count the shape was resolved from (None for explicit shapes)."""

    @property
    def tokens(self) -> int:
        return self.config["tokens"]

    @property
    def shape(self) -> str:
        m = self.config["model"]
        return f"{m['n_layer']}x{m['d_model']}/{m['n_head']}h"

    @property
    def name(self) -> str:
        """A readable run name, e.g. `C=1e+12 N=1.2M D=140M lr=0.003 s=0`."""
        parts = [f"C={self.budget:.3g}"] if self.budget is not None else []
        parts += [f"N={human(self.cost.n_total)}", f"D={human(self.tokens)}"]
        parts += [f"lr={self.config['trainer']['lr']:.3g}", f"s={self.config['seed']}"]
        return " ".join(parts)

    def record(self) -> dict[str, Any]:
        """The derived numbers every trial records (MLflow params, plan tables, the fit table)."""
        return {
            "trial_id": self.trial_id,
            "dataset": self.dataset,
            "budget": self.budget,
            "N_total": self.cost.n_total,
            "N_nonembed": self.cost.n_nonembed,
            "N_embed": self.cost.n_embed,
            "D": self.tokens,
            "C_exact": self.cost.c_exact,
            "C_6ND": self.cost.c_6nd,
            "C_ratio": self.cost.c_ratio,
            "tokens_per_param": self.cost.tokens_per_param,
        }


def human(x: float) -> str:
    """1234567 -> '1.23M'."""
    x = float(f"{x:.3g}")  # round first so 999936 prints as 1M, not 1e+03k
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def trial_id(config: dict[str, Any]) -> str:
    """Hash of the canonical trial config: sorted keys, observation-only keys removed."""
    identity = json.loads(json.dumps(config))
    for key in NON_IDENTITY_TRAINER_KEYS:
        identity["trainer"].pop(key, None)
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resolve_shape(target: float, *, model: ModelConfig, vocab_size: int, convention: str = "total") -> ModelConfig:
    """The shape nearest `target` parameters under the shape rule.

    The rule (cf. nanochat, which derives width from depth): d_model is a multiple of
    `model.head_dim` (n_head = d_model / head_dim) and d_model / n_layer should be
    `model.aspect_ratio`. Depth alone moves N ~ L^3 in coarse steps at small scale, so both L and d
    move, and the shape minimising a weighted sum of squared log errors wins: a 15% miss in size
    costs as much as a factor-2 miss in aspect ratio. The planner uses the shape's exact count.
    """
    h = model.head_dim
    best: tuple[float, ModelConfig] | None = None
    for n_layer in range(1, MAX_LAYERS + 1):
        for d_model in _widths_near(target, n_layer=n_layer, model=model, vocab_size=vocab_size, convention=convention):
            shape = replace(model, n_layer=n_layer, d_model=d_model, n_head=d_model // h)
            n = _count(shape, vocab_size=vocab_size, convention=convention)
            size_err = math.log(n / target) / math.log(1.15)
            aspect_err = math.log((d_model / n_layer) / model.aspect_ratio) / math.log(2.0)
            score = size_err**2 + aspect_err**2
            if best is None or score < best[0]:
                best = (score, shape)
    assert best is not None
    return best[1]


def _count(shape: ModelConfig, *, vocab_size: int, convention: str) -> int:
    params = count_params(shape, vocab_size=vocab_size)
    return params.total if convention == "total" else params.nonembed


def _widths_near(target: float, *, n_layer: int, model: ModelConfig, vocab_size: int, convention: str) -> list[int]:
    """The two head_dim multiples whose count at this depth brackets the target."""
    h = model.head_dim
    d = h
    while True:
        shape = replace(model, n_layer=n_layer, d_model=d, n_head=d // h)
        if _count(shape, vocab_size=vocab_size, convention=convention) >= target or d > 1 << 16:
            return [d - h, d] if d > h else [d]
        d += h


def plan(
    sweep: SweepConfig,
    *,
    model: ModelConfig,
    trainer: TrainerConfig,
    datasets: dict[str, DataConfig],
    lr_law: Callable[[float], float] | None = None,
) -> list[Trial]:
    """All trials of `sweep`, deterministic and deduplicated (duplicates warn with PlanWarning).

    `model` and `trainer` are the base configs the sweep's axes override; `datasets` maps each name
    on the data axis to its config (the CLI composes them from conf/data/). `lr_law`, when given
    (sweep.lr_from), sets each trial's trainer.lr from its exact N_total, so the id reflects it.
    kind=lr_search plans its points (size x tokens/budget) at the base learning rate; the search
    varies the rate.
    """
    if sweep.kind == "list":
        trials = [_list_trial(i, spec, sweep=sweep, model=model, trainer=trainer, datasets=datasets)
                  for i, spec in enumerate(sweep.trials)]
        if not trials:
            raise PlanError(f"sweep.trials is empty: sweep {sweep.name!r} of kind=list plans no trials.")
    else:
        trials = list(_axis_trials(sweep, model=model, trainer=trainer, datasets=datasets))
    if lr_law is not None:
        trials = [with_lr(t, lr_law(t.cost.n_total)) for t in trials]
    return _deduplicate(trials)


def with_lr(trial: Trial, lr: float, **trainer_keys: Any) -> Trial:
    """The same trial at learning rate `lr` (and other trainer keys), with its id rehashed."""
    config = {**trial.config, "trainer": {**trial.config["trainer"], "lr": float(lr), **trainer_keys}}
    return replace(trial, trial_id=trial_id(config), config=config)


def _axis_trials(sweep: SweepConfig, *, model: ModelConfig, trainer: TrainerConfig,
                 datasets: dict[str, DataConfig]):
    if sweep.kind in ("grid", "lr_search") and not (sweep.tokens or sweep.budgets):
        raise PlanError(
            f"sweep.tokens and sweep.budgets are both empty: the grid of sweep {sweep.name!r} has no data "
            f"or compute axis; give token counts or FLOP budgets."
        )
    if sweep.kind == "isoflop" and not sweep.budgets:
        raise PlanError(f"sweep.budgets is empty: the IsoFLOP sweep {sweep.name!r} needs at least one budget.")
    hparams = list(itertools.product(
        sweep.lr or [trainer.lr],
        sweep.batch_tokens or [trainer.batch_tokens],
        sweep.warmup_tokens or [trainer.warmup_tokens],
        sweep.seeds,
    ))
    if not hparams:
        raise PlanError(f"sweep.seeds is empty: sweep {sweep.name!r} plans no trials; give at least one seed.")
    for name, data in datasets.items():
        if sweep.kind == "isoflop":
            points = [(c, shape, size) for c in sweep.budgets
                      for shape, size in _isoflop_shapes(c, sweep=sweep, model=model, vocab_size=data.vocab_size)]
        else:
            shapes = _model_axis(sweep, model=model, vocab_size=data.vocab_size)
            if sweep.budgets:
                points = [(c, shape, size) for c in sweep.budgets for shape, size in shapes]
            else:
                points = [(None, shape, size) for shape, size in shapes]
        for budget, shape, size in points:
            token_axis = [None] if budget is not None else sweep.tokens
            for tokens in token_axis:
                for lr, batch, warmup, seed in hparams:
                    yield _make_trial(
                        shape=shape, data=data, dataset=name, seed=seed,
                        trainer=replace(trainer, lr=lr, batch_tokens=batch, warmup_tokens=warmup),
                        tokens=tokens, budget=budget, target_size=size, sweep=sweep,
                    )


def _model_axis(sweep: SweepConfig, *, model: ModelConfig, vocab_size: int) -> list[tuple[ModelConfig, float | None]]:
    if sweep.shapes:
        return [(_explicit_shape(model, s.n_layer, s.d_model, s.n_head, key="sweep.shapes"), None) for s in sweep.shapes]
    if sweep.sizes:
        return [(resolve_shape(n, model=model, vocab_size=vocab_size, convention=sweep.size_convention), n)
                for n in sweep.sizes]
    return [(model, None)]


def _explicit_shape(model: ModelConfig, n_layer: int, d_model: int, n_head: int, *, key: str) -> ModelConfig:
    try:
        return replace(model, n_layer=n_layer, d_model=d_model, n_head=n_head)
    except ValueError as err:
        raise PlanError(f"{key}: {err}") from None


def _isoflop_shapes(budget: float, *, sweep: SweepConfig, model: ModelConfig, vocab_size: int):
    """The sizes of one IsoFLOP profile: given sizes, or k sizes log-spaced around the centre."""
    if sweep.sizes or sweep.shapes:
        return _model_axis(sweep, model=model, vocab_size=vocab_size)
    # C ~ 6 N D and D = r N give the centre N_c = sqrt(C / (6 r)) (Hoffmann et al. 2022, r ~ 20).
    centre = math.sqrt(budget / (6.0 * sweep.centre_tokens_per_param))
    k = sweep.sizes_per_budget
    exponents = [0.0] if k == 1 else [-0.5 + i / (k - 1) for i in range(k)]
    targets = [centre * sweep.span ** e for e in exponents]
    return [(resolve_shape(n, model=model, vocab_size=vocab_size, convention=sweep.size_convention), n)
            for n in targets]


def _make_trial(*, shape: ModelConfig, data: DataConfig, dataset: str, trainer: TrainerConfig, seed: int,
                tokens: float | None, budget: float | None, target_size: float | None, sweep: SweepConfig) -> Trial:
    seq = shape.seq_len
    if budget is not None:
        # Solve D so that the exact training FLOPs hit the budget; D is whole sequences.
        fpt = train_flops_per_token(shape, vocab_size=data.vocab_size)
        d = max(seq, round(budget / fpt / seq) * seq)
    else:
        assert tokens is not None
        d = max(seq, round(tokens / seq) * seq)
    cost = training_cost(shape, vocab_size=data.vocab_size, tokens=d)
    where = f"C={budget:.3g}" if budget is not None else f"D={tokens:.3g}"
    desc = f"{where} with model {shape.n_layer}x{shape.d_model} (N={human(cost.n_total)})"
    if d < trainer.batch_tokens:
        key = "sweep.budgets" if budget is not None else "sweep.tokens"
        raise PlanError(
            f"{key}: {desc} gets D={d} tokens, fewer than one optimizer step of "
            f"trainer.batch_tokens={trainer.batch_tokens}; raise it or lower the batch size."
        )
    if budget is not None and abs(cost.c_exact - budget) / budget > sweep.budget_tolerance:
        raise PlanError(
            f"sweep.budgets: {desc} reaches C_exact={cost.c_exact:.4g}, off the budget by more than "
            f"sweep.budget_tolerance={sweep.budget_tolerance}; raise the budget or the tolerance."
        )
    if cost.tokens_per_param < sweep.min_tokens_per_param:
        key = "sweep.budgets" if budget is not None else "sweep.tokens"
        raise PlanError(
            f"{key}: {desc} gets {cost.tokens_per_param:.3g} tokens per parameter, fewer than "
            f"sweep.min_tokens_per_param={sweep.min_tokens_per_param}; raise the budget, narrow sweep.span, "
            f"or set sweep.min_tokens_per_param=0 to allow it."
        )
    model_section = {k: v for k, v in asdict(shape).items() if k not in SHAPE_RULE_KEYS}
    config = {"model": model_section, "data": asdict(data), "trainer": asdict(trainer), "tokens": d, "seed": seed}
    return Trial(trial_id=trial_id(config), config=config, cost=cost, dataset=dataset, budget=budget,
                 target_size=target_size)


def _list_trial(index: int, spec: dict[str, Any], *, sweep: SweepConfig, model: ModelConfig,
                trainer: TrainerConfig, datasets: dict[str, DataConfig]) -> Trial:
    key = f"sweep.trials[{index}]"
    for name in LIST_TRIAL_KEYS:
        value = spec.get(name)
        if name != "dataset" and value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            if not (name in ("seed", "warmup_tokens") and isinstance(value, int) and value >= 0):
                raise PlanError(f"{key}.{name}={value!r} is invalid: it must be a positive finite number.")
    dataset = spec.get("dataset") or next(iter(datasets))
    if dataset not in datasets:
        raise PlanError(f"{key}.dataset={dataset!r} is not on the sweep's data axis: allowed are {', '.join(datasets)}.")
    data = datasets[dataset]
    if "size" in spec:
        shape = resolve_shape(float(spec["size"]), model=model, vocab_size=data.vocab_size,
                              convention=sweep.size_convention)
    else:
        shape = _explicit_shape(model, int(spec.get("n_layer", model.n_layer)), int(spec.get("d_model", model.d_model)),
                                int(spec.get("n_head", model.n_head)), key=key)
    if ("tokens" in spec) == ("budget" in spec):
        raise PlanError(f"{key} must give exactly one of tokens or budget.")
    trainer = replace(trainer, lr=float(spec.get("lr", trainer.lr)),
                      batch_tokens=int(spec.get("batch_tokens", trainer.batch_tokens)),
                      warmup_tokens=int(spec.get("warmup_tokens", trainer.warmup_tokens)))
    return _make_trial(shape=shape, data=data, dataset=dataset, trainer=trainer, seed=int(spec.get("seed", 0)),
                       tokens=spec.get("tokens"), budget=spec.get("budget"), target_size=spec.get("size"), sweep=sweep)


def _deduplicate(trials: list[Trial]) -> list[Trial]:
    seen: dict[str, Trial] = {}
    for trial in trials:
        seen.setdefault(trial.trial_id, trial)
    dropped = len(trials) - len(seen)
    if dropped:
        warnings.warn(
            f"{dropped} planned trial(s) duplicate others (e.g. nearby target sizes resolving to one shape) "
            f"and were collapsed; {len(seen)} unique trials remain.",
            PlanWarning, stacklevel=3,
        )
    return list(seen.values())
