"""Time from measurement: a short throughput probe per trial shape, cached per device, shape and concurrency.

`cluster.throughput=probe` makes the plan time every trial of the built-in GPT trainer from a probe instead of
`cluster.assumed_flops_per_s`: for each distinct (shape, batch, micro-batch, dtype, threads) it builds the
trial's model and optimizer on this machine's device, runs one warm-up step and then timed optimizer steps of
the trial's own batch (at least PROBE_STEPS, and at least PROBE_SECONDS of them), and times one evaluation
micro-batch. The trial's time is then

    t = D * s_train + n_evals * eval_tokens * s_eval + s_build

(s_train, s_eval: seconds per training / evaluation token measured; n_evals: the trainer's evaluations; s_build:
the measured time to build the trial: model, optimizer, its data source).

The sweep runs `concurrency` trials at once (its slots on this machine: trials sharing the cores, or fractions of
one GPU), and they share cores, caches and memory bandwidth: measured on cpu_small, one probe alone on an idle
core gave 0.41 of the sweep's trial time. So the probe runs as the sweep will: `concurrency` processes probe the
same shape at the same time (started together at a barrier before the warm-up, the timed steps and the
evaluation), and the shape's speed is their mean. The seconds per token are cached in a JSON file
(`throughput.json` under $XDG_CACHE_HOME or ~/.cache, `scaling-orchestrator/`), keyed by device, torch version,
shape and concurrency, so a second plan probes nothing. Other jobs on the machine while it probes (or while the
sweep runs) still move the figures: the plan says which concurrency it measured.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import ClusterConfig
from orchestrator.planner import Trial

PROBE_STEPS = 3
"""Timed optimizer steps per probe, at least."""
PROBE_SECONDS = 0.5
"""Timed training seconds per probe, at least (a tiny shape's 3 steps take milliseconds: too short to time
against its neighbours)."""
BARRIER_TIMEOUT_S = 300.0
"""How long a probing process waits for the others at a barrier (one of them failed, or the machine is stuck)."""
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


def shape_key(trial: Trial, *, device: str, threads: int, concurrency: int = 1) -> str:
    import torch  # noqa: PLC0415

    m, t, d = trial.config["model"], trial.config["trainer"], trial.config["data"]
    return json.dumps({"device": device, "threads": threads, "torch": torch.__version__, "model": m,
                       "vocab": d["vocab_size"], "batch": t["batch_tokens"], "micro": t.get("micro_batch_tokens"),
                       "dtype": t.get("dtype"), "compile": t.get("compile"), "concurrency": concurrency},
                      sort_keys=True)


def probe_concurrency(cluster: ClusterConfig, *, slots: int) -> int:
    """How many trials share one device while the sweep runs: on CPUs the sweep's `slots` (plan_view.slots: every
    worker of a multi-worker trial holds one), on a GPU the trials one GPU holds (1 / cluster.gpus_per_trial,
    whole trials, at most the slots)."""
    if cluster.gpus_per_trial > 0:
        return min(slots, max(1, math.floor(1 / cluster.gpus_per_trial + 1e-9)))
    return slots


def probe(config: dict[str, Any], *, device: str, threads: int, together: Callable[[], None] = lambda: None) -> Speed:
    """Time the warm-up, optimizer steps and one evaluation micro-batch of the trial config's shape (see the module
    docstring). `together` is called before the warm-up, before the timed steps and before the evaluation: the
    barrier of the processes that probe the shape at once."""
    import torch  # noqa: PLC0415

    from trainers.gpt import GPTTrial  # noqa: PLC0415

    config = dict(config)
    config["trainer"] = dict(config["trainer"], eval_tokens=int(config["model"]["seq_len"]) * 8)
    previous = torch.get_num_threads()
    try:
        t0 = time.perf_counter()
        run = GPTTrial(config, lambda metrics: None, run_dir=None, device=device, threads=threads)
        s_build = time.perf_counter() - t0
        together()
        t0 = time.perf_counter()
        batch, n = run.fetch(0)
        run.step(batch, n)  # warm-up: allocations, the optimizer's state
        warm_up = (time.perf_counter() - t0) / (n * run.seq_len)
        together()  # the copies' warm-ups take unequal times: their timed steps start together
        first = tokens = n * run.seq_len
        steps, t0 = 0, time.perf_counter()
        # The trial's next batches (as many as its D holds): at least PROBE_STEPS of them and PROBE_SECONDS.
        while tokens < run.total and (steps < PROBE_STEPS or time.perf_counter() - t0 < PROBE_SECONDS):
            batch, n = run.fetch(tokens)
            run.step(batch, n)
            tokens, steps = tokens + n * run.seq_len, steps + 1
        s_train = (time.perf_counter() - t0) / (tokens - first) if steps else warm_up  # one step: its warm-up
        together()
        t0 = time.perf_counter()
        run.evaluate()
        s_eval = (time.perf_counter() - t0) / (8 * run.seq_len)
    finally:
        torch.set_num_threads(previous)
    return Speed(s_train=s_train, s_eval=s_eval, s_build=s_build)


def _probe_copy(configs: list[dict[str, Any]], device: str, threads: int, barrier: Any, results: Any,
                copy: int) -> None:
    """One of the processes that probe shapes at once: every shape in order, meeting the others at `barrier`."""
    try:
        speeds = [vars(probe(c, device=device, threads=threads, together=lambda: barrier.wait(BARRIER_TIMEOUT_S)))
                  for c in configs]
        results.put((copy, speeds, None))
    except BaseException as err:  # noqa: BLE001  (sent to the parent, which raises it)
        barrier.abort()
        results.put((copy, None, f"{type(err).__name__}: {err}"))


def probe_together(configs: list[dict[str, Any]], *, device: str, threads: int, concurrency: int) -> list[Speed]:
    """Each config's shape probed by `concurrency` processes at the same time; its speed is their mean. One
    process probes in this one (no copies to start)."""
    if concurrency == 1:
        return [probe(c, device=device, threads=threads) for c in configs]
    import multiprocessing  # noqa: PLC0415

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: CUDA and torch's threads start clean
    barrier, results = ctx.Barrier(concurrency), ctx.Queue()
    copies = [ctx.Process(target=_probe_copy, args=(configs, device, threads, barrier, results, i), daemon=True)
              for i in range(concurrency)]
    for p in copies:
        p.start()
    try:
        answers = [results.get(timeout=BARRIER_TIMEOUT_S * (len(configs) + 1)) for _ in copies]
    finally:
        for p in copies:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    errors = [error for _, _, error in answers if error is not None]
    if errors:
        raise RuntimeError(f"the throughput probe failed: {errors[0]}")
    speeds = [speed for _, speed, _ in answers]
    return [Speed(**{k: sum(s[i][k] for s in speeds) / concurrency for k in ("s_train", "s_eval", "s_build")})
            for i in range(len(configs))]


def trial_seconds(trial: Trial, speed: Speed) -> float:
    t = trial.config["trainer"]
    interval = t.get("eval_interval_tokens") or 0
    evals = math.ceil(trial.tokens / interval) if interval else int(t.get("evals_per_run", 10))
    return trial.tokens * speed.s_train + evals * int(t["eval_tokens"]) * speed.s_eval + speed.s_build


def estimate(trials: list[Trial], *, device: str, threads: int, concurrency: int = 1) -> Estimate | None:
    """Probe-based seconds of every trial (None when a trial is not the built-in GPT trainer's), measured with
    `concurrency` trials running at once (at most one per trial)."""
    if not trials or any(t.config["trainer"].get("target") != GPT_TARGET for t in trials):
        return None
    concurrency = max(1, min(concurrency, len(trials)))
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    keys = {t.trial_id: shape_key(t, device=device, threads=threads, concurrency=concurrency) for t in trials}
    missing = {keys[t.trial_id]: t.config for t in trials if keys[t.trial_id] not in cache}
    if missing:
        speeds = probe_together(list(missing.values()), device=device, threads=threads, concurrency=concurrency)
        cache.update({key: vars(speed) for key, speed in zip(missing, speeds)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    seconds = {t.trial_id: trial_seconds(t, Speed(**cache[keys[t.trial_id]])) for t in trials}
    return Estimate(seconds=seconds, source=f"probed on {device} x{threads} thread(s), {concurrency} at once: "
                                            f"{len(missing)} shape(s) now, {len(set(keys.values())) - len(missing)}"
                                            f" from {path}")
