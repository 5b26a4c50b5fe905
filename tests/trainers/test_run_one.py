"""`python -m trainers.run_one trial_config.json` replays a planned trial outside Ray, exactly."""

import json
import subprocess
import sys

from orchestrator.config import SweepConfig
from orchestrator.planner import plan
from trainers.config import DataConfig, ModelConfig, TrainerConfig
from trainers.gpt import train


def _trial_config(tmp_path):
    sweep = SweepConfig(name="replay", kind="isoflop", budgets=[1e10], sizes_per_budget=3, span=4.0,
                        centre_tokens_per_param=20, min_tokens_per_param=1.0)
    trials = plan(sweep, model=ModelConfig(seq_len=64, aspect_ratio=16, head_dim=8),
                  trainer=TrainerConfig(batch_tokens=2048, eval_tokens=8192), datasets={"synthetic": DataConfig()})
    config = trials[0].config
    path = tmp_path / "trial_config.json"
    path.write_text(json.dumps(config))
    return config, path


def test_replay_prints_reports_and_reaches_the_in_process_loss(tmp_path):
    config, path = _trial_config(tmp_path)
    expected = train(config, lambda metrics: None, threads=1)
    out = subprocess.run([sys.executable, "-m", "trainers.run_one", str(path)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    reports, result = lines[:-1], lines[-1]["result"]
    assert reports and all({"step", "tokens", "flops", "train_loss"} <= set(r) for r in reports)
    assert reports[-1]["step"] == result["steps"] == expected["steps"]
    # Same config, same seed, same thread count: the replay is the trial, bit for bit.
    assert result["final_eval_loss"] == expected["final_eval_loss"]
    assert result["flops"] == expected["flops"]


def test_a_file_that_is_not_a_trial_config_is_one_sentence_exit_2(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"model": {}}))
    for path in (bad, tmp_path / "missing.json"):
        out = subprocess.run([sys.executable, "-m", "trainers.run_one", str(path)], capture_output=True, text=True,
                             timeout=120, check=False)
        assert out.returncode == 2
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
        assert "Traceback" not in out.stderr
