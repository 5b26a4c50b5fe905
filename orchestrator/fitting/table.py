"""The tidy table every method fits: one row per kept run, with explicit conventions and recorded exclusions.

Two input schemas map into it:
- the sweep schema (from MLflow): `trial_id, sweep, status, seed, budget, N_total, N_nonembed, D, C_exact,
  C_6ND, final_eval_loss, final_train_loss` (plus eval_loss_se, entropy_floor, steps, ... when recorded);
- a CSV of runs, through `fit.columns` (`ColumnMap`): `n_params, tokens, flops, loss` need no mapping.

The tidy frame has columns `trial_id, status, seed, point, budget, N, D, C, loss` (plus the raw `N_total,
N_nonembed, C_exact, C_6ND` and what the sweep recorded), where N, C and loss follow `fit.n_convention`,
`fit.c_convention` and `fit.metric`:
- C is C_exact under `exact`, and 6 N D with the fitted N under `6nd` (so `6nd` with `fit.n_convention=nonembed`
  is Kaplan et al.'s C = 6 N_nonembed D);
- D is derived as C / (6 N_total) when absent (Hoffmann et al. 2022, C = 6 N D), and N as C / (6 D) when a CSV
  has tokens and FLOPs but no parameter count;
- `point` numbers the design points: runs of the same (N, D) (seeds of one point) share it, so the
  bootstrap resamples a point's seeds together;
- `budget` is the compute of the run's IsoFLOP profile under the convention (see `assign_budgets`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import find_peaks

from trainers.api import Status
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.options import ColumnMap, FitConfig

SWEEP_COLUMNS = ("trial_id", "sweep", "status", "seed", "budget", "N_total", "N_nonembed", "D", "C_exact",
                 "C_6ND", "final_eval_loss", "final_train_loss")
# ColumnMap field -> sweep-schema column it fills.
_CSV_TO_SWEEP = {"n_params": "N_total", "n_nonembed": "N_nonembed", "tokens": "D", "flops": "C_exact",
                 "flops_6nd": "C_6ND", "loss": "final_eval_loss", "status": "status", "seed": "seed",
                 "budget": "budget", "trial_id": "trial_id", "unique_tokens": "unique_tokens"}
_METRIC_ALIASES = {"loss": "final_eval_loss", "eval_loss": "final_eval_loss", "train_loss": "final_train_loss"}


@dataclass(frozen=True)
class Exclusion:
    """One run left out of the fit, and why (e.g. "status=diverged", "drop_highest: loss rank 2 of 245")."""

    trial_id: str
    reason: str


@dataclass(frozen=True)
class RunTable:
    """Kept runs (tidy frame), what was excluded and why, and the conventions that produced N, C and loss.

    `runs.budget` is the nominal IsoFLOP budget of each run (NaN: the run lies on no profile);
    `budget_grouping` says how budgets were found ("column", "exact" or "density", see `assign_budgets`).
    `warnings` are facts about the input the fit should report (duplicated rows, profiles re-centred).
    """

    runs: pd.DataFrame
    excluded: tuple[Exclusion, ...]
    conventions: dict[str, str]
    budget_grouping: str
    n_input: int
    warnings: tuple[str, ...] = ()

    @property
    def trial_ids(self) -> list[str]:
        return [str(t) for t in self.runs["trial_id"]]


def read_runs_csv(path: str | Path, *, columns: ColumnMap) -> pd.DataFrame:
    """Read a CSV of runs and map it onto the sweep schema (`SWEEP_COLUMNS`), keeping its other columns."""
    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"fit.runs_csv={str(path)!r} is not a readable file.")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FitInputError(f"fit.runs_csv={str(path)!r} could not be parsed as CSV ({err}).") from err
    return csv_to_sweep_schema(raw, columns=columns, where=str(path))


def csv_to_sweep_schema(raw: pd.DataFrame, *, columns: ColumnMap, where: str = "the runs table") -> pd.DataFrame:
    """Rename mapped CSV columns to the sweep schema; a column named explicitly but missing is an error."""
    defaults = ColumnMap()
    out = raw.copy()
    for f in fields(ColumnMap):
        name = getattr(columns, f.name)
        target = _CSV_TO_SWEEP[f.name]
        if name is None:
            continue
        if name not in raw.columns:
            if name != getattr(defaults, f.name):  # the user named it: it must exist
                raise FitInputError(f"fit.columns.{f.name}={name!r} is not a column of {where}; "
                                    f"its columns are {', '.join(map(str, raw.columns))}.")
            continue
        if target in out.columns and name != target:
            out = out.drop(columns=target)
        out[target] = raw[name]
    if "N_total" not in out.columns and "N_nonembed" not in out.columns:
        c_src = "C_exact" if "C_exact" in out.columns else "C_6ND" if "C_6ND" in out.columns else None
        if c_src is None or "D" not in out.columns:
            raise FitInputError(f"{where} has no parameter-count column; set fit.columns.n_params to the column "
                                f"holding N (columns are {', '.join(map(str, raw.columns))}).")
        # N is not stored (e.g. digitised Llama 3 IsoFLOPs): N = C / (6 D), the inverse of the usual D = C / (6 N).
        out["N_total"] = pd.to_numeric(out[c_src], errors="coerce") / (6.0 * pd.to_numeric(out["D"], errors="coerce"))
    if "final_eval_loss" not in out.columns:
        raise FitInputError(f"{where} has no loss column; set fit.columns.loss to the column holding the "
                            f"final loss (columns are {', '.join(map(str, raw.columns))}).")
    if "D" not in out.columns and "C_exact" not in out.columns and "C_6ND" not in out.columns:
        raise FitInputError(f"{where} has neither a tokens nor a FLOPs column; set fit.columns.tokens or "
                            f"fit.columns.flops (columns are {', '.join(map(str, raw.columns))}).")
    return out


def file_sha256(path: str | Path) -> str:
    """Hash of the input file, recorded in the fit's provenance."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tidy_runs(frame: pd.DataFrame, *, options: FitConfig) -> RunTable:
    """Apply the conventions and exclusion rules of `options` to a runs frame (sweep or CSV schema).

    Exclusions, in order, each recorded with its reason: status other than "finished"; a row that repeats an
    earlier row exactly (a copy would count twice); a non-finite loss (a diverged run); fewer optimizer or warmup
    steps than `fit.min_steps` / `fit.min_warmup_steps` (not a valid scaling point); `fit.loss_ceiling`;
    `fit.drop_highest` (the k highest losses among the rest). Kept runs must have finite, positive N, D, C and
    loss; text where a number belongs is an error, not a diverged run.
    """
    if "N_total" not in frame.columns and "N_nonembed" not in frame.columns:
        frame = csv_to_sweep_schema(frame, columns=options.columns)
    if len(frame) == 0:
        raise FitInputError("the runs table is empty; a fit needs finished runs.")
    df = frame.reset_index(drop=True).copy()
    duplicated = df.duplicated(keep="first").to_numpy()
    df["trial_id"] = (df["trial_id"].astype(str) if "trial_id" in df.columns
                      else pd.Series([f"row{i}" for i in range(len(df))]))
    df["status"] = df["status"].fillna("unknown").astype(str).str.lower() if "status" in df.columns else "finished"

    for col in ("N_total", "N_nonembed", "D", "C_exact", "C_6ND", "budget"):
        if col in df.columns:  # very large FLOP counts arrive as Python ints (object dtype)
            df[col] = _numeric(df[col], column=col, rows=df["trial_id"]).astype(float)
    metric_col = _METRIC_ALIASES.get(options.metric, options.metric)
    if metric_col not in df.columns:
        raise FitInputError(f"fit.metric={options.metric!r} names no column of the runs table; use loss, "
                            f"eval_loss, train_loss or one of {', '.join(map(str, frame.columns))}.")
    df["loss"] = _numeric(df[metric_col], column=metric_col, rows=df["trial_id"])

    n_col = "N_total" if options.n_convention == "total" else "N_nonembed"
    if n_col not in df.columns:
        key = "n_params" if n_col == "N_total" else "n_nonembed"
        raise FitInputError(f"fit.n_convention={options.n_convention!r} needs column {n_col} "
                            f"(map it with fit.columns.{key}).")
    df["N"] = df[n_col]
    n_for_d = df["N_total"] if "N_total" in df.columns else df["N"]
    if "D" not in df.columns:
        c_src = df["C_exact"] if "C_exact" in df.columns else df["C_6ND"]
        df["D"] = c_src / (6.0 * n_for_d)
    if "C_6ND" not in df.columns:
        df["C_6ND"] = 6.0 * n_for_d * df["D"]
    if options.c_convention == "exact":
        if "C_exact" not in df.columns:
            raise FitInputError("fit.c_convention='exact' needs a FLOPs column (fit.columns.flops); "
                                "this table has none, so use fit.c_convention=6nd.")
        df["C"] = df["C_exact"]
    else:  # C = 6 N D with the N being fitted (Kaplan et al. 2020 use N_nonembed, Hoffmann et al. 2022 N_total)
        df["C"] = 6.0 * df["N"] * df["D"]

    excluded: list[Exclusion] = []
    keep = np.ones(len(df), dtype=bool)

    def drop(mask: np.ndarray, reasons: list[str] | str) -> None:
        nonlocal keep
        idx = np.flatnonzero(mask & keep)
        for j, i in enumerate(idx):
            reason = reasons if isinstance(reasons, str) else reasons[j]
            excluded.append(Exclusion(df["trial_id"].iat[i], reason))
        keep = keep & ~mask

    status = df["status"].to_numpy()
    # A pruned run says why (the search's pruner, or sweep.early_stop's sentence): the report lists it.
    why = df["reason"].to_numpy(object) if "reason" in df.columns else np.full(len(df), None, dtype=object)
    for i in np.flatnonzero(status != Status.FINISHED):
        note = f": {why[i]}" if status[i] == Status.PRUNED and isinstance(why[i], str) and why[i] else ""
        drop(np.arange(len(df)) == i, f"status={status[i]}{note}")
    warnings: list[str] = []
    if (duplicated & keep).any():
        n_dup = int((duplicated & keep).sum())
        warnings.append(f"{n_dup} row(s) repeat an earlier row exactly and were left out (a copied row would "
                        "count twice in the fit)")
        drop(duplicated, "duplicate: repeats an earlier row exactly")
    loss = df["loss"].to_numpy(dtype=float)
    drop(~np.isfinite(loss), "diverged: loss is not finite")
    # Not a valid scaling point (orchestrator/hparams.py): too few optimizer or warmup steps to be a trained model.
    for column, key in (("steps", "min_steps"), ("warmup_steps", "min_warmup_steps")):
        floor = getattr(options, key)
        if floor and column in df.columns:
            count = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
            short = np.isfinite(count) & (count < floor)
            drop(short, [f"invalid point: {count[i]:.4g} {column.replace('_', ' ')} < fit.{key}={floor}"
                         for i in np.flatnonzero(short & keep)])
    if options.loss_ceiling is not None:
        drop(np.isfinite(loss) & (loss > options.loss_ceiling), f"loss above fit.loss_ceiling={options.loss_ceiling}")
    if options.drop_highest > 0:
        kept_idx = np.flatnonzero(keep)
        order = kept_idx[np.argsort(-loss[kept_idx], kind="stable")][: options.drop_highest]
        mask = np.zeros(len(df), dtype=bool)
        mask[order] = True
        drop(mask, [f"fit.drop_highest={options.drop_highest}: loss {loss[i]:.4g} is among the highest"
                    for i in np.sort(order)])
    if not keep.any():
        counts = pd.Series([e.reason.split(":")[0] for e in excluded]).value_counts()
        raise FitInputError(f"all {len(df)} runs were excluded ({', '.join(f'{k}: {v}' for k, v in counts.items())}); "
                            "nothing is left to fit.")

    runs = df.loc[keep].reset_index(drop=True)
    for col in ("N", "D", "C", "loss"):
        vals = runs[col].to_numpy(dtype=float)
        bad = ~(np.isfinite(vals) & (vals > 0))
        if bad.any():
            ids = ", ".join(runs["trial_id"].iloc[np.flatnonzero(bad)[:5]])
            raise FitInputError(f"column {col} has {int(bad.sum())} NaN or non-positive value(s) among kept runs "
                                f"(trial {ids}); N, D, C and loss must be finite and positive.")
    _check_fittable(runs)

    budget_col = runs["budget"].to_numpy(dtype=float) if "budget" in runs else None
    C = runs["C"].to_numpy(dtype=float)
    labels, grouping = assign_budgets(C, budget_column=budget_col, tol_dex=options.budget_tol_dex)
    runs["budget"], recentred = profile_compute(labels, C)
    if recentred:
        warnings.append(f"{recentred} IsoFLOP profile(s) are not iso-FLOP under fit.c_convention="
                        f"{options.c_convention} (their runs' C differ by more than 1%): each profile's budget is the "
                        "geometric mean of its runs' C, and each run's departure from it is corrected for")
    runs["point"] = runs.groupby([np.round(np.log(runs["N"]), 6), np.round(np.log(runs["D"]), 6)],
                                 sort=False).ngroup()
    keep_cols = [c for c in ("trial_id", "sweep", "status", "seed", "point", "budget", "N", "D", "C", "loss",
                             "N_total", "N_nonembed", "C_exact", "C_6ND", "eval_loss_se", "entropy_floor", "dataset",
                             "unique_tokens",
                             "lr", "batch_tokens", "warmup_tokens", "steps", "warmup_steps", "schedule", "trunk")
                 if c in runs.columns]
    runs = runs[keep_cols]
    conventions = {"n_convention": options.n_convention, "c_convention": options.c_convention,
                   "metric": options.metric, "metric_column": metric_col, "N_column": n_col}
    return RunTable(runs=runs, excluded=tuple(excluded), conventions=conventions, budget_grouping=grouping,
                    n_input=len(df), warnings=tuple(warnings))


MAX_LOSS = 1e6
"""Largest loss a kept run may have: beyond any loss in nats or bits (a perplexity is below the vocabulary size).
Sizes and FLOPs have no such limit (a row near the float limit is fitted, and its figures say what cannot be
drawn: tests/report/test_degenerate.py)."""


def _check_fittable(runs: pd.DataFrame) -> None:
    """Kept runs a scaling law can be fitted to: losses in range, and losses that vary."""
    loss = runs["loss"].to_numpy(dtype=float)
    huge = loss > MAX_LOSS
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise FitInputError(f"column loss has {int(huge.sum())} value(s) above {MAX_LOSS:.0e} (the first in run "
                            f"{runs['trial_id'].iat[i]}, the largest {loss.max():.3g}): no real run has such a loss; "
                            f"fix those rows or leave them out with fit.loss_ceiling.")
    if len(loss) > 1 and np.ptp(loss) <= 1e-12 * abs(loss[0]):
        raise FitInputError(f"all {len(loss)} kept runs have the same loss ({loss[0]:.6g}): a scaling law needs "
                            "losses that change with N and D; check that the loss column (fit.columns.loss, "
                            "fit.metric) holds each run's final loss.")


def _numeric(raw: pd.Series, *, column: str, rows: pd.Series) -> pd.Series:
    """Numbers of a column; text that is not a number (nor empty, nan or inf) is one sentence naming it."""
    values = pd.to_numeric(raw, errors="coerce")
    text = raw.astype(str).str.strip().str.lower()
    blank = raw.isna() | text.isin(("", "nan", "none", "null", "inf", "+inf", "-inf", "infinity", "-infinity"))
    bad = values.isna() & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FitInputError(f"column {column} holds text where a number belongs ({raw.iloc[i]!r} in run "
                            f"{rows.iloc[i]}, {int(bad.sum())} value(s) in all); give numbers, or leave the cell "
                            "empty for a run without a value.")
    return values


def profile_compute(labels: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, int]:
    """Each run's profile compute: its budget label when every run of the profile is within 1% of it, else
    the geometric mean of the profile's C (an exact-FLOP design fitted under 6ND, say). Returns the values and
    how many profiles were re-centred."""
    out = labels.copy()
    recentred = 0
    for label in np.unique(labels[np.isfinite(labels)]):
        members = labels == label
        logs = np.log(C[members])
        if np.max(np.abs(logs - np.log(label))) > np.log(1.01):
            out[members] = float(np.exp(logs.mean()))
            recentred += 1
    return out, recentred


def assign_budgets(C: np.ndarray, *, budget_column: np.ndarray | None = None,
                   tol_dex: float = 0.05) -> tuple[np.ndarray, str]:
    """Nominal IsoFLOP budget of each run (NaN: on no profile), and how it was found.

    1. "column": the table's budget column, where finite.
    2. "exact": runs share budgets up to 1% (a real sweep): groups of C within 1% of each other, if the
       groups average >= 3 runs and each spans <= 0.01 decade; the budget is the group's geometric mean.
    3. "density": digitised data (e.g. the Epoch extraction of Chinchilla Fig. 4, where C is read off a plot
       and runs off any profile sit between the profiles): budgets are the peaks of a Gaussian kernel density
       of log10 C (bandwidth 0.6 tol_dex) whose prominence is >= half their height and that hold >= 3 runs
       within tol_dex; each run within tol_dex of a peak joins the nearest; the budget is the geometric
       median of its runs. On the Epoch data this finds the 9 Chinchilla budgets (6e18 .. 3e21).
    """
    C = np.asarray(C, dtype=float)
    if budget_column is not None and np.isfinite(budget_column).any():
        return np.where(np.isfinite(budget_column) & (budget_column > 0), budget_column, np.nan), "column"
    x = np.log10(C)
    order = np.argsort(x)
    xs = x[order]
    group = np.concatenate([[0], np.cumsum(np.diff(xs) > np.log10(1.01))])
    n_groups = group[-1] + 1
    spans = np.array([np.ptp(xs[group == g]) for g in range(n_groups)])
    if len(C) / n_groups >= 3 and spans.max() <= 0.01:
        out = np.empty_like(C)
        centres = np.array([10 ** xs[group == g].mean() for g in range(n_groups)])
        out[order] = centres[group]
        sizes = np.bincount(group)
        out[order[sizes[group] < 2]] = np.nan  # a lone run is no profile
        return out, "exact"
    h = 0.6 * tol_dex
    grid = np.arange(xs[0] - 5 * h, xs[-1] + 5 * h, h / 20)
    density = _kernel_density(xs, grid, h)
    peaks, props = find_peaks(density, prominence=0.0)
    centres = grid[peaks][props["prominences"] >= 0.5 * density[peaks]]
    counts = (np.abs(x[:, None] - centres[None, :]) <= tol_dex).sum(axis=0)
    centres = centres[counts >= 3]
    out = np.full_like(C, np.nan)
    if len(centres) == 0:
        return out, "density"
    dist = np.abs(x[:, None] - centres[None, :])  # (runs, peaks)
    nearest = dist.argmin(axis=1)
    on = dist[np.arange(len(x)), nearest] <= tol_dex
    for j in range(len(centres)):
        members = on & (nearest == j)
        out[members] = 10 ** np.median(x[members])
    return out, "density"


DENSITY_BLOCK = 4_000_000
"""Most (grid point, run) pairs evaluated at once by _kernel_density."""
DENSITY_REACH = 12.0
"""Kernel terms beyond this many bandwidths (exp(-72) relative) are left out."""


def _kernel_density(xs: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """sum_j exp(-((grid_i - xs_j) / h)^2 / 2) for sorted `xs`, in blocks of grid points, each over the runs within
    DENSITY_REACH bandwidths: memory stays bounded for a million runs (the full grid x runs matrix would not)."""
    density = np.zeros(len(grid))
    per_block = max(1, DENSITY_BLOCK // max(len(xs), 1))
    start = 0
    while start < len(grid):
        lo_x = np.searchsorted(xs, grid[start] - DENSITY_REACH * h)
        stop = min(len(grid), start + per_block)
        hi_x = np.searchsorted(xs, grid[stop - 1] + DENSITY_REACH * h, side="right")
        while stop - start > 1 and (stop - start) * (hi_x - lo_x) > DENSITY_BLOCK:  # a dense stretch: fewer points
            stop = start + max(1, (stop - start) // 2)
            hi_x = np.searchsorted(xs, grid[stop - 1] + DENSITY_REACH * h, side="right")
        window = xs[lo_x:hi_x]
        if len(window):
            density[start:stop] = np.exp(-0.5 * ((grid[start:stop, None] - window[None, :]) / h) ** 2).sum(axis=1)
        start = stop
    return density


def largest_budget(table: RunTable) -> float:
    """The largest swept budget: the largest nominal budget, or the largest C when no run is on a profile."""
    b = table.runs["budget"].to_numpy(dtype=float)
    return float(np.nanmax(b)) if np.isfinite(b).any() else float(table.runs["C"].max())
