"""Read a sweep's runs back from MLflow into the tidy tables the fitting stage takes.

`runs_table`: one row per trial (its finished run when it has one, else its newest run), with the
canonical columns trial_id, sweep, status, seed, budget, dataset, N_total, N_nonembed, D, C_exact,
C_6ND, final_eval_loss, final_train_loss, eval_loss_se, wall_s, entropy_floor, lr, batch_tokens, steps,
warmup_steps (as planned, orchestrator/hparams.py), schedule, run_id,
attempt, device, reason (the failure reason of a run that did not finish).
`curves_table`: the per-step metrics of the given runs (trial_id, step, tokens, flops, train_loss,
eval_loss, lr) for the envelope of training curves.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.tracking import Tracker

NUMERIC_PARAMS = {"budget": "budget", "N_total": "N_total", "N_nonembed": "N_nonembed", "D": "D",
                  "C_exact": "C_exact", "C_6ND": "C_6ND", "seed": "seed", "trainer.lr": "lr",
                  "trainer.batch_tokens": "batch_tokens", "steps": "steps", "warmup_steps": "warmup_steps",
                  "trainer.schedule": "schedule"}
METRICS = ("final_eval_loss", "final_train_loss", "eval_loss_se", "wall_s", "entropy_floor")
COLUMNS = ["trial_id", "sweep", "status", "seed", "budget", "dataset", "N_total", "N_nonembed", "D", "C_exact",
           "C_6ND", *METRICS, "lr", "batch_tokens", "steps", "warmup_steps", "schedule", "run_id", "attempt", "device",
           "reason"]


def runs_table(tracker: Tracker) -> pd.DataFrame:
    """One row per trial id of the tracker's experiment (see module docstring)."""
    if tracker.experiment_id is None:
        return pd.DataFrame(columns=COLUMNS)
    rows, token = [], None
    while True:
        page = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.kind = 'trial'",
                                          max_results=5000, order_by=["attributes.start_time DESC"], page_token=token)
        for run in page:
            params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
            row = {"trial_id": tags.get("trial_id"), "sweep": tags.get("sweep"),
                   "status": tags.get("status") if run.info.status != "RUNNING" else "running",
                   "dataset": params.get("dataset"), "run_id": run.info.run_id,
                   "attempt": int(tags.get("attempt", 1)), "device": tags.get("device"),
                   "reason": tags.get("failure_reason")}
            for param, column in NUMERIC_PARAMS.items():
                row[column] = params.get(param)
            for metric in METRICS:
                row[metric] = metrics.get(metric)
            rows.append(row)
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("seed", "budget", "N_total", "N_nonembed", "D", "C_exact", "C_6ND", "lr", "batch_tokens", "steps",
                   "warmup_steps"):
        frame[column] = pd.to_numeric(frame[column].replace({"None": None}), errors="coerce")
    # A trial's row is its finished run if any, else its newest attempt (rows are newest first).
    frame["_rank"] = (frame["status"] != "finished").astype(int)
    frame = frame.sort_values(["trial_id", "_rank"], kind="stable").drop_duplicates("trial_id")
    return frame.drop(columns="_rank").reset_index(drop=True)


def curves_table(tracker: Tracker, run_ids: list[str]) -> pd.DataFrame:
    """Per-step metrics of `run_ids`, one row per (run, step)."""
    frames = []
    for run_id in run_ids:
        run = tracker.client.get_run(run_id)
        trial = run.data.tags.get("trial_id")
        columns: dict[str, dict[int, float]] = {}
        for key in ("tokens", "flops", "train_loss", "eval_loss", "lr"):
            for metric in tracker.client.get_metric_history(run_id, key):
                columns.setdefault(key, {})[metric.step] = metric.value
        if columns:
            frame = pd.DataFrame(columns).rename_axis("step").reset_index()
            frame.insert(0, "trial_id", trial)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["trial_id", "step", "tokens", "flops", "train_loss", "eval_loss", "lr"])
