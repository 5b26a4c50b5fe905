"""Trainers that misbehave never take the driver down: each fault is a recorded result of its own trial.

In-process: the contract checks, report thinning, the default time limit, and the worker's death witness
(a real child process that calls os._exit or segfaults). Through the CLI on a real local Ray instance with a
real MLflow store: tests/plugins/misbehave.py, one misbehaviour per seed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cluster_options import ClusterConfig
from orchestrator.faults import TIMEOUT_FLOOR_S, death_reason, thin_reports, trial_time_limit
from trainers.api import check_metrics, nonfinite_loss

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{PLUGINS}"}
MISBEHAVE = ["sweep=list_example", "trainer.target=misbehave:train", "cluster.num_cpus=2", "hparams.allow_invalid=true"]
LIMIT_S = 15


def trials_spec(seeds: list[int]) -> str:
    items = ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:1e5,seed:{s}}}" for s in seeds)
    return f"sweep.trials=[{items}]"


# -- in process ------------------------------------------------------------------------------------------

def test_check_metrics_names_what_breaks_the_contract():
    assert check_metrics({"step": 3, "tokens": 10, "train_loss": float("nan"), "eval_loss": None}) is None
    assert check_metrics({"step": 1, "train_loss": "low"}) == "report() got train_loss='low', not a number"
    assert check_metrics([1.0]) == "report() got list, not a dict of metrics"
    assert check_metrics({"step": 1.5}) == "report() got step=1.5, not a whole number"
    assert check_metrics({"ok": True}) == "report() got ok=True, not a number"
    assert check_metrics({3: 1.0}) == "report() got the metric name 3, not a string"


def test_a_nan_final_loss_is_a_divergence():
    assert nonfinite_loss({"status": "finished", "final_eval_loss": 3.0, "final_train_loss": 3.1}) is None
    assert "final_eval_loss=nan" in nonfinite_loss({"final_eval_loss": float("nan")})
    assert "final_train_loss=inf" in nonfinite_loss({"final_eval_loss": None, "final_train_loss": math.inf})


def test_thinning_keeps_every_evaluation_every_other_kind_of_report_and_the_last():
    reports = [{"step": i, "tokens": i, "train_loss": 1.0} for i in range(10_000)]
    reports[5_000] = {**reports[5_000], "eval_loss": 2.0}
    reports[7_000] = {"step": 7_000, "tokens": 7_000, "fork_ready": 7_000.0}
    kept = thin_reports(reports, limit=100)
    assert len(kept) <= 103
    assert reports[5_000] in kept and reports[7_000] in kept and kept[-1] == reports[-1]
    steps = [r["step"] for r in kept]
    assert steps == sorted(steps)
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 101  # evenly spread, not just the head
    assert thin_reports(reports[:50], limit=100) == reports[:50]


def test_default_time_limit_is_generous_and_configurable():
    assert trial_time_limit(3e12, configured=None, rate=3e10) == pytest.approx(10 * 100 + TIMEOUT_FLOOR_S)
    assert trial_time_limit(1.0, configured=None, rate=3e10) == pytest.approx(TIMEOUT_FLOOR_S, rel=1e-6)
    assert trial_time_limit(3e12, configured=5, rate=3e10) == 5
    assert trial_time_limit(3e12, configured=0, rate=3e10) is None
    with pytest.raises(ValueError, match=r"^cluster.trial_timeout_s=-1 is invalid: it must be a number of seconds"):
        ClusterConfig(trial_timeout_s=-1)


WITNESSED = """
import ctypes, os, sys
from orchestrator.faults import death_witness
with death_witness(sys.argv[1], 2):
    {action}
"""


@pytest.mark.parametrize(("action", "words"), [
    ("os._exit(3)", "the trainer's process exited with code 3 (os._exit)"),
    ("ctypes.string_at(0)", "the trainer's process was killed by signal SIGSEGV (segmentation fault), at File "),
])
def test_a_dying_worker_leaves_its_exit_code_or_signal_in_words(tmp_path, action, words):
    run_dir = tmp_path / "checkpoints" / "trial"
    proc = subprocess.run([sys.executable, "-c", WITNESSED.format(action=action), str(run_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    reason = death_reason(str(run_dir), 2)
    assert reason is not None and reason.startswith(words), reason
    assert death_reason(str(run_dir), 2) is None  # read once: the note is gone


def test_a_trial_that_lives_leaves_no_note_and_no_empty_folder(tmp_path):
    run_dir = tmp_path / "checkpoints" / "trial"
    proc = subprocess.run([sys.executable, "-c", WITNESSED.format(action="pass"), str(run_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "checkpoints").exists()
    assert death_reason(str(run_dir), 2) is None


# -- a real sweep on Ray ---------------------------------------------------------------------------------

def trial_runs(tmp_path: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("list_example")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    assert not any(r.info.status == "RUNNING" for r in runs)  # nothing left RUNNING, parent included
    return client, [r for r in runs if r.data.tags.get("kind") == "trial"]


@pytest.mark.slow
def test_misbehaving_trainers_are_recorded_results_and_the_driver_survives(cli, tmp_path):
    result = cli(*MISBEHAVE, trials_spec(list(range(9))), f"cluster.trial_timeout_s={LIMIT_S}", env=ENV,
                 timeout=400)
    assert result.returncode == 1, result.stderr  # trials crashed or timed out: exit 1, as documented
    assert "Traceback" not in result.stderr + result.stdout
    client, runs = trial_runs(tmp_path)
    by_seed: dict[int, list] = {}
    for run in sorted(runs, key=lambda r: int(r.data.tags["attempt"])):
        by_seed.setdefault(int(run.data.params["seed"]), []).append(run)
    status = {s: [r.data.tags["status"] for r in rs] for s, rs in by_seed.items()}
    reason = {s: rs[-1].data.tags.get("failure_reason", "") for s, rs in by_seed.items()}
    contract = "trainer.target=misbehave:train broke the trainer contract (trainers/api.py): "
    assert status[0] == ["finished"]
    assert status[1] == ["crashed"] and reason[1] == contract + "report() got train_loss='low', not a number"
    assert status[7] == ["crashed"] and reason[7] == contract + "report() got train_loss=[3.0], not a number"
    # A deterministic death: retried once, not as a lost worker six times; the cause in words (2 runs at most).
    assert status[2] == ["crashed", "crashed"], status[2]
    assert reason[2].startswith("the trainer's process exited with code 3 (os._exit)"), reason[2]
    assert status[3] == ["crashed", "crashed"], status[3]
    assert "signal SIGSEGV (segmentation fault)" in reason[3], reason[3]
    # A death that leaves no word: its node may be dying, so rescheduled twice, then crashed.
    assert status[8] == ["lost", "lost", "crashed"], status[8]
    assert "died while its node stayed up, without an exit code or signal it could record" in reason[8]
    # A hung trainer: stopped at its limit.
    (hung,) = by_seed[4]
    assert hung.data.tags["status"] == "timed_out" and hung.info.status == "FAILED"
    assert f"ran past its limit of {LIMIT_S} s (cluster.trial_timeout_s)" in reason[4]
    assert LIMIT_S <= (hung.info.end_time - hung.info.start_time) / 1000 < LIMIT_S + 30
    # A noisy trainer: finished, its reports thinned, every evaluation and the last kept.
    (noisy,) = by_seed[5]
    assert noisy.data.tags["status"] == "finished"
    train = client.get_metric_history(noisy.info.run_id, "train_loss")
    assert len(train) < 20_000 / 4
    assert [m.step for m in client.get_metric_history(noisy.info.run_id, "eval_loss")] == [10_000, 20_000]
    assert max(m.step for m in train) == 20_000
    # A NaN final loss is a divergence (a result, not a finished point).
    assert status[6] == ["diverged"] and "final_eval_loss=nan" in reason[6]


@pytest.mark.slow
def test_a_diverged_trial_is_a_result_so_the_sweep_exits_0(cli, tmp_path):
    result = cli(*MISBEHAVE, trials_spec([0, 6]), env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    _, runs = trial_runs(tmp_path)
    assert sorted(r.data.tags["status"] for r in runs) == ["diverged", "finished"]
