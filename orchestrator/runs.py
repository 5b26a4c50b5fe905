"""Read a sweep's runs back from the store into the tidy tables the fitting stage takes.

`runs_table`: one row per trial (the run that speaks for it: `tracking.best_per_trial`), with the
canonical columns trial_id, sweep, status, seed, budget, dataset, N_total, N_nonembed, D, C_exact,
C_6ND, final_eval_loss, final_train_loss, eval_loss_se, wall_s, entropy_floor, lr, batch_tokens, steps,
warmup_steps (as planned, orchestrator/hparams.py), schedule, run_id,
attempt, device, reason (the failure reason of a run that did not finish), trunk (the WSD trunk a fork left, if
any: orchestrator/forks.py).
`curves_table`: the per-step metrics of the given runs (trial_id, step, tokens, flops, train_loss,
eval_loss, lr) for the envelope of training curves.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.tracking import Tracker, TrialRecord

NUMERIC_PARAMS = {"budget": "budget", "N_total": "N_total", "N_nonembed": "N_nonembed", "D": "D",
                  "C_exact": "C_exact", "C_6ND": "C_6ND", "seed": "seed", "trainer.lr": "lr",
                  "trainer.batch_tokens": "batch_tokens", "steps": "steps", "warmup_steps": "warmup_steps",
                  "trainer.schedule": "schedule"}
METRICS = ("final_eval_loss", "final_train_loss", "eval_loss_se", "wall_s", "entropy_floor")
NUMERIC = ("seed", "budget", "N_total", "N_nonembed", "D", "C_exact", "C_6ND", "lr", "batch_tokens", "steps",
           "warmup_steps")
COLUMNS = ["trial_id", "sweep", "status", "seed", "budget", "dataset", "N_total", "N_nonembed", "D", "C_exact",
           "C_6ND", *METRICS, "lr", "batch_tokens", "steps", "warmup_steps", "schedule", "run_id", "attempt", "device",
           "reason", "trunk"]
CURVE_KEYS = ("tokens", "flops", "train_loss", "eval_loss", "lr")


def _row(record: TrialRecord) -> dict:
    params, tags = record.params, record.tags
    row = {"trial_id": record.trial_id, "sweep": tags.get("sweep"), "status": record.status,
           "dataset": params.get("dataset"), "run_id": record.run_id, "attempt": int(tags.get("attempt", 1)),
           "device": tags.get("device"), "reason": tags.get("failure_reason"), "trunk": tags.get("trunk_id")}
    row.update({column: params.get(param) for param, column in NUMERIC_PARAMS.items()})
    row.update({metric: record.metrics.get(metric) for metric in METRICS})
    return row


def runs_table(tracker: Tracker) -> pd.DataFrame:
    """One row per trial id of the tracker's experiment (see module docstring), in trial-id order."""
    chosen = tracker.results()
    frame = pd.DataFrame([_row(chosen[t]) for t in sorted(chosen)], columns=COLUMNS)
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column].replace({"None": None}), errors="coerce")
    return frame.reset_index(drop=True)


def curves_table(tracker: Tracker, run_ids: list[str]) -> pd.DataFrame:
    """Per-step metrics of `run_ids`, one row per (run, step)."""
    trial_of = {r.run_id: r.trial_id for r in tracker.trial_runs()} if run_ids else {}
    frames = []
    for run_id in run_ids:
        columns = tracker.metric_history(run_id, CURVE_KEYS)
        if columns:
            frame = pd.DataFrame(columns).rename_axis("step").reset_index()
            frame.insert(0, "trial_id", trial_of.get(run_id))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id", "step", *CURVE_KEYS])
