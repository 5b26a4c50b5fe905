"""Time from measurement: a short throughput probe per trial shape, cached per device and shape.

`cluster.throughput=probe` makes the plan time every trial of the built-in GPT trainer from a probe instead of
`cluster.assumed_flops_per_s`: for each distinct (shape, batch, micro-batch, dtype, threads) it builds the
trial's model and optimizer on this machine's device, runs one warm-up step and then PROBE_STEPS timed optimizer
steps of the trial's own batch, and times one evaluation micro-batch. The trial's time is then

    t = D * s_train + n_evals * eval_tokens * s_eval + s_build

(s_train, s_eval: seconds per training / evaluation token measured; n_evals: the trainer's evaluations; s_build:
the measured time to build the trial: model, optimizer, its data source). The
seconds per token are cached in a JSON file (`throughput.json` under $XDG_CACHE_HOME or ~/.cache,
`scaling-orchestrator/`), keyed by device, torch version and shape, so a second plan probes nothing. A probe
measures an idle machine: trials that share its cores run slower (the plan says which it used).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.planner import Trial

PROBE_STEPS = 3
GPT_TARGET = "trainers.gpt:train"


@dataclass(frozen=True)
class Speed:
    """Measured seconds per training token and per evaluation token of one shape on one device, and seconds to
    build the trial (model, optimizer, data source)."""

    s_train: float
    s_eval: float
    s_build: float = 0.0


@dataclass(frozen=True)
class Estimate:
    """Each trial's estimated seconds (by trial id) and where the figures came from."""

    seconds: dict[str, float]
    source: str


def cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "scaling-orchestrator" / "throughput.json"


def shape_key(trial: Trial, *, device: str, threads: int) -> str:
    import torch  # noqa: PLC0415

    m, t, d = trial.config["model"], trial.config["trainer"], trial.config["data"]
    return json.dumps({"device": device, "threads": threads, "torch": torch.__version__, "model": m,
                       "vocab": d["vocab_size"], "batch": t["batch_tokens"], "micro": t.get("micro_batch_tokens"),
                       "dtype": t.get("dtype"), "compile": t.get("compile")}, sort_keys=True)


def probe(trial: Trial, *, device: str, threads: int) -> Speed:
    """Time a few optimizer steps and one evaluation micro-batch of the trial's shape (see the module docstring)."""
    import torch  # noqa: PLC0415

    from trainers.gpt import GPTTrial  # noqa: PLC0415

    batch_tokens = int(trial.config["trainer"]["batch_tokens"])
    config = dict(trial.config, tokens=batch_tokens * (PROBE_STEPS + 1))
    config["trainer"] = dict(config["trainer"], eval_tokens=int(trial.config["model"]["seq_len"]) * 8)
    previous = torch.get_num_threads()
    try:
        t0 = time.perf_counter()
        run = GPTTrial(config, lambda metrics: None, run_dir=None, device=device, threads=threads)
        s_build = time.perf_counter() - t0
        batch, n = run.fetch(0)
        run.step(batch, n)  # warm-up: allocations, the optimizer's state
        t0 = time.perf_counter()
        for i in range(PROBE_STEPS):
            batch, n = run.fetch((i + 1) * n * run.seq_len)
            run.step(batch, n)
        s_train = (time.perf_counter() - t0) / (PROBE_STEPS * n * run.seq_len)
        t0 = time.perf_counter()
        run.evaluate()
        s_eval = (time.perf_counter() - t0) / (8 * run.seq_len)
    finally:
        torch.set_num_threads(previous)
    return Speed(s_train=s_train, s_eval=s_eval, s_build=s_build)


def trial_seconds(trial: Trial, speed: Speed) -> float:
    t = trial.config["trainer"]
    interval = t.get("eval_interval_tokens") or 0
    evals = math.ceil(trial.tokens / interval) if interval else int(t.get("evals_per_run", 10))
    return trial.tokens * speed.s_train + evals * int(t["eval_tokens"]) * speed.s_eval + speed.s_build


def estimate(trials: list[Trial], *, device: str, threads: int) -> Estimate | None:
    """Probe-based seconds of every trial (None when a trial is not the built-in GPT trainer's)."""
    if not trials or any(t.config["trainer"].get("target") != GPT_TARGET for t in trials):
        return None
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    probed, seconds = 0, {}
    for trial in trials:
        key = shape_key(trial, device=device, threads=threads)
        if key not in cache:
            cache[key] = vars(probe(trial, device=device, threads=threads))
            probed += 1
        seconds[trial.trial_id] = trial_seconds(trial, Speed(**cache[key]))
    if probed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    return Estimate(seconds=seconds, source=f"probed on {device} x{threads} thread(s): {probed} shape(s) now, "
                                            f"{len({shape_key(t, device=device, threads=threads) for t in trials}) - probed}"
                                            f" from {path}")
