"""Plug-in trainers and entry points: the MLP example through the contract, and the smoke modes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from trainers.api import FINISHED, TrialResult, load_trainer
from trainers.examples import synthetic_sweep

REPO = Path(__file__).resolve().parents[2]


def test_mlp_plugin_runs_through_the_contract(recorder):
    train = load_trainer("trainers.examples.mlp:train")
    small = train({"model": {"d_model": 8, "n_layer": 1}, "trainer": {"lr": 1e-2, "batch_tokens": 64},
                   "tokens": 6400, "seed": 0}, recorder)
    assert set(small) == set(TrialResult.__dataclass_fields__)
    assert small["status"] == FINISHED and small["tokens"] == 6400
    assert {"step", "tokens", "flops", "train_loss"} <= recorder.reports[0].keys()
    evals = [r["eval_loss"] for r in recorder.reports if "eval_loss" in r]
    assert evals[-1] < evals[0]
    # Same width, four times the examples: a lower held-out loss (the plug-in scales like a model should).
    more = train({"model": {"d_model": 8, "n_layer": 1}, "trainer": {"lr": 1e-2, "batch_tokens": 64},
                  "tokens": 4 * 6400, "seed": 0}, lambda m: None)
    assert more["final_eval_loss"] < small["final_eval_loss"]


def test_throughput_benchmark_smoke():
    spec = importlib.util.spec_from_file_location("trainer_throughput", REPO / "benchmarks" / "trainer_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--smoke", "--threads", "1"])
    assert out["peaks"]["fp32"] > 0 and len(out["rows"]) >= 3
    assert all(row["tokens_per_s"] > 0 and row["mfu"] > 0 for row in out["rows"])


def test_synthetic_sweep_smoke(tmp_path):
    rows = synthetic_sweep.main(["--smoke", "--threads", "1", "--json", str(tmp_path / "rows.json")])
    assert len(rows) == 2 and (tmp_path / "rows.json").is_file()
    assert all(row["eval_loss"] > row["entropy_floor"] for row in rows)
