"""action=pilot: measure a sweep's learning-rate and batch rules, its IsoFLOP centre and its throughput with a
few short runs at its smallest budgets, and write them as the hparams option `pilot_<name>` the sweep then uses.

1. The vocabulary: the sweep's design at the guessed centre, planned; refused in one sentence when the embeddings
   take more than 90% of N or a budget's sizes collapse to fewer than 3 shapes, a warning above 50%.
2. The search: one Optuna study per cell (one size at each of the `pilot.budgets` smallest budgets, each size the
   guessed centre of one budget, so that N and D vary apart), over ln lr and the batch (choices that keep each
   run a valid point), with a percentile pruner on eval losses at equal tokens, on the Ray runner into the MLflow
   experiment `pilot_<name>` (search/lr_search.py). The law lr*(N, D) = k N^alpha D^beta, B*(D) = k_B D^gamma
   through the cells' optima (fitting/hparams_law.py: Li et al. 2025's Step Law form), with bootstrap intervals.
3. The profile: an IsoFLOP profile at the smallest budget under those rules (experiment `pilot_<name>_profile`),
   extended past an edge minimum; its minimum's tokens per parameter sets the design's centre.
   The rules the profile runs under and the rules written are held inside hparams.min_steps and
   hparams.min_warmup_steps at every size each design can reach, adaptive placement's extensions included
   (design.bound_rules), so the sweep refuses none of its trials.
4. Throughput per shape (FLOP/s of each run), printed with the plan's time at that rate.
The files: <config dir>/hparams/pilot_<name>.yaml (written last, whole), <fit.out_dir, default
reports>/pilot_<name>/ (pilot.json, the law's report section and figure). Rerunning resumes: finished runs are
read back from MLflow and the studies from the Optuna journal.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, replace
from datetime import datetime, UTC
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.conf_dirs import ConfigDirs
from orchestrator.config import Config, reports_dir
from orchestrator.errors import RunFailure, UsageError
from orchestrator.fitting.errors import FitError
from orchestrator.fitting.hparams_law import HParamsLaw, fit_hparams_law, fit_pooled_law
from orchestrator.hparams import HParamsConfig
from orchestrator.pilot import design
from orchestrator.planner import PlanError, Trial
from orchestrator.run_tags import Stage
from orchestrator.sweep_plan import plan_trials
from trainers.api import Status
from trainers.config import DataConfig
from trainers.schedule import WARMUP_DEFAULT_FRACTION

PRUNE_PERCENTILE = 75.0
"""The pilot stops a trial only when its eval loss is in the worst quarter at equal tokens (most trials finish:
each cell's quadratic needs its points)."""

def _sub(config: Config, *, name: str, **sweep_keys) -> Config:
    """The config of one of the pilot's own sweeps: its own experiment, no adaptive placement, no forks."""
    keys = dict(sizes=[], shapes=[], tokens=[], lr=[], batch_tokens=[], warmup_tokens=[], lr_from="", forks=False)
    sweep = replace(config.sweep, name=name, **(keys | sweep_keys))
    return replace(config, sweep=sweep, adaptive=replace(config.adaptive, enabled=False),
                   tracking=replace(config.tracking, experiment=None))


def _by_budget(trials: list[Trial]) -> dict[float, list[Trial]]:
    out: dict[float, list[Trial]] = {}
    for t in trials:
        out.setdefault(float(t.budget), []).append(t)
    return dict(sorted(out.items()))


def check_vocabulary(trials: list[Trial], *, vocab_size: int, sizes_per_budget: int) -> design.VocabularyCheck:
    """The vocabulary check of a planned IsoFLOP design (the planner has already collapsed sizes that resolved
    to one shape: `sizes_per_budget` is how many each budget asked for)."""
    groups = _by_budget(trials)
    return design.vocabulary_check(
        list(groups), n_total=[[t.cost.n_total for t in ts] for ts in groups.values()],
        n_embed=[[t.cost.n_embed for t in ts] for ts in groups.values()],
        shapes=[[t.shape for t in ts] for ts in groups.values()], vocab_size=vocab_size, planned=sizes_per_budget)


def reach(config: Config, *, datasets: dict[str, DataConfig], extra: int) -> list[tuple[float, float, float]]:
    """(C, N_total, D) of every trial the design of `config` can run: its planned sizes, and up to `extra` sizes
    beyond each edge of each budget one step apart (the mean spacing of its sizes in ln N_total, as adaptive
    placement extends: search/adaptive.py), where the planner can place them."""
    trials = plan_trials(config, datasets=datasets)
    points = [(float(t.budget), float(t.cost.n_total), float(t.tokens)) for t in trials]
    for budget, group in _by_budget(trials).items() if extra else ():
        x = np.log(sorted({t.cost.n_total for t in group}))
        step = float(np.mean(np.diff(x))) if len(x) > 1 else math.log(2.0)
        for i in range(1, extra + 1):
            for n in (math.exp(x[0] - i * step), math.exp(x[-1] + i * step)):
                one = replace(config, sweep=replace(config.sweep, sizes=[n], shapes=[], budgets=[budget]))
                try:
                    points += [(budget, float(t.cost.n_total), float(t.tokens)) for t in
                               plan_trials(one, datasets=datasets)]
                except PlanError:  # too few tokens per parameter, off the budget: adaptive cannot place it either
                    continue
    return points


def bounded(config: Config, rules: HParamsConfig, *, datasets: dict[str, DataConfig],
            extra: int) -> design.BoundedRules:
    """`rules` held inside hparams' validity limits over the reach of `config`'s design (design.bound_rules)."""
    cfg = replace(config, hparams=rules)
    seq_len = config.model.seq_len
    return design.bound_rules(rules, reach(cfg, datasets=datasets, extra=extra), seq_len=seq_len,
                              default_warmup_fraction=WARMUP_DEFAULT_FRACTION)


def _finished(config: Config) -> pd.DataFrame:
    from orchestrator.runs import runs_table  # noqa: PLC0415
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    tracker = open_sweep_store(config, create=False)
    if tracker is None or tracker.experiment_id is None:
        return pd.DataFrame(columns=["N_total", "D", "final_eval_loss"])
    runs = runs_table(tracker)
    return runs[(runs["status"] == Status.FINISHED) & runs["final_eval_loss"].notna()]


def _search(config: Config, *, datasets: dict[str, DataConfig], name: str, budgets: list[float]):
    """Step 2: the cells' studies, run (or resumed); returns the runs as (N, D, lr, batch, loss) rows."""
    from orchestrator.runner import run_sweep  # noqa: PLC0415
    from orchestrator.search.lr_search import LRSearch, previous_results  # noqa: PLC0415
    from orchestrator.search.storage import open_storage  # noqa: PLC0415

    p = config.pilot
    cfg = _sub(config, name=name, kind="lr_search", sizes=[1.0], budgets=budgets[:1])
    cfg = replace(cfg, search=replace(cfg.search, sampler="tpe", pruner="median", trials_per_size=p.trials_per_cell,
                                      parallel_per_size=1, startup_trials=3, lr_min=p.lr_min, lr_max=p.lr_max,
                                      batch_tokens=[], warmup_tokens=[], seed=p.seed))
    points = [t for budget, size in design.cells(budgets, centre_guess=p.centre_guess, span=p.cell_span)
              for t in plan_trials(replace(cfg, sweep=replace(cfg.sweep, sizes=[size], budgets=[budget])),
                                   datasets=datasets)]
    choices = [design.batch_choices(t.tokens, seq_len=t.config["model"]["seq_len"],
                                    min_steps=config.hparams.min_steps, n=p.batch_choices) for t in points]
    storage = open_storage(cfg.search, tracking_uri=cfg.tracking.uri)
    source = LRSearch(cfg, points=points, storage=storage, previous=previous_results(cfg), batch_choices=choices,
                      tags={"stage": Stage.PILOT}, prune_percentile=PRUNE_PERCENTILE)
    print(f"pilot {name}: search over lr {p.lr_min:g}..{p.lr_max:g} and batch at {len(points)} cells x "
          f"{p.trials_per_cell} trials (TPE, percentile pruner); {source.resumed} already done", flush=True)
    code = run_sweep(cfg, trials=points, source=source)
    if code not in (0, 1):
        raise RunFailure(f"the pilot's search stopped (exit {code}); rerun the same command to resume it.")
    rows, pruned = source.finished_runs()
    return cfg, points, choices, pd.DataFrame(rows, columns=["N", "D", "lr", "batch", "loss"]), pruned


def _profile(config: Config, *, datasets: dict[str, DataConfig], name: str, budget: float, rules):
    """Step 3: the IsoFLOP profile at `budget`, extended past an edge; returns (its minimum, its config)."""
    from orchestrator.runner import run_sweep  # noqa: PLC0415

    p = config.pilot
    cfg = _sub(config, name=name, kind="isoflop", budgets=[budget], sizes_per_budget=p.profile_sizes,
               span=p.profile_span, centre_tokens_per_param=p.centre_guess)
    cfg = replace(cfg, hparams=bounded(cfg, rules, datasets=datasets, extra=2 * p.max_extensions).rules)
    column = "N_total" if config.sweep.size_convention == "total" else "N_nonembed"
    sizes: list[float] = []
    for extension in range(p.max_extensions + 1):
        step_cfg = replace(cfg, sweep=replace(cfg.sweep, sizes=sizes)) if sizes else cfg
        trials = plan_trials(step_cfg, datasets=datasets)
        print(f"pilot {name}: IsoFLOP profile at C={budget:.3g}, {len(trials)} sizes"
              + (f" (extension {extension})" if extension else ""), flush=True)
        if run_sweep(step_cfg, trials=trials) not in (0, 1):
            raise RunFailure("the pilot's profile stopped; rerun the same command to resume it.")
        runs = _finished(cfg)
        runs = runs[runs["steps"].astype(float) >= config.hparams.min_steps]
        if len(runs) < 3:
            raise RunFailure(f"the pilot's profile at C={budget:.3g} has {len(runs)} finished valid runs: too few "
                             f"to locate a minimum (see the failed runs in experiment {name}).")
        minimum = design.profile_minimum(runs[column].to_numpy(float), runs["D"].to_numpy(float),
                                         runs["final_eval_loss"].to_numpy(float), budget=budget)
        if not minimum.edge:
            break
        sizes = design.extension_sizes(runs[column].to_numpy(float), edge=minimum.edge)
    return minimum, cfg


def throughput(runs: pd.DataFrame) -> list[tuple[float, float, float]]:
    """(N_total, median tokens/s, median FLOP/s) per size over finished runs."""
    out = []
    runs = runs[runs["wall_s"].astype(float) > 0]
    for n, g in runs.groupby("N_total"):
        wall = g["wall_s"].astype(float)
        out.append((float(n), statistics.median(g["D"].astype(float) / wall),
                    statistics.median(g["C_exact"].astype(float) / wall)))
    return out


def run_pilot(config: Config, *, datasets: dict[str, DataConfig], dirs: ConfigDirs) -> int:
    """action=pilot (see the module docstring); pilot.runs_csv fits a table of runs instead."""
    p = config.pilot
    if p.runs_csv:
        return fit_table(config)
    sweep = config.sweep
    if sweep.kind != "isoflop" or not sweep.budgets:
        raise UsageError(f"action=pilot measures the rules of an IsoFLOP sweep, and sweep={sweep.name} is "
                         f"kind={sweep.kind}: give an isoflop sweep (budgets) or pilot.runs_csv=PATH to fit a table.")
    if not dirs.user:
        raise UsageError("action=pilot writes hparams/pilot_<name>.yaml into your config folder: give --config-dir "
                         "DIR (a folder of your configs; it may be empty).")
    if len(datasets) != 1:
        raise UsageError(f"action=pilot measures one dataset, and sweep.datasets has {len(datasets)}: pilot each "
                         f"with data=NAME.")
    name = f"pilot_{p.name or sweep.name}"
    data = next(iter(datasets.values()))
    budgets = p.search_budgets(sweep.budgets)
    guess = replace(config, sweep=replace(sweep, centre_tokens_per_param=p.centre_guess),
                    hparams=replace(config.hparams, centre_tokens_per_param=0.0))
    vocab = check_vocabulary(plan_trials(guess, datasets=datasets), vocab_size=data.vocab_size,
                             sizes_per_budget=sweep.sizes_per_budget)
    if vocab.verdict == design.Verdict.REFUSE:
        raise UsageError(f"action=pilot refuses this design: {vocab.sentence()}.")
    if vocab.verdict == design.Verdict.WARN:
        print(f"warning: {vocab.sentence()}.", flush=True)

    search_cfg, points, _, rows, pruned = _search(config, datasets=datasets, name=name, budgets=budgets)
    try:
        law, optima = fit_pooled_law(rows["N"], rows["D"], rows["lr"], rows["batch"], rows["loss"],
                                     n_resamples=p.bootstrap, seed=p.seed)
    except FitError as err:
        raise RunFailure(f"the pilot's hparams law could not be fitted: {err}") from None
    seq_len = points[0].config["model"]["seq_len"]
    most_steps = design.most_steps(min_steps=config.hparams.min_steps, n=p.batch_choices)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    measured_rules = design.pilot_rules(law, optima, base=config.hparams, centre=0.0, name=name,
                                        lr_range=(p.lr_min, p.lr_max), seq_len=seq_len, note="", most_steps=most_steps)
    minimum, profile_cfg = _profile(config, datasets=datasets, name=f"{name}_profile", budget=budgets[0],
                                    rules=measured_rules)
    extra = max(config.adaptive.max_sizes - sweep.sizes_per_budget, 0) if config.adaptive.enabled else 0
    held = bounded(config, replace(measured_rules, centre_tokens_per_param=minimum.centre), datasets=datasets,
                   extra=extra)
    note = (f"lr, batch_tokens and centre_tokens_per_param measured by action=pilot of sweep {sweep.name} "
            f"({stamp}; {len(optima)} cells, {len(rows)} finished runs, profile at C={minimum.budget:.3g})"
            + (f"; B* lay below the smallest batch tried in most cells, so the batch keeps the most steps tried "
               f"(D / {most_steps:.0f})" if design.batch_at_small_edge(optima) else "")
            + "".join(f"; {clause}" for clause in held.notes))
    rules = replace(held.rules, pilot=note)
    final = plan_trials(replace(config, hparams=rules), datasets=datasets)
    vocab_final = check_vocabulary(final, vocab_size=data.vocab_size, sizes_per_budget=sweep.sizes_per_budget)
    measured = throughput(pd.concat([_finished(search_cfg), _finished(profile_cfg)], ignore_index=True))
    invalid = sum(t.invalid is not None for t in final)

    out_dir = reports_dir(config, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    from orchestrator.report.hparams_law import write_section  # noqa: PLC0415

    section = write_section(law, optima, out_dir=out_dir, title=f"hparams law of {name}")
    summary = {"name": name, "sweep": sweep.name, "generated": stamp, "law": law_json(law),
               "cells": [asdict(c) for c in optima], "pruned": pruned, "profile": asdict(minimum),
               "vocabulary": asdict(vocab_final) | {"verdict": vocab_final.verdict}, "throughput": [
                   {"N_total": n, "tokens_per_s": t, "flops_per_s": f} for n, t, f in measured],
               "planned_invalid": invalid, "bounds": list(held.notes)}
    (out_dir / "pilot.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    target = dirs.user[0] / "hparams" / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    comments = [f"Written by action=pilot of sweep {sweep.name} ({stamp}): {note}.",
                f"lr* = {law.k_lr:.4g} N^{law.alpha:.3f} D^{law.beta:.3f} (N = N_total, D tokens), "
                f"B* = {law.k_B:.4g} D^{law.gamma:.3f} tokens; 95% intervals in {out_dir / 'pilot.json'}.",
                f"Centre: the IsoFLOP minimum at C={minimum.budget:.3g} is N={minimum.N_opt:.4g}, "
                f"{minimum.tokens_per_param:.1f} tokens per parameter.",
                f"Use: --config-dir {dirs.user[0]} sweep={sweep.name} hparams={name}"]
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(design.rules_yaml(rules, comments=comments))
    os.replace(tmp, target)  # whole or not at all
    print(format_summary(law, optima, minimum=minimum, vocab=vocab_final, measured=measured, invalid=invalid,
                         target=target, name=name, sweep=sweep.name, pruned=pruned,
                         section=section, config_dir=dirs.user[0], bounds=held.notes), flush=True)
    return 0


def law_json(law: HParamsLaw) -> dict:
    data = asdict(law)
    data.pop("laws")
    return data


def format_summary(law: HParamsLaw, optima, *, minimum: design.ProfileMinimum, vocab: design.VocabularyCheck,
                   measured, invalid: int, target: Path, name: str, sweep: str, pruned: int, section,
                   config_dir: Path, bounds: tuple[str, ...] = ()) -> str:
    lines = [f"pilot {name}: {len(optima)} cells ({pruned} runs pruned)"]
    lines += [f"  cell N={c.N:.4g} D={c.D:.4g}: lr*={c.lr_opt:.3g} B*={c.batch_opt:.4g} tokens ({c.how}"
              + (f": {c.edge}" if c.edge else "") + ")" for c in optima]
    lines.append("  " + law_sentence(law, batch_unit="tokens"))
    if law.note:
        lines.append(f"  note: {law.note}")
    lines.append(f"  centre: the minimum at C={minimum.budget:.3g} is N={minimum.N_opt:.4g}, D={minimum.D_opt:.4g} "
                 f"({minimum.tokens_per_param:.1f} tokens per parameter) -> centre_tokens_per_param "
                 f"{minimum.centre:.4g}" + (f" (still at the {minimum.edge} edge after the extensions)" if minimum.edge
                                            else ""))
    lines.append(f"  vocabulary: {vocab.sentence()} ({vocab.verdict})")
    if measured:
        rates = [f for _, _, f in measured]
        lines.append(f"  throughput: {min(rates):.3g} to {max(rates):.3g} FLOP/s per trial over {len(measured)} sizes "
                     f"(median {statistics.median(rates):.3g}: cluster.assumed_flops_per_s)")
    lines += [f"  held valid: {clause}" for clause in bounds]
    if invalid:
        lines.append(f"  warning: {invalid} trials of sweep {sweep} under these rules are not valid points")
    lines.append(f"  wrote {target} and {', '.join(str(f) for f in section)}")
    lines.append(f"  use it: --config-dir {config_dir} sweep={sweep} hparams={name}")
    return "\n".join(lines)


def law_sentence(law: HParamsLaw, *, batch_unit: str) -> str:
    def ci(i) -> str:
        return "" if math.isnan(i.lo) else f" [{i.lo:.3f}, {i.hi:.3f}]"

    size = f" N^{law.alpha:.3f}{ci(law.alpha_ci)}" if law.alpha_free else ""
    batch = f"B*(D) = {law.k_B:.4g} D^{law.gamma:.3f}{ci(law.gamma_ci)} {batch_unit}"
    if "(linear)" in law.resampling:
        batch = ("B*(D) not fitted: the loss kept falling past the batches tried (see the cells), so lr* is read at "
                 f"the batch kept (d ln lr* / d ln B = {law.lr_batch_exponent:.2f})")
    elif "(none)" in law.resampling:
        batch = f"B*(D) = {law.k_B:.4g} D^{law.gamma:.3f} {batch_unit}: the batches the cells ran at (not searched)"
    return (f"lr*(N, D) = {law.k_lr:.4g}{size} D^{law.beta:.3f}{ci(law.beta_ci)}; {batch} "
            f"(95% intervals, {law.n_valid} of {law.n_resamples} resamples, {law.resampling})")


def fit_table(config: Config) -> int:
    """pilot.runs_csv: the law of a table of runs, its report section, and a prediction at pilot.predict."""
    p = config.pilot
    path = Path(p.runs_csv)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"pilot.runs_csv={p.runs_csv} cannot be read as a CSV ({err}).") from None
    missing = [p.column(k) for k in ("N", "D", "lr", "batch", "loss") if p.column(k) not in table.columns]
    if missing:
        raise UsageError(f"pilot.runs_csv={p.runs_csv} has no column {', '.join(missing)}: name yours with "
                         f"pilot.columns (its columns: {', '.join(table.columns)}).")
    cols = {k: pd.to_numeric(table[p.column(k)], errors="coerce").to_numpy(float) for k in ("N", "D", "lr", "batch",
                                                                                           "loss")}
    try:
        law, optima = fit_hparams_law(cols["N"], cols["D"], cols["lr"], cols["batch"], cols["loss"],
                                      n_resamples=p.bootstrap, seed=p.seed)
    except FitError as err:
        raise RunFailure(f"the hparams law could not be fitted: {err}") from None
    name = f"pilot_{p.name or path.stem}"
    out_dir = reports_dir(config, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    from orchestrator.report.hparams_law import write_section  # noqa: PLC0415

    files = write_section(law, optima, out_dir=out_dir, title=f"hparams law of {path.name}",
                          predict=tuple(p.predict) if p.predict else None)
    data = {"name": name, "runs_csv": str(path), "law": law_json(law), "cells": [asdict(c) for c in optima]}
    if p.predict:
        data["prediction"] = asdict(law.predict(N=p.predict[0], D=p.predict[1]))
    (out_dir / "hparams_law.json").write_text(json.dumps(data, indent=2, allow_nan=True))
    print(f"hparams law of {path} ({len(optima)} cells, {int(np.isfinite(cols['loss']).sum())} runs):")
    print("  " + law_sentence(law, batch_unit="(the table's batch unit)"))
    if p.predict:
        pr = law.predict(N=p.predict[0], D=p.predict[1])
        print(f"  at N={pr.N:.4g}, D={pr.D:.4g}: lr* = {pr.lr:.4g} [{pr.lr_ci.lo:.4g}, {pr.lr_ci.hi:.4g}], "
              f"B* = {pr.batch:.4g} [{pr.batch_ci.lo:.4g}, {pr.batch_ci.hi:.4g}]")
    print(f"  wrote {', '.join(str(f) for f in [*files, out_dir / 'hparams_law.json'])}")
    return 0
