"""Replay one trial outside Ray and MLflow: `python -m trainers.run_one trial_config.json`.

Every trial run records its resolved config as the artifact `trial_config.json` (the dict the trainer was
called with, `trainer.target` included). This module calls that trainer with the same dict, in this process,
printing each report as one JSON line and the result at the end, so a failed or surprising trial can be
debugged with a plain debugger or profiler. Exit codes: 0 the trainer returned FINISHED, 1 any other result,
2 the file is not a trial config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trainers.api import FINISHED, TrainerError, check_result, load_trainer


def load_trial(path: Path) -> dict[str, Any]:
    """The trial config stored at `path`; ValueError with one sentence when it is not one."""
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: give the trial_config.json artifact of a run.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a JSON trial config ({type(err).__name__}: {err}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("trainer"), dict) \
            or not isinstance(config["trainer"].get("target"), str):
        raise ValueError(f"{path} is not a trial config: it has no trainer.target (the trial_config.json "
                         f"artifact of a run has one).")
    return config


def replay(config: dict[str, Any], *, run_dir: str | None = None, device: str = "cpu", threads: int = 1,
           quiet: bool = False) -> dict[str, Any]:
    """Run the trial's trainer on `config` in this process; returns its result dict (the TrialResult)."""
    def report(metrics: dict[str, Any]) -> None:
        if not quiet:
            print(json.dumps(metrics, default=str), flush=True)

    result = load_trainer(config["trainer"]["target"])(config, report, run_dir=run_dir, device=device,
                                                      threads=threads)
    broken = check_result(result)
    if broken is not None:
        raise TrainerError(f"trainer.target={config['trainer']['target']} broke the trainer contract "
                           f"(trainers/api.py): {broken}.")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.run_one", description=__doc__.splitlines()[0])
    parser.add_argument("trial", type=Path, help="a run's trial_config.json artifact")
    parser.add_argument("--run-dir", default=None, help="checkpoint folder (default: none, no resume)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quiet", action="store_true", help="print only the result, not every report")
    args = parser.parse_args(argv)
    try:
        config = load_trial(args.trial)
        result = replay(config, run_dir=args.run_dir, device=args.device, threads=args.threads, quiet=args.quiet)
    except (ValueError, TrainerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"result": result}, default=str), flush=True)
    return 0 if result["status"] == FINISHED else 1


if __name__ == "__main__":
    sys.exit(main())
