"""The pure part of a pilot: where its cells lie, which batches each searches, where the profile's minimum is,
whether the vocabulary leaves room for the sweep's shapes, and the hparams YAML it writes. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from orchestrator.fitting.hparams_law import CellOptimum, HParamsLaw
from orchestrator.fitting.isoflop import fit_parabola
from orchestrator.hparams import HParamsConfig, ScaleRule, invalid_reason, steps, warmup_steps

MIN_STEPS_FLOOR = 100
"""The batch choices give at least this many steps even where hparams.min_steps is lower."""
EMBED_WARN = 0.5
"""Embedding share of N_total above which the pilot warns: a law of N then mostly measures the vocabulary."""
WARMUP_MAX_FRACTION = 0.1
"""The longest warmup a pilot's rule gives, as a share of D: where hparams.min_warmup_steps would need more, the
batch gives more steps instead (a warmup that is much of a short run is itself a bias: Porian et al. 2024)."""
EMBED_REFUSE = 0.9
"""Above this share, or when a budget's sizes collapse to fewer than 3 distinct shapes, the pilot refuses."""


class Verdict(StrEnum):
    """What the vocabulary check says of a design."""

    OK = "ok"
    WARN = "warn"
    """The embeddings take more than EMBED_WARN of N: the pilot runs and says so."""
    REFUSE = "refuse"
    """More than EMBED_REFUSE, or a budget's sizes collapse to fewer than 3 shapes: the pilot does not run."""


def cells(budgets: list[float], *, centre_guess: float, span: float) -> list[tuple[float, float]]:
    """(budget, size) of each cell: at every budget, the sizes N = sqrt(C / (6 r)) (Hoffmann et al. 2022) of
    r = centre_guess and r = centre_guess x span tokens per parameter. The cells then vary N and D apart (lr*(N, D)
    needs both) over the range of tokens per parameter an IsoFLOP design spans, at the cost of the smallest
    budgets."""
    return [(c, math.sqrt(c / (6.0 * r))) for c in budgets for r in (centre_guess, centre_guess * span)]


def corpus_budgets(candidates: list[float], *, largest_tokens: list[float], train_tokens: float, epochs: float,
                   count: int = 3) -> list[float]:
    """The `count` largest consecutive candidate budgets (ascending) whose design's largest D (`largest_tokens`,
    one per candidate; NaN where the design cannot be planned) is at most `epochs` passes over `train_tokens`:
    the most compute a corpus holds without repeating tokens more than that (repeated tokens are worth less than
    fresh ones past a few epochs: Muennighoff et al. 2023). Empty when fewer than `count` qualify."""
    held = [bool(math.isfinite(d) and d <= epochs * train_tokens) for d in largest_tokens]
    for end in range(len(candidates), count - 1, -1):
        if all(held[end - count:end]):
            return sorted(candidates[end - count:end])
    return []


def batch_choices(tokens: int, *, seq_len: int, min_steps: int, n: int) -> list[int]:
    """Batches (tokens, whole sequences) of D / (s 2^i), i < n, s = max(min_steps, MIN_STEPS_FLOOR): rounded
    down, so every choice runs at least s steps (a valid scaling point)."""
    s = max(min_steps, MIN_STEPS_FLOOR)
    return sorted({seq_len * max(1, math.floor(tokens / (s * 2 ** i) / seq_len)) for i in range(n)})


def most_steps(*, min_steps: int, n: int) -> int:
    """The most steps the batch choices were laid out to give: s 2^(n-1) (a cell's rounding aside)."""
    return max(min_steps, MIN_STEPS_FLOOR) * 2 ** (n - 1)


@dataclass(frozen=True)
class ProfileMinimum:
    """Where the IsoFLOP profile at budget C has its minimum."""

    budget: float
    N_opt: float
    D_opt: float
    tokens_per_param: float
    centre: float
    """The design centre that puts N_c = sqrt(C / (6 centre)) at N_opt: C / (6 N_opt^2)."""
    edge: str
    """'' (bracketed), 'small' or 'large': the lowest loss is at that end of the sizes tried."""
    n_sizes: int


def profile_minimum(N: np.ndarray, D: np.ndarray, loss: np.ndarray, *, budget: float) -> ProfileMinimum:
    """A parabola in ln N through the lowest point and its neighbours (Hoffmann et al. 2022, approach 2); the
    point itself where it is at an edge. D at the minimum by linear interpolation of ln D in ln N."""
    order = np.argsort(N)
    N, D, loss = (np.asarray(v, float)[order] for v in (N, D, loss))
    best = int(np.argmin(loss))
    edge = "small" if best == 0 else "large" if best == len(N) - 1 else ""
    x = np.log(N)
    n_opt = float(N[best])
    if not edge:
        lo, hi = max(best - 2, 0), min(best + 3, len(N))
        (c0, c1, c2), _ = fit_parabola(x[lo:hi], loss[lo:hi])
        if c2 > 0 and x[lo] <= -c1 / (2 * c2) <= x[hi - 1]:
            n_opt = float(math.exp(-c1 / (2 * c2)))
    d_opt = float(math.exp(np.interp(math.log(n_opt), x, np.log(D))))
    return ProfileMinimum(budget=budget, N_opt=n_opt, D_opt=d_opt, tokens_per_param=d_opt / n_opt,
                          centre=budget / (6.0 * n_opt ** 2), edge=edge, n_sizes=len(N))


def extension_sizes(N: np.ndarray, *, edge: str, count: int = 2) -> list[float]:
    """`count` sizes beyond the edge, at the profile's own spacing in ln N."""
    N = np.sort(np.asarray(N, float))
    step = float(np.median(np.diff(np.log(N)))) if len(N) > 1 else math.log(2.0)
    if edge == "small":
        return [float(N[0] * math.exp(-step * (i + 1))) for i in range(count)]
    return [float(N[-1] * math.exp(step * (i + 1))) for i in range(count)]


@dataclass(frozen=True)
class VocabularyCheck:
    """How much of N the embeddings take at each budget of the design, and how many distinct shapes it has."""

    budgets: tuple[float, ...]
    embed_share: tuple[float, ...]
    """Embedding share of N_total at each budget's smallest size (the worst)."""
    shapes: tuple[int, ...]
    """Distinct shapes per budget."""
    sizes: tuple[int, ...]
    """Sizes planned per budget."""
    vocab_size: int

    @property
    def verdict(self) -> Verdict:
        if max(self.embed_share) > EMBED_REFUSE or min(self.shapes) < min(3, min(self.sizes)):
            return Verdict.REFUSE
        return Verdict.WARN if max(self.embed_share) > EMBED_WARN else Verdict.OK

    def sentence(self) -> str:
        worst = int(np.argmax(self.embed_share))
        collapsed = [f"C={b:.3g}: {s} shapes for {n} sizes" for b, s, n in zip(self.budgets, self.shapes, self.sizes)
                     if s < min(3, n)]
        text = (f"the embeddings of a {self.vocab_size}-entry vocabulary are {100 * self.embed_share[worst]:.0f}% of "
                f"N at C={self.budgets[worst]:.3g}")
        if collapsed:
            text += "; the sizes collapse to few shapes (" + "; ".join(collapsed) + ")"
        return text + (": a law of N_total then largely measures the vocabulary, not the model; a smaller "
                       "vocabulary (prepare.vocab_size) or larger budgets leave room for the shapes"
                       if self.verdict != Verdict.OK else "")


def vocabulary_check(budgets: list[float], *, n_total: list[list[int]], n_embed: list[list[int]],
                     shapes: list[list[str]], vocab_size: int, planned: int) -> VocabularyCheck:
    """The check over a planned design: per budget, its trials' N_total, N_embed and shape strings; `planned`
    sizes were asked for at each budget."""
    return VocabularyCheck(budgets=tuple(budgets),
                           embed_share=tuple(max(e / n for n, e in zip(ns, es)) for ns, es in zip(n_total, n_embed)),
                           shapes=tuple(len(set(s)) for s in shapes), sizes=tuple(planned for _ in shapes),
                           vocab_size=vocab_size)


def batch_at_small_edge(optima: list[CellOptimum]) -> bool:
    """Whether B* lay below the smallest batch tried in most cells (more steps still lowered the loss)."""
    below = sum(1 for c in optima if "B*" in c.edge and c.batch_opt <= c.batch_best_run)
    return below > len(optima) / 2


def pilot_rules(law: HParamsLaw, optima: list[CellOptimum], *, base: HParamsConfig, centre: float, name: str,
                lr_range: tuple[float, float], seq_len: int, note: str, most_steps: float) -> HParamsConfig:
    """The hparams option a pilot writes: its lr*(N, D) and B*(D) (B in tokens), its centre; the base's warmup,
    beta2 and validity rules. Where B* lay below every batch tried in most cells, the law's batch is an
    extrapolation past the runs: the rule keeps the most steps tried instead (B = D / most_steps, the form of
    a constant-steps rule), rather than steps nobody ran."""
    lr = ScaleRule(of="N", coef=law.k_lr, exponent=law.alpha, of2="D", exponent2=law.beta, min=lr_range[0],
                   max=lr_range[1]) if law.alpha_free else ScaleRule(of="D", coef=law.k_lr, exponent=law.beta,
                                                                     min=lr_range[0], max=lr_range[1])
    batch = ScaleRule(of="D", coef=law.k_B, exponent=law.gamma, min=float(seq_len))
    if batch_at_small_edge(optima):
        batch = ScaleRule(of="D", coef=1.0 / most_steps, exponent=1.0, min=float(seq_len))
    return HParamsConfig(name=name, lr=lr, batch_tokens=batch, warmup_tokens=base.warmup_tokens,
                         beta2_batch_ref=base.beta2_batch_ref, beta2_ref=base.beta2_ref, beta2_min=base.beta2_min,
                         beta2_max=base.beta2_max, min_steps=base.min_steps, min_warmup_steps=base.min_warmup_steps,
                         allow_invalid=base.allow_invalid, centre_tokens_per_param=centre, pilot=note)


@dataclass(frozen=True)
class BoundedRules:
    """A pilot's rules held inside the validity limits of hparams (min_steps, min_warmup_steps) at every point of
    the design they are for, with what was changed to get there."""

    rules: HParamsConfig
    notes: tuple[str, ...]
    """One clause per change (the batch capped, the warmup lengthened), for the option's `pilot:` note."""
    invalid: int
    """Points still not valid (0 unless even one sequence per step leaves too few steps)."""


def bound_rules(rules: HParamsConfig, points: list[tuple[float, float, float]], *, seq_len: int,
                default_warmup_fraction: float) -> BoundedRules:
    """`rules` with its batch capped and its warmup lengthened so that every point (C, N, D) of the design is a
    valid scaling point under rules.min_steps and rules.min_warmup_steps (orchestrator/hparams.py).

    The batch: S = max(min_steps, min_warmup_steps / WARMUP_MAX_FRACTION) steps at least. Where the law's batch
    k D^gamma gives fewer at some point, the rule becomes the power law through g(D) = min(k D^gamma, D / S - half
    a sequence) at the design's smallest and largest D. In ln-ln coordinates g is the minimum of two concave
    curves, so the chord between those two points lies on or below g over the whole range: every point gets at
    least S steps after rounding to whole sequences, and no batch above the law's. The warmup: where the
    trainer's (or the base rule's) warmup spans fewer than min_warmup_steps steps at some point, the warmup
    becomes the smallest fraction f of D that gives every point min_warmup_steps steps (f <= WARMUP_MAX_FRACTION,
    by S)."""
    notes: list[str] = []

    def batch(r: HParamsConfig, c: float, n: float, d: float) -> int:
        value = r.batch(C=c, N=n, D=d, seq_len=seq_len)
        assert value is not None, "a pilot's rules always set the batch"
        return value

    floor = max(rules.min_steps, math.ceil(rules.min_warmup_steps / WARMUP_MAX_FRACTION))
    short = [(c, n, d) for c, n, d in points if steps(int(d), batch(rules, c, n, d)) < floor]
    if short:
        rule = rules.batch_tokens
        assert rule.of == "D" and not rule.of2, "a pilot's batch rule is a law of D"
        c, n, d = min(short, key=lambda p: steps(int(p[2]), batch(rules, *p)))
        law_steps = steps(int(d), batch(rules, c, n, d))

        def allowed(tokens: float) -> float:  # the law, or the most that leaves `floor` steps after rounding
            # (one sequence where even that is too many: such a point stays invalid and is counted)
            return max(min(rule(C=0.0, N=0.0, D=tokens), tokens / floor - seq_len / 2), float(seq_len))

        lo, hi = min(p[2] for p in points), max(p[2] for p in points)
        exponent = rule.exponent if hi == lo else math.log(allowed(hi) / allowed(lo)) / math.log(hi / lo)
        rules = replace(rules, batch_tokens=replace(rule, coef=allowed(lo) / lo ** exponent, exponent=exponent))
        notes.append(f"batch_tokens lowered to {rules.batch_tokens.coef:.4g} D^{exponent:.3f}: the law gave "
                     f"{len(short)} of {len(points)} design points fewer than {floor} steps ({law_steps} at "
                     f"D={d:.4g}; hparams.min_steps={rules.min_steps}, min_warmup_steps={rules.min_warmup_steps} "
                     f"at most {100 * WARMUP_MAX_FRACTION:.0f}% of D), so the batch follows the law where it leaves "
                     f"enough steps and D / {floor} where not, through the smallest and largest D of the design")

    def warm(r: HParamsConfig, c: float, n: float, d: float) -> float:
        w = int(round(r.warmup_tokens(C=c, N=n, D=d))) if r.warmup_tokens.on else 0
        return warmup_steps(tokens=int(d), batch_tokens=batch(r, c, n, d), warmup_tokens=w,
                            default_fraction=default_warmup_fraction)

    cold = [(c, n, d) for c, n, d in points if warm(rules, c, n, d) < rules.min_warmup_steps]
    if cold:
        c, n, d = min(cold, key=lambda p: warm(rules, *p))
        was = warm(rules, c, n, d)
        # round(f D) / B >= w at every point: f >= (w B + 1) / D, rounded up to 4 decimals
        need = max((rules.min_warmup_steps * batch(rules, *p) + 1) / p[2] for p in points)
        fraction = math.ceil(max(need, 0.0 if rules.warmup_tokens.on else default_warmup_fraction) * 1e4) / 1e4
        before = rules.warmup_tokens.describe() if rules.warmup_tokens.on else (
            f"the trainer's {100 * default_warmup_fraction:g}% of D")
        rules = replace(rules, warmup_tokens=ScaleRule(of="D", coef=fraction, exponent=1.0))
        notes.append(f"warmup_tokens {100 * fraction:.4g}% of D: {before} gave {len(cold)} of {len(points)} design "
                     f"points fewer than hparams.min_warmup_steps={rules.min_warmup_steps} warmup steps "
                     f"({was:.3g} at D={d:.4g})")
    invalid = sum(invalid_reason(n_steps=steps(int(d), batch(rules, c, n, d)), n_warmup_steps=warm(rules, c, n, d),
                                 rules=rules) is not None for c, n, d in points)
    return BoundedRules(rules=rules, notes=tuple(notes), invalid=invalid)


def _rule_yaml(rule: ScaleRule) -> str:
    parts = [f"of: {rule.of}", f"coef: {rule.coef:.6g}", f"exponent: {rule.exponent:.6g}", f"min: {rule.min:.6g}",
             f"max: {rule.max:.6g}"]
    if rule.of2:
        parts += [f"of2: {rule.of2}", f"exponent2: {rule.exponent2:.6g}"]
    return "{" + ", ".join(parts) + "}"


def rules_yaml(rules: HParamsConfig, *, comments: list[str]) -> str:
    """The YAML text of `rules` (group hparams/), led by `comments` (what was measured)."""
    lines = [f"# {c}" for c in comments]
    lines += [f"name: {rules.name}", f"lr: {_rule_yaml(rules.lr)}", f"batch_tokens: {_rule_yaml(rules.batch_tokens)}",
              f"warmup_tokens: {_rule_yaml(rules.warmup_tokens)}", f"beta2_batch_ref: {rules.beta2_batch_ref:.6g}",
              f"beta2_ref: {rules.beta2_ref}", f"beta2_min: {rules.beta2_min}", f"beta2_max: {rules.beta2_max}",
              f"min_steps: {rules.min_steps}", f"min_warmup_steps: {rules.min_warmup_steps}",
              f"allow_invalid: {str(rules.allow_invalid).lower()}",
              f"centre_tokens_per_param: {rules.centre_tokens_per_param:.4g}",
              "pilot: " + _quote(rules.pilot)]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
