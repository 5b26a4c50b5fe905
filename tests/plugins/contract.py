"""A plug-in trainer that breaks the trainer contract (trainers/api.py) in the ways a user's trainer might;
the trial's seed picks the way:
  0 returns None   1 returns an unknown status   2 returns a loss as text   3+ keeps the contract
Each reports one step first, so the runner has opened the trial's run before the broken result arrives.
"""

from __future__ import annotations

BROKEN = {
    0: None,
    1: {"status": "great", "final_eval_loss": 3.0},
    2: {"status": "finished", "final_eval_loss": "3.0"},
}


def train(config, report, *, run_dir=None, device="cpu", threads=1):
    report({"step": 0, "tokens": 0, "train_loss": 5.0})
    seed = config["seed"]
    if seed in BROKEN:
        return BROKEN[seed]
    return {"status": "finished", "final_train_loss": 3.0, "final_eval_loss": 3.0, "tokens": config["tokens"],
            "steps": 1}
