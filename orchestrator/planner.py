"""The planner: a sweep config in, the exact list of trials out. Pure: no I/O, no side effects.

Every trial carries its resolved config (what the trainer receives) and its exact cost. A trial's id
is a hash of that canonical config, independent of key order and of the sweep it came from, so the
same trial planned twice is one trial, and resuming or extending a sweep is a set difference.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, astuple, dataclass, replace
from typing import Any

from trainers.accounting import Cost, count_params, train_flops_per_token, training_cost
from orchestrator.config import LIST_TRIAL_KEYS, SweepConfig
from orchestrator.errors import UsageError
from orchestrator.hparams import HParamsConfig, invalid_reason, steps, warmup_steps
from trainers.config import DataConfig, ModelConfig, TrainerConfig, trainer_section
from trainers.schedule import WARMUP_DEFAULT_FRACTION

# Keys of the trainer section that change how a trial is observed, never its result: they are left
# out of the trial's identity so that, e.g., checkpointing more often does not make a new trial.
NON_IDENTITY_TRAINER_KEYS = ("eval_interval_tokens", "evals_per_run", "checkpoint_interval_tokens")
SHAPE_RULE_KEYS = ("aspect_ratio", "head_dim", "scale_depth")
MAX_LAYERS = 128


class PlanError(UsageError):
    """A sweep that cannot be planned; the message names the key, the value and what is allowed."""


class PlanWarning(UserWarning):
    """Something the user should know about a plan that still runs (e.g. collapsed duplicates)."""


@dataclass(frozen=True, slots=True)
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
    invalid: str | None = None
    """Why this trial would not be a valid scaling point (too few optimizer or warmup steps), else None."""
    label: str | None = None
    """A name that replaces the generated one (e.g. a WSD trunk's, orchestrator/forks.py)."""

    @property
    def tokens(self) -> int:
        return self.config["tokens"]

    @property
    def steps(self) -> int:
        """Optimizer steps: D over the batch, the last one possibly partial."""
        return steps(self.tokens, self.config["trainer"]["batch_tokens"])

    @property
    def warmup_steps(self) -> float:
        t = self.config["trainer"]
        return warmup_steps(tokens=self.tokens, batch_tokens=t["batch_tokens"], warmup_tokens=t["warmup_tokens"],
                            default_fraction=WARMUP_DEFAULT_FRACTION)

    @property
    def shape(self) -> str:
        m = self.config["model"]
        return f"{m['n_layer']}x{m['d_model']}/{m['n_head']}h"

    @property
    def name(self) -> str:
        """A readable run name, e.g. `C=1e12 N=1.2M D=140M lr=0.003 s=0` (a name only: the id is the config's hash)."""
        if self.label is not None:
            return self.label
        parts = [f"C={sci(self.budget)}"] if self.budget is not None else []
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
            "steps": self.steps,
            "warmup_steps": self.warmup_steps,
        }


def human(x: float) -> str:
    """1234567 -> '1.23M'."""
    x = float(f"{x:.3g}")  # round first so 999936 prints as 1M, not 1e+03k
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def sci(x: float) -> str:
    """1e12 -> '1e12', 3.16e10 -> '3.16e10' (no '+', no exponent zeros: a run name, read at a glance)."""
    mantissa, _, exponent = f"{x:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def trial_id(config: dict[str, Any]) -> str:
    """Hash of the canonical trial config: sorted keys, observation-only keys removed."""
    identity = {**config, "trainer": _trainer_identity(config["trainer"])}
    return _digest(_canonical(identity))


def _trainer_identity(trainer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trainer.items() if k not in NON_IDENTITY_TRAINER_KEYS}


def _canonical(value: Any) -> str:
    """Sorted keys, no spaces, no NaN: the same config always gives the same string."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _Sections:
    """A plan's config sections, each built and serialised once rather than once per trial.

    A large grid repeats a few shapes, datasets and trainer settings over many trials: each trial shares
    its section dicts (treat them as read-only; `with_lr` copies), and its id is the hash of the canonical
    JSON assembled from the sections' cached strings, the same string `trial_id` builds (tested).
    """

    def __init__(self, hparams: HParamsConfig | None = None) -> None:
        self._made: dict[int, tuple[object, dict[str, Any], str]] = {}
        self._shapes: dict[tuple, ModelConfig] = {}
        self._ruled: dict[tuple, TrainerConfig] = {}
        self.hparams = hparams

    def ruled(self, trainer: TrainerConfig, values: dict[str, Any]) -> TrainerConfig:
        """`trainer` with the rules' `values`, one object per distinct result (so its section is built once)."""
        key = (id(trainer), *sorted(values.items()))
        if key not in self._ruled:
            self._ruled[key] = replace(trainer, **values)
        return self._ruled[key]

    def _get(self, obj: object, make) -> tuple[dict[str, Any], str]:
        hit = self._made.get(id(obj))
        if hit is None or hit[0] is not obj:  # the object is kept alive in the entry, so its id is not reused
            section, canonical = make(obj)
            hit = self._made[id(obj)] = (obj, section, canonical)
        return hit[1], hit[2]

    def model(self, shape: ModelConfig) -> tuple[dict[str, Any], str]:
        def make(m):
            section = {k: v for k, v in asdict(m).items() if k not in SHAPE_RULE_KEYS}
            return section, _canonical(section)
        return self._get(shape, make)

    def data(self, data: DataConfig) -> tuple[dict[str, Any], str]:
        return self._get(data, lambda d: (asdict(d), _canonical(asdict(d))))

    def trainer(self, trainer: TrainerConfig) -> tuple[dict[str, Any], str]:
        def make(t):
            section = trainer_section(t)
            return section, _canonical(_trainer_identity(section))
        return self._get(trainer, make)

    def shape(self, target: float, *, model: ModelConfig, vocab_size: int, convention: str) -> ModelConfig:
        """resolve_shape, once per (target, model, vocab, convention) of the plan (a list sweep repeats sizes)."""
        key = (float(target), astuple(model), vocab_size, convention)
        if key not in self._shapes:
            self._shapes[key] = _rule_shape(target, model=model, vocab_size=vocab_size, convention=convention)
        return self._shapes[key]

    def trial_id(self, config: dict[str, Any], *, parts: tuple[str, str, str]) -> str:
        """trial_id(config) from the sections' canonical strings (model, data, trainer identity)."""
        model, data, trainer = parts
        seed, tokens = (str(v) if type(v) is int else _canonical(v) for v in (config["seed"], config["tokens"]))
        return _digest(f'{{"data":{data},"model":{model},"seed":{seed},"tokens":{tokens},"trainer":{trainer}}}')


def _rule_shape(target: float, *, model: ModelConfig, vocab_size: int, convention: str) -> ModelConfig:
    """resolve_shape for a sweep: a shape the user's model.* keys make invalid is a PlanError (exit 2)."""
    try:
        return resolve_shape(target, model=model, vocab_size=vocab_size, convention=convention)
    except ValueError as err:  # ModelConfig's own check of a shape the rule built, e.g. an odd rotary head
        raise PlanError(f"the shape rule (model.aspect_ratio={model.aspect_ratio}, model.head_dim={model.head_dim}) "
                        f"builds an invalid model for {human(target)} parameters: {err}") from None


def resolve_shape(target: float, *, model: ModelConfig, vocab_size: int, convention: str = "total") -> ModelConfig:
    """The shape nearest `target` parameters under the shape rule.

    The rule (cf. nanochat, which derives width from depth): d_model is a multiple of
    `model.head_dim` (n_head = d_model / head_dim) and d_model / n_layer should be
    `model.aspect_ratio`. Depth alone moves N ~ L^3 in coarse steps at small scale, so both L and d
    move, and the shape minimising a weighted sum of squared log errors wins: a 15% miss in size
    costs as much as a factor-2 miss in aspect ratio. The planner uses the shape's exact count.
    With `model.scale_depth` false only the width moves, in steps of `model.head_dim`, while the depth and the
    head count stay as given (`model.n_layer`, `model.n_head`; the heads widen with the model): the nearest
    width wins. On a CPU, attention's cost grows with the number of heads far more than with their width.
    """
    h = model.head_dim
    best: tuple[float, ModelConfig] | None = None
    if not model.scale_depth:
        for d_model in _widths_near(target, n_layer=model.n_layer, model=model, vocab_size=vocab_size,
                                    convention=convention):
            shape = replace(model, d_model=d_model, n_head=model.n_head)
            score = abs(math.log(_count(shape, vocab_size=vocab_size, convention=convention) / target))
            if best is None or score < best[0]:
                best = (score, shape)
        assert best is not None
        return best[1]
    for n_layer in range(1, MAX_LAYERS + 1):
        widths = _widths_near(target, n_layer=n_layer, model=model, vocab_size=vocab_size, convention=convention)
        for d_model in widths:
            shape = replace(model, n_layer=n_layer, d_model=d_model, n_head=d_model // h)
            n = _count(shape, vocab_size=vocab_size, convention=convention)
            size_err = math.log(n / target) / math.log(1.15)
            aspect_err = math.log((d_model / n_layer) / model.aspect_ratio) / math.log(2.0)
            score = size_err**2 + aspect_err**2
            if best is None or score < best[0]:
                best = (score, shape)
        # Deeper models at this size are narrower still (d/L only falls with L), so once even the widest
        # candidate here is too narrow by more than the best score allows, no deeper one can win.
        widest = max(widths) / n_layer
        if best is not None and widest < model.aspect_ratio and \
                (math.log(widest / model.aspect_ratio) / math.log(2.0)) ** 2 >= best[0]:
            break
    assert best is not None
    return best[1]


def _count(shape: ModelConfig, *, vocab_size: int, convention: str) -> int:
    params = count_params(shape, vocab_size=vocab_size)
    return params.total if convention == "total" else params.nonembed


def _widths_near(target: float, *, n_layer: int, model: ModelConfig, vocab_size: int, convention: str) -> list[int]:
    """The two head_dim multiples whose count at this depth brackets the target (the smallest multiple d with
    count >= target, searched no further than 2^16, and the one below it)."""
    h = model.head_dim

    heads = (lambda d: d // h) if model.scale_depth else (lambda d: model.n_head)

    def count(d: int) -> int:
        return _count(replace(model, n_layer=n_layer, d_model=d, n_head=heads(d)), vocab_size=vocab_size,
                      convention=convention)

    # At a fixed depth the count is a quadratic in d (blocks ~ d^2, norms and embeddings ~ d): through three
    # widths it is exact, so its root lands on the answer or next to it; the loops below make it exact.
    c1, c2, c3 = count(h), count(2 * h), count(3 * h)
    qa = (c3 - 2 * c2 + c1) / (2 * h * h)
    qb = (c2 - c1) / h - 3 * h * qa
    qc = c1 - qa * h * h - qb * h - target
    if qa > 0:
        root = (-qb + math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)
    else:
        root = -qc / qb if qb > 0 else h
    cap = (1 << 16) // h * h + h  # the first multiple of h beyond 2^16, where the scan used to stop
    d = min(max(h, math.ceil(root / h) * h), cap)
    while d < cap and count(d) < target:
        d += h
    while d > h and count(d - h) >= target:
        d -= h
    return [d - h, d] if d > h else [d]


def plan(
    sweep: SweepConfig,
    *,
    model: ModelConfig,
    trainer: TrainerConfig,
    datasets: dict[str, DataConfig],
    lr_law: Callable[..., float] | None = None,
    hparams: HParamsConfig | None = None,
) -> list[Trial]:
    """All trials of `sweep`, deterministic and deduplicated (duplicates warn with PlanWarning).

    `model` and `trainer` are the base configs the sweep's axes override; `datasets` maps each name
    on the data axis to its config (the CLI composes them from conf/data/). `lr_law(N=, D=, C=)`, when given
    (sweep.lr_from), sets each trial's trainer.lr from its exact N_total, tokens or compute, so the id reflects it.
    kind=lr_search plans its points (size x tokens/budget) at the base learning rate; the search
    varies the rate. `hparams` (group hparams/) sets each trial's lr, batch, warmup and beta2 from its scale
    where the sweep gives no axis for them, and marks trials that would not be valid scaling points
    (`Trial.invalid`; orchestrator/hparams.py).
    """
    sections = _Sections(hparams)
    with _collector_paused():
        if sweep.kind == "list":
            trials = [_list_trial(i, spec, sweep=sweep, model=model, trainer=trainer, datasets=datasets,
                                  sections=sections) for i, spec in enumerate(sweep.trials)]
            if not trials:
                raise PlanError(f"sweep.trials is empty: sweep {sweep.name!r} of kind=list plans no trials.")
        else:
            trials = list(_axis_trials(sweep, model=model, trainer=trainer, datasets=datasets, sections=sections))
    if lr_law is not None:
        trials = [with_lr(t, lr_law(N=t.cost.n_total, D=t.tokens,
                                    C=t.budget if t.budget is not None else t.cost.c_exact)) for t in trials]
    return _deduplicate(trials)


def _ruled(trainer: TrainerConfig, *, sections: _Sections, explicit: frozenset[str], budget: float | None,
           cost: Cost, seq_len: int) -> TrainerConfig:
    """The trainer with the hparams rules' values for every key the sweep does not set explicitly."""
    rules = sections.hparams
    if rules is None:
        return trainer
    C, N, D = budget if budget is not None else cost.c_exact, cost.n_total, cost.tokens
    values = {}
    if rules.lr.on and "lr" not in explicit:
        values["lr"] = float(rules.lr(C=C, N=N, D=D))
    if "batch_tokens" not in explicit and (batch := rules.batch(C=C, N=N, D=D, seq_len=seq_len)) is not None:
        values["batch_tokens"] = batch
    if rules.warmup_tokens.on and "warmup_tokens" not in explicit:
        values["warmup_tokens"] = int(round(rules.warmup_tokens(C=C, N=N, D=D)))
    if (beta2 := rules.beta2(values.get("batch_tokens", trainer.batch_tokens))) is not None:
        values["beta2"] = beta2
    return sections.ruled(trainer, values) if values else trainer


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while trials are built: allocating a million objects sets off full
    collections over every object again and again (a 1e6-trial plan took twice as long), and nothing
    built here forms a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def with_lr(trial: Trial, lr: float, **trainer_keys: Any) -> Trial:
    """The same trial at learning rate `lr` (and other trainer keys), with its id rehashed."""
    config = {**trial.config, "trainer": {**trial.config["trainer"], "lr": float(lr), **trainer_keys}}
    return replace(trial, trial_id=trial_id(config), config=config)


def _axis_trials(sweep: SweepConfig, *, model: ModelConfig, trainer: TrainerConfig,
                 datasets: dict[str, DataConfig], sections: _Sections):
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
    trainers = {key: replace(trainer, lr=key[0], batch_tokens=key[1], warmup_tokens=key[2])
                for key in dict.fromkeys(h[:3] for h in hparams)}
    explicit = frozenset(k for k, axis in (("lr", sweep.lr), ("batch_tokens", sweep.batch_tokens),
                                           ("warmup_tokens", sweep.warmup_tokens)) if axis)
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
                        shape=shape, data=data, dataset=name, seed=seed, trainer=trainers[lr, batch, warmup],
                        tokens=tokens, budget=budget, target_size=size, sweep=sweep, sections=sections,
                        explicit=explicit,
                    )


def _model_axis(sweep: SweepConfig, *, model: ModelConfig, vocab_size: int) -> list[tuple[ModelConfig, float | None]]:
    if sweep.shapes:
        return [(_explicit_shape(model, s.n_layer, s.d_model, s.n_head, key="sweep.shapes"), None)
                for s in sweep.shapes]
    if sweep.sizes:
        return [(_rule_shape(n, model=model, vocab_size=vocab_size, convention=sweep.size_convention), n)
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
    return [(_rule_shape(n, model=model, vocab_size=vocab_size, convention=sweep.size_convention), n)
            for n in targets]


def _make_trial(*, shape: ModelConfig, data: DataConfig, dataset: str, trainer: TrainerConfig, seed: int,
                tokens: float | None, budget: float | None, target_size: float | None, sweep: SweepConfig,
                sections: _Sections, explicit: frozenset[str] = frozenset()) -> Trial:
    seq = shape.seq_len
    if budget is not None:
        # Solve D so that the exact training FLOPs hit the budget; D is whole sequences.
        fpt = train_flops_per_token(shape, vocab_size=data.vocab_size)
        d = max(seq, round(budget / fpt / seq) * seq)
    else:
        assert tokens is not None
        d = max(seq, round(tokens / seq) * seq)
    cost = training_cost(shape, vocab_size=data.vocab_size, tokens=d)
    trainer = _ruled(trainer, sections=sections, explicit=explicit, budget=budget, cost=cost, seq_len=seq)
    if d < trainer.batch_tokens or cost.tokens_per_param < sweep.min_tokens_per_param or (
            budget is not None and abs(cost.c_exact - budget) / budget > sweep.budget_tolerance):
        _reject(shape=shape, cost=cost, d=d, tokens=tokens, budget=budget, trainer=trainer, sweep=sweep)
    (model_section, model_json), (data_section, data_json) = sections.model(shape), sections.data(data)
    trainer_section, trainer_json = sections.trainer(trainer)
    config = {"model": model_section, "data": data_section, "trainer": trainer_section, "tokens": d, "seed": seed}
    invalid = None
    if sections.hparams is not None:
        invalid = invalid_reason(
            n_steps=steps(d, trainer.batch_tokens), rules=sections.hparams,
            n_warmup_steps=warmup_steps(tokens=d, batch_tokens=trainer.batch_tokens,
                                        warmup_tokens=trainer.warmup_tokens, default_fraction=WARMUP_DEFAULT_FRACTION))
    return Trial(trial_id=sections.trial_id(config, parts=(model_json, data_json, trainer_json)), config=config,
                 cost=cost, dataset=dataset, budget=budget, target_size=target_size, invalid=invalid)


def _reject(*, shape: ModelConfig, cost: Cost, d: int, tokens: float | None, budget: float | None,
            trainer: TrainerConfig, sweep: SweepConfig) -> None:
    """The PlanError of a trial that breaks one of _make_trial's rules (kept off the per-trial path)."""
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


def _list_trial(index: int, spec: dict[str, Any], *, sweep: SweepConfig, model: ModelConfig,
                trainer: TrainerConfig, datasets: dict[str, DataConfig], sections: _Sections) -> Trial:
    key = f"sweep.trials[{index}]"
    for name in LIST_TRIAL_KEYS:
        value = spec.get(name)
        if name != "dataset" and value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            if not (name in ("seed", "warmup_tokens") and isinstance(value, int) and value >= 0):
                raise PlanError(f"{key}.{name}={value!r} is invalid: it must be a positive finite number.")
    dataset = spec.get("dataset") or next(iter(datasets))
    if dataset not in datasets:
        raise PlanError(f"{key}.dataset={dataset!r} is not on the sweep's data axis: "
                        f"allowed are {', '.join(datasets)}.")
    data = datasets[dataset]
    if "size" in spec:
        shape = sections.shape(float(spec["size"]), model=model, vocab_size=data.vocab_size,
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
                       tokens=spec.get("tokens"), budget=spec.get("budget"), target_size=spec.get("size"), sweep=sweep,
                       sections=sections, explicit=frozenset(k for k in ("lr", "batch_tokens", "warmup_tokens")
                                                             if k in spec))


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


def shape_rule_samples(model: ModelConfig, *, vocab_size: int, n_lo: float, n_hi: float, convention: str = "total",
                       size_convention: str = "total", per_decade: int = 96) -> tuple[list[float], list[float]]:
    """(N, C_exact / (N D)) of the shapes the shape rule gives target sizes log-spaced over [n_lo, n_hi].

    One sample per target, so a shape chosen over a wider range of targets weighs more (a smooth of these
    samples is the cost per token a size can expect from the rule, not an average over distinct shapes).
    N counts parameters by `convention` (the fit's: total or nonembed); targets are resolved as the sweep
    resolves them (`size_convention`). The fitting stage smooths these samples into its compute model
    (fitting/compute.py).
    """
    sizes, ks = [], []
    # Targets on a fixed lattice (10^(i / per_decade)), so that overlapping ranges give the same samples.
    for i in range(math.ceil(math.log10(n_lo) * per_decade), math.floor(math.log10(n_hi) * per_decade) + 1):
        shape = resolve_shape(10 ** (i / per_decade), model=model, vocab_size=vocab_size, convention=size_convention)
        params = count_params(shape, vocab_size=vocab_size)
        n = params.total if convention == "total" else params.nonembed
        if n > 0:
            sizes.append(float(n))
            ks.append(train_flops_per_token(shape, vocab_size=vocab_size) / n)
    return sizes, ks
