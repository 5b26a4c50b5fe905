"""One command that proves the GPU path, in minutes, and writes what it measured.

    python benchmarks/gpu_check.py --out gpu_check            # a CUDA machine: under 8 minutes
    python benchmarks/gpu_check.py --smoke --out /tmp/gc      # CPU: the same steps in 2-3 minutes

Four steps, each guarded (a step that fails is recorded with its error and the others still run),
inside one time budget (`--budget-s`, default 420 s) that shortens steps rather than overrunning:

1. throughput: the dense matmul peak (bf16, and fp32 = TF32 on CUDA), then the real GPT trainer's
   tokens/s, model FLOP/s and MFU at three sizes, eager and torch.compile'd, with the functions of
   `trainer_throughput.py`. On CUDA: GPT-2's padded vocabulary (50304), seq_len 1024, 65536 tokens
   per step, sizes of 45M, 96M and 204M parameters; tokens come from a random token memmap so the
   loader never limits the GPU. MFU is reported against the datasheet's dense bf16 peak
   (`trainers/device.py`, PaLM's definition) and against the matmul peak measured here.
2. sweep: a small IsoFLOP sweep through the real CLI (`python -m orchestrator` as a subprocess) on a
   local Ray instance with fractional GPUs (`cluster.gpus_per_trial=0.25`: 4 trials per GPU) into a
   real MLflow store (`OUT/mlflow.db`). The budgets are sized from step 1's measurements to fit the
   time left. Read back from the store: every trial finished, on which GPU (Ray's assignment), how
   busy the slots were (trial time / (slots x wall)), how busy the GPU was (`nvidia-smi`'s
   utilization.gpu, the share of time a kernel was running), and the sweep's MFU (all trials' FLOPs /
   (wall x GPUs x peak)).
3. oom: a list sweep through the CLI with one trial that cannot fit and a few that can. It must be
   recorded as `oom` (a result, not a crash: no retries) while the others finish and the sweep
   exits 0. How the OOM is provoked, honestly, on each device:
   - CUDA: each trial holds a quarter of a GPU, and the runner limits it to that share of the GPU's
     memory (`ORCH_GPU_MEMORY_FRACTION` -> torch.cuda.set_per_process_memory_fraction). The big
     model's fp32 weights alone take 60% of the share, so weights plus gradients cannot fit: the
     backward pass raises CUDA's OutOfMemoryError, the trainer halves its micro-batch down to one
     sequence (trainers/gpt.py), then ends the trial as `oom`.
   - CPU: a trial's memory share is an address-space limit (RLIMIT_AS) set by a thin wrapper around
     the same trainer (`benchmarks/memory_limited.py`: `trainer.options.memory_limit_mb` MiB above
     what the worker already maps, restored afterwards since CPU workers are reused). The big model's
     weights take 1.5 times the limit, so allocating them fails inside torch's CPU allocator with its
     real "can't allocate memory" error, which the trainer records as `oom` (trainers/gpt.py, through
     trainers/device.py's is_oom) like any out-of-memory. Nothing is mocked and no host memory is
     exhausted; an "enormous model" instead would depend on the host's RAM and overcommit policy.
     RLIMIT_AS is not used on CUDA, where the driver reserves huge virtual address ranges.
   Where the CLI cannot run (ray, mlflow, hydra or omegaconf not importable, as on a bare GPU image),
   step 2 is recorded as an error and step 3 runs the same trials at once as plain trainer processes,
   each with the environment Ray and the runner would give it (CUDA_VISIBLE_DEVICES, the memory share):
   the trainer's side of packing, memory shares and OOM still gets proven. Step 1 needs only torch,
   numpy and scipy.
4. OUT/results.json and OUT/results.md (the same tables printed at the end); the CLI's logs and the
   MLflow store stay in OUT. torch.compile's caches go to OUT/torch_compile_cache (or
   `--compile-cache DIR`) through TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR, inherited by the
   sweep's Ray workers.

Exit code 0 when every step passed its checks, 1 otherwise (everything measured is written either
way), 2 for bad arguments. What "good" looks like on an A100/H100/H200: the matmul peak near 70-80%
of the datasheet, nanoGPT-class models of 50M+ parameters at about 40-50% bf16 MFU compiled, every
sweep trial finished on the GPU Ray assigned, and the OOM trial recorded as `oom`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import numpy as np
import torch

from trainer_throughput import matmul_peak, trainer_throughput
from trainers import device as devices

GPU_FRACTION = 0.25
"""Each sweep trial's share of a GPU: 4 trials per GPU."""
STEP_SHARES = {"throughput": 0.35, "sweep": 0.30, "oom": 0.15, "workers": 0.15}
"""Shares of the budget; what a step leaves unused passes on to the next. The rest is slack."""
SHARES_WITHOUT_CLI = {"throughput": 0.60, "sweep": 0.0, "oom": 0.15, "workers": 0.0}
"""Where the CLI cannot run, step 2 takes no time and step 1 gets it."""
SWEEP_EXPERIMENT, OOM_EXPERIMENT, WORKERS_EXPERIMENT = "gpu_check_isoflop", "gpu_check_oom", "gpu_check_workers"


@dataclass(frozen=True)
class Mode:
    """Sizes and settings of one run: the CUDA check or the CPU smoke."""

    device: str
    sizes: tuple[tuple[int, int], ...]
    """(n_layer, d_model) of the throughput rows, head size 64."""
    compile_sizes: int
    """How many of the sizes (from the smallest) are also run compiled."""
    seq_len: int
    batch_tokens: int
    micro_batch_tokens: int
    steps: int
    warmup: int
    vocab: int
    dtype: str
    matmul_n: int
    matmul_s: float
    threads: int


GPU = Mode(device="cuda", sizes=((6, 512), (8, 768), (12, 1024)), compile_sizes=3, seq_len=1024, batch_tokens=65536,
           micro_batch_tokens=16384, steps=10, warmup=3, vocab=50304, dtype="bf16", matmul_n=8192, matmul_s=2.0,
           threads=4)
SMOKE = Mode(device="cpu", sizes=((1, 32), (1, 64), (2, 64)), compile_sizes=1, seq_len=32, batch_tokens=512,
             micro_batch_tokens=0, steps=3, warmup=2, vocab=256, dtype="fp32", matmul_n=256, matmul_s=0.2, threads=1)


@dataclass
class Context:
    out: Path
    mode: Mode
    smoke: bool
    deadline: float
    env: dict[str, str]
    n_gpus: int = 0
    gpu_name: str = "cpu"
    gpu_memory_bytes: int = 0
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    shares: dict[str, float] = field(default_factory=lambda: dict(STEP_SHARES))
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.mode.device == "cuda"

    def allowance(self, step: str) -> float:
        """Seconds for `step`: its share of what is left, the unused time of earlier steps included."""
        names = list(self.shares)
        later = sum(self.shares[n] for n in names[names.index(step):])
        left = self.deadline - time.monotonic()
        return max(left * self.shares[step] / (later + 0.10), 0.0)


# -- helpers -------------------------------------------------------------------------------------------
def guarded(ctx: Context, name: str, fn) -> dict[str, Any]:
    """Run one step; an exception is recorded (type, message, traceback tail), never raised."""
    start, allowance = time.monotonic(), ctx.allowance(name)
    print(f"\n== {name} (allowance {allowance:.0f} s)", flush=True)
    try:
        section = fn(ctx, allowance)
    except Exception as err:  # noqa: BLE001  (a failing step must not stop the others)
        section = {"status": "error", "error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()[-3000:]}
    section["wall_s"] = time.monotonic() - start
    if section.get("status") != "error":
        checks = section.get("checks", {})
        section["status"] = "passed" if checks and all(checks.values()) else "failed"
    print(f"== {name}: {section['status']} in {section['wall_s']:.1f} s"
          + (f" ({section['error']})" if "error" in section else ""), flush=True)
    ctx.results[name] = section
    return section


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def write_tokens(folder: Path, *, vocab: int, train_tokens: int, val_tokens: int) -> Path:
    """A nanoGPT-layout folder of random uint16 tokens (throughput only: the loader never waits)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rng.integers(0, vocab, train_tokens, dtype=np.uint16).tofile(folder / "train.bin")
    rng.integers(0, vocab, val_tokens, dtype=np.uint16).tofile(folder / "val.bin")
    return folder


def free_memory(cuda: bool) -> None:
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# -- step 1: throughput ---------------------------------------------------------------------------------
def throughput_step(ctx: Context, allowance: float) -> dict[str, Any]:
    mode, stop = ctx.mode, time.monotonic() + allowance
    peaks = {"bf16": matmul_peak(torch.bfloat16, device=mode.device, n=mode.matmul_n if ctx.cuda else 256,
                                 seconds=mode.matmul_s)}
    peaks["fp32"] = matmul_peak(torch.float32, device=mode.device, n=mode.matmul_n, seconds=mode.matmul_s / 2)
    datasheet, source = (devices.datasheet_peak(ctx.gpu_name, mode.dtype) if ctx.cuda else
                         (devices.CPU_PEAK_FLOPS_PER_THREAD * mode.threads, "CPU default"))
    measured = peaks[mode.dtype]
    tokens = write_tokens(ctx.out / "data" / f"random_v{mode.vocab}", vocab=mode.vocab,
                          train_tokens=mode.batch_tokens * mode.steps * 2, val_tokens=mode.seq_len * 4)
    data = {"name": "tokens", "path": str(tokens), "vocab_size": mode.vocab, "dtype": "uint16",
            "allow_repeat": True}
    trainer = {"micro_batch_tokens": mode.micro_batch_tokens} if mode.micro_batch_tokens else {}
    plan = [(size, False) for size in mode.sizes] + [(size, True) for size in mode.sizes[:mode.compile_sizes]]
    rows: list[dict[str, Any]] = []
    last: dict[bool, tuple[int, int, float]] = {}
    for (n_layer, d_model), compiled in plan:
        row: dict[str, Any] = {"n_layer": n_layer, "d_model": d_model, "compile": compiled}
        if compiled in last:  # compiling takes about depth-proportional time; eager rows about their work
            prev_layers, prev_d, prev_wall = last[compiled]
            growth = n_layer / prev_layers * (1.0 if compiled else (d_model / prev_d) ** 2)
            estimate = prev_wall * max(growth, 1.0)
            if time.monotonic() + estimate > stop:
                rows.append({**row, "status": "skipped", "error": f"budget: about {estimate:.0f} s needed"})
                print(f"  skipped L={n_layer} d={d_model} compile={compiled}: the step's time is spent", flush=True)
                continue
        start = time.monotonic()
        try:
            free_memory(ctx.cuda)
            row.update(trainer_throughput(n_layer, d_model, seq_len=mode.seq_len, batch_tokens=mode.batch_tokens,
                                          steps=mode.steps, warmup=mode.warmup, device=mode.device,
                                          threads=mode.threads, dtype=mode.dtype, compile=compiled, data=data,
                                          trainer=trainer))
            row["mfu"] = row["flops_per_s"] / datasheet
            row["mfu_measured_peak"] = row["flops_per_s"] / measured
        except Exception as err:  # noqa: BLE001  (one size failing leaves the others measured)
            first = (str(err).strip().splitlines() or [""])[0]
            row.update(status="error", error=f"{type(err).__name__}: {first}", traceback=traceback.format_exc()[-2000:])
        row["wall_s"] = time.monotonic() - start
        last[compiled] = (n_layer, d_model, row["wall_s"])
        rows.append(row)
        if compiled:
            torch._dynamo.reset()  # drop the compiled graphs before the next size
        print(f"  L={n_layer} d={d_model} compile={compiled}: "
              + (f"{row['tokens_per_s']:,.0f} tokens/s, MFU {100 * row['mfu']:.1f}%" if "mfu" in row
                 else row.get("error", "")) + f" ({row['wall_s']:.0f} s)", flush=True)
    free_memory(ctx.cuda)
    measured_rows = [r for r in rows if "mfu" in r]
    eager = [r for r in measured_rows if not r["compile"]]
    checks = {
        "matmul peaks measured": all(finite(v) and v > 0 for v in peaks.values()),
        "every eager size measured": len(eager) == len(mode.sizes),
        "a compiled size measured": any(r["compile"] for r in measured_rows),
        "numbers finite": all(finite(r[k]) and r[k] > 0 for r in measured_rows
                              for k in ("tokens_per_s", "flops_per_s", "mfu")),
    }
    if ctx.cuda:
        checks["a size of 50M+ parameters measured"] = any(r["n_params"] >= 50e6 for r in eager)
    return {"device": mode.device, "gpu_name": ctx.gpu_name, "dtype": mode.dtype, "peaks": peaks,
            "datasheet_peak": datasheet, "datasheet_source": source, "rows": rows,
            "best_mfu": max((r["mfu"] for r in measured_rows), default=None), "checks": checks}


# -- steps 2 and 3: sweeps through the CLI ----------------------------------------------------------------
class GpuSampler:
    """nvidia-smi's utilization.gpu and memory.used every 0.5 s, in a thread, while a sweep runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, float, float]] = []  # (time, gpu index, util %, memory MiB)
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> bool:
        if shutil.which("nvidia-smi") is None:
            return False
        self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits", "-lms", "500"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return True

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            with contextlib.suppress(ValueError, IndexError):
                self.samples.append((time.time(), int(parts[0]), float(parts[1]), float(parts[2])))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def busy(self, start: float, end: float) -> dict[str, Any] | None:
        """Mean utilization per GPU between `start` and `end` (epoch seconds), and its mean."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside:
            return None
        per_gpu = {i: statistics.mean(s[2] for s in inside if s[1] == i) / 100 for i in {s[1] for s in inside}}
        return {"mean": statistics.mean(per_gpu.values()), "per_gpu": per_gpu, "samples": len(inside),
                "memory_peak_mib": max(s[3] for s in inside)}


def run_cli(ctx: Context, args: list[str], *, timeout: float, log: str) -> dict[str, Any]:
    """`python -m orchestrator ARGS` in OUT; past `timeout` it gets Ctrl-C (running trials are
    marked killed), then, 30 s later, its process group is killed."""
    command = [sys.executable, "-m", "orchestrator", *args]
    print("  $ python -m orchestrator " + " ".join(args), flush=True)
    start = time.monotonic()
    with open(ctx.out / f"{log}.log", "w") as sink:
        proc = subprocess.Popen(command, cwd=ctx.out, env=ctx.env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        timed_out = False
        try:
            code = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
    tail = (ctx.out / f"{log}.log").read_text()[-3000:]
    return {"command": args, "exit_code": code, "timed_out": timed_out, "cli_wall_s": time.monotonic() - start,
            "log": f"{log}.log", **({"log_tail": tail} if code != 0 else {})}


METRICS = ("final_eval_loss", "workers", "flops", "tokens_per_s", "mfu", "wall_s", "peak_flops", "gpu_physical_index",
           "gpu_visible_count", "gpu_memory_fraction", "gpu_max_memory_allocated_gb", "entropy_floor")


def visible_gpus(count: int) -> set[int]:
    """The physical GPU ids Ray can hand out: this process's CUDA_VISIBLE_DEVICES, or all of them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return set(range(count))
    return {int(v) for v in visible.split(",") if v.strip().isdigit()}


def read_trials(store: Path, experiment: str) -> list[dict[str, Any]]:
    """Every trial run of `experiment` in the SQLite store, as a user would read it back."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    rows = []
    for run in client.search_runs([exp.experiment_id], filter_string="tags.kind = 'trial'", max_results=10000):
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        rows.append({
            "name": run.info.run_name, "status": tags.get("status"), "device": tags.get("device"),
            "reason": tags.get("failure_reason"), "attempt": int(tags.get("attempt", 1)),
            "n_params": float(params.get("N_total", "nan")), "tokens": float(params.get("D", "nan")),
            "c_exact": float(params.get("C_exact", "nan")), "start": run.info.start_time / 1000,
            "end": (run.info.end_time or run.info.start_time) / 1000,
            **{k: metrics.get(k) for k in METRICS},
        })
    return sorted(rows, key=lambda r: r["start"])


def max_overlap(trials: list[dict[str, Any]]) -> int:
    """Most trials running at the same moment (from their runs' start and end times)."""
    events = sorted([(t["start"], 1) for t in trials] + [(t["end"], -1) for t in trials], key=lambda e: (e[0], e[1]))
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def sampler_tokens_per_s(seq_len: int) -> float:
    """How fast one thread samples the synthetic language (the sweep's data) at `seq_len`."""
    from trainers.config import DataConfig
    from trainers.data import build_source

    # A seed of its own each call: sampled chunks are cached per (seed, index).
    source = build_source(DataConfig(), seq_len=seq_len, seed=time.time_ns() % 2**31, tokens=1 << 30,
                          eval_tokens=seq_len)
    start = time.perf_counter()
    batch = source.train(0, 512)
    return batch.numel() / (time.perf_counter() - start)


ISOFLOP = {"sizes_per_budget": 4, "span": 8.0, "centre_tokens_per_param": 5.0}
"""The CUDA sweep's design: budgets c1 and 3 c1. Few tokens per parameter (Chinchilla's ~20 would make
these small models wait on the synthetic language's sampler rather than the GPU)."""


def isoflop_seconds(c1: float, *, flops_per_s: float, tokens_per_s: float, slots: int, overhead_s: float) -> float:
    """Estimated wall time of the sweep (ISOFLOP at budgets c1 and 3 c1) on `slots` slots, each trial
    bound by its FLOPs or by its data (C = 6ND overestimates D, so this errs long)."""
    times, k, span = [], ISOFLOP["sizes_per_budget"], ISOFLOP["span"]
    for c in (c1, 3 * c1):
        n_c = math.sqrt(c / (6 * ISOFLOP["centre_tokens_per_param"]))
        for i in range(k):
            n = n_c * span ** (i / (k - 1) - 0.5)
            times.append(overhead_s + max(c / flops_per_s, c / (6 * n) / tokens_per_s))
    ends = [0.0] * slots
    for t in times:
        ends[ends.index(min(ends))] += t
    return max(ends)


def sweep_args(ctx: Context, allowance: float) -> tuple[list[str], dict[str, Any]]:
    """The CLI overrides of the IsoFLOP sweep, and how its size was chosen."""
    common = [f"sweep.name={SWEEP_EXPERIMENT}", "sweep.kind=isoflop", "cluster.max_retries=0", "fit.bootstrap=0"]
    if not ctx.cuda:
        return ["sweep=tiny", *common, "sweep.budgets=[5e9,1e10]", "sweep.sizes_per_budget=2",
                "trainer.eval_tokens=2048", "cluster.num_cpus=2", "cluster.cpus_per_trial=1"], {"slots": 2}
    seq_len, slots = 512, max(min(int(ctx.n_gpus / GPU_FRACTION), ctx.cpus // 2), 1)
    rows = [r for r in ctx.results.get("throughput", {}).get("rows", []) if "flops_per_s" in r and not r["compile"]]
    # Small packed models run less efficiently than step 1's smallest size on a whole GPU: half of it.
    gpu_flops = 0.5 * rows[0]["flops_per_s"] if rows else 0.15 * devices.datasheet_peak(ctx.gpu_name, "bf16")[0]
    tokens_per_s = 0.5 * sampler_tokens_per_s(seq_len)  # the loader thread shares the GIL with the trainer
    target = 0.6 * (allowance - 45)  # Ray's start, the report and reading the store take the rest
    per_trial = dict(flops_per_s=ctx.n_gpus * gpu_flops / slots, tokens_per_s=tokens_per_s, slots=slots,
                     overhead_s=15.0)
    candidates = [m * 10.0**k for k in range(12, 19) for m in (1, 2, 5)]
    fitting = [c for c in candidates if isoflop_seconds(c, **per_trial) <= target]
    c1 = max(fitting) if fitting else candidates[0]
    sizing = {"slots": slots, "c1": c1, "estimated_s": isoflop_seconds(c1, **per_trial), "target_s": target,
              "assumed_trial_flops_per_s": per_trial["flops_per_s"], "assumed_trial_tokens_per_s": tokens_per_s}
    design = [f"sweep.{key}={value}" for key, value in ISOFLOP.items()]
    return ["sweep=tiny", *common, f"sweep.budgets=[{c1:g},{3 * c1:g}]", *design, "sweep.min_tokens_per_param=0",
            f"model.seq_len={seq_len}", "model.aspect_ratio=32",
            "model.head_dim=64", "trainer.batch_tokens=32768", "trainer.eval_tokens=65536",
            f"cluster.gpus_per_trial={GPU_FRACTION}", "cluster.cpus_per_trial=2"], sizing


CLI_PACKAGES = ("ray", "mlflow", "hydra", "omegaconf")
"""What the CLI steps need beyond torch (step 1 needs torch, numpy and scipy only)."""


def missing_packages() -> dict[str, Any] | None:
    """A step's error when the CLI's dependencies are not importable here, else None."""
    missing = [name for name in CLI_PACKAGES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return {"status": "error", "error": f"not importable here: {', '.join(missing)}; the CLI steps need the "
                                        f"project installed (pip install -e .) in this Python ({sys.executable})"}


def sweep_step(ctx: Context, allowance: float) -> dict[str, Any]:
    if (missing := missing_packages()) is not None:
        return missing
    args, sizing = sweep_args(ctx, allowance)
    sampler = GpuSampler()
    sampling = ctx.cuda and sampler.start()
    try:
        cli = run_cli(ctx, args, timeout=allowance - 10, log="sweep_cli")
    finally:
        sampler.stop()
    trials = read_trials(ctx.out / "mlflow.db", SWEEP_EXPERIMENT)
    finished = [t for t in trials if t["status"] == "finished"]
    start = min((t["start"] for t in trials), default=0.0)
    span = max((t["end"] for t in trials), default=0.0) - start
    slots = sizing["slots"]
    busy = sum(t["end"] - t["start"] for t in trials)
    # The machine's peak: every GPU's datasheet bf16 peak, or the measured 1-thread fp32 peak per CPU slot.
    one_thread = ctx.results.get("throughput", {}).get("peaks", {}).get("fp32") or devices.CPU_PEAK_FLOPS_PER_THREAD
    peak = devices.datasheet_peak(ctx.gpu_name, "bf16")[0] * ctx.n_gpus if ctx.cuda else one_thread * slots
    flops = sum(t["flops"] or 0.0 for t in finished)
    section = {
        **cli, "sizing": sizing, "trials": trials, "n_trials": len(trials), "n_finished": len(finished),
        "sweep_wall_s": span, "slot_utilisation": busy / (slots * span) if span > 0 else None,
        "max_concurrent": max_overlap(trials), "sweep_mfu": flops / (span * peak) if span > 0 else None,
        "gpu_busy": sampler.busy(start, start + span) if sampling else None,
        "gpus_used": sorted({int(t["gpu_physical_index"]) for t in trials if finite(t["gpu_physical_index"])}),
    }
    checks = {
        "CLI exit code 0": cli["exit_code"] == 0,
        "every trial finished (read from the store)": bool(trials) and len(finished) == len(trials),
        "trials ran concurrently": section["max_concurrent"] >= min(2, slots),
        "numbers finite": all(finite(t[k]) and t[k] > 0 for t in finished
                              for k in ("final_eval_loss", "tokens_per_s", "mfu", "flops")),
    }
    if ctx.cuda:
        checks["every trial on a GPU"] = all((t["device"] or "").startswith("cuda") for t in trials)
        checks[f"every trial held to {GPU_FRACTION} of its GPU's memory"] = all(
            t["gpu_memory_fraction"] == GPU_FRACTION for t in finished)
        # Ray narrows each task's CUDA_VISIBLE_DEVICES to the GPU it assigned: the trial sees that one.
        checks["each trial saw only the GPU Ray assigned"] = bool(section["gpus_used"]) and all(
            t["gpu_visible_count"] == 1 and finite(t["gpu_physical_index"])
            and int(t["gpu_physical_index"]) in visible_gpus(ctx.n_gpus)
            for t in finished)
    else:
        checks["every trial on the CPU"] = all(t["device"] == "cpu" for t in trials)
    section["checks"] = checks
    return section


def workers_step(ctx: Context, allowance: float) -> dict[str, Any]:
    """One trial spanning workers on Ray Train (1 worker per GPU: 1 on a 1-GPU machine, 2 on a 2-GPU one; 2 gloo
    workers of 1 thread on the CPU), and the measured ETA's error: the plan's probe-based estimate
    (cluster.throughput=probe) against the trial's measured wall time."""
    if (missing := missing_packages()) is not None:
        return missing
    workers = max(ctx.n_gpus, 1) if ctx.cuda else 2
    args = ["sweep=tiny", f"sweep.name={WORKERS_EXPERIMENT}", "sweep.sizes_per_budget=1", "fit.bootstrap=0",
            f"cluster.workers_per_trial={workers}"]
    args += (["sweep.budgets=[3e14]", "model.seq_len=256", "trainer.batch_tokens=65536", "cluster.gpus_per_trial=1",
              "cluster.cpus_per_trial=2"] if ctx.cuda else ["sweep.budgets=[1e10]", "cluster.num_cpus=2"])
    plan = run_cli(ctx, [*args, "action=plan", "cluster.throughput=probe"], timeout=allowance / 3, log="workers_plan")
    text = (ctx.out / "workers_plan.log").read_text()
    match = re.search(r"about (\S+) wall", text)
    estimated = None
    if match:
        value, unit = float(match.group(1)[:-1]), match.group(1)[-1]
        estimated = value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    cli = run_cli(ctx, [*args, "action=run"], timeout=allowance - plan["cli_wall_s"] - 10, log="workers_cli")
    trials = read_trials(ctx.out / "mlflow.db", WORKERS_EXPERIMENT)
    finished = [t for t in trials if t["status"] == "finished"]
    actual = finished[0]["wall_s"] if finished else None
    section = {**cli, "plan": plan, "workers": workers, "trials": trials, "estimated_s": estimated, "actual_s": actual,
               "eta_error": (estimated / actual - 1) if estimated and actual else None}
    section["checks"] = {
        "plan and run exit code 0": plan["exit_code"] == 0 and cli["exit_code"] == 0,
        "the trial finished (read from the store)": len(finished) == 1 == len(trials),
        f"it ran on {workers} workers": bool(finished) and finished[0].get("workers") == workers,
        "the plan's probe gave an estimate": estimated is not None and estimated > 0,
    }
    return section


def oom_design(ctx: Context) -> dict[str, Any]:
    """Step 3's trials, the model that cannot fit its memory share first, then small ones that can."""
    if ctx.cuda:
        share, d_model, n_small = GPU_FRACTION * ctx.gpu_memory_bytes, 4096, int(1 / GPU_FRACTION)
        n_layer = max(int(0.6 * share / 4 / (12 * d_model**2)), 1)  # fp32 weights: 60% of the share
        big = {"n_layer": n_layer, "d_model": d_model, "n_head": 32, "tokens": 1024}
        small = {"n_layer": 2, "d_model": 128, "n_head": 2, "tokens": 102400}
        return {"trials": [{**big, "seed": 0}] + [{**small, "seed": s} for s in range(1, n_small + 1)],
                "seq_len": 256, "batch_tokens": 1024, "eval_tokens": 1024, "target": "trainers.gpt:train",
                "options": {}, "limit": {"kind": f"GPU memory share ({GPU_FRACTION} of the GPU)", "bytes": share}}
    # On the CPU the weights alone exceed the limit: the failing allocation is then always a parameter
    # in torch's allocator. Were the weights to fit, the first allocation past the limit could fall
    # inside oneDNN, whose error ("could not create a primitive") does not say that memory ran out.
    limit_mb, d_model = 384, 1024
    n_layer = max(int(1.5 * limit_mb * 2**20 / 4 / (12 * d_model**2)), 1)
    big = {"n_layer": n_layer, "d_model": d_model, "n_head": 16, "tokens": 128}
    small = {"n_layer": 1, "d_model": 32, "n_head": 2, "tokens": 4096}
    return {"trials": [{**big, "seed": 0}] + [{**small, "seed": s} for s in (1, 2)], "seq_len": 32,
            "batch_tokens": 128, "eval_tokens": 256, "target": "memory_limited:train",
            "options": {"memory_limit_mb": limit_mb},
            "limit": {"kind": "RLIMIT_AS above the worker's mapped size", "bytes": limit_mb * 2**20}}


def oom_args(ctx: Context, design: dict[str, Any]) -> list[str]:
    """The design as a list sweep through the CLI (in plan order, so the big trial starts first)."""
    trials = ",".join("{" + ",".join(f"{k}:{v}" for k, v in t.items()) + "}" for t in design["trials"])
    args = [f"model.seq_len={design['seq_len']}", f"trainer.batch_tokens={design['batch_tokens']}",
            f"trainer.eval_tokens={design['eval_tokens']}", f"trainer.target={design['target']}",
            *(f"+trainer.options.{k}={v}" for k, v in design["options"].items())]
    args += ([f"cluster.gpus_per_trial={GPU_FRACTION}", "cluster.cpus_per_trial=2"] if ctx.cuda else
             ["cluster.num_cpus=2", "cluster.cpus_per_trial=1"])
    return ["sweep=list_example", f"sweep.name={OOM_EXPERIMENT}", f"sweep.trials=[{trials}]",
            "sweep.min_tokens_per_param=0", "cluster.order=plan", "cluster.max_retries=0", "fit.bootstrap=0",
            "hparams.allow_invalid=true", *args]  # a few steps on purpose: not scaling points


DIRECT_TRIAL = """import json, sys
from trainers.api import load_trainer
config = json.load(open(sys.argv[1]))
result = load_trainer(sys.argv[3])(config, lambda metrics: None, device=sys.argv[4], threads=int(sys.argv[5]))
json.dump(result, open(sys.argv[2], "w"))
"""


def run_direct(ctx: Context, design: dict[str, Any], *, timeout: float) -> list[dict[str, Any]]:
    """Every trial of `design` at once, each in its own process with the environment Ray and the runner
    give a trial holding GPU_FRACTION of the first GPU (CUDA_VISIBLE_DEVICES, ORCH_GPU_MEMORY_FRACTION):
    the trainer's side of packing and memory shares, where the CLI cannot run."""
    folder = ctx.out / "direct"
    folder.mkdir(exist_ok=True)
    gpu = sorted(visible_gpus(max(ctx.n_gpus, 1)))[0] if ctx.cuda else None
    env = {**ctx.env, **({"CUDA_VISIBLE_DEVICES": str(gpu), devices.GPU_MEMORY_FRACTION_ENV: str(GPU_FRACTION)}
                         if ctx.cuda else {})}
    running = []
    for i, trial in enumerate(design["trials"]):
        config = {"model": {k: trial[k] for k in ("n_layer", "d_model", "n_head")} | {"seq_len": design["seq_len"]},
                  "data": {}, "trainer": {"batch_tokens": design["batch_tokens"], "eval_tokens": design["eval_tokens"],
                                          "options": design["options"]},
                  "tokens": int(trial["tokens"]), "seed": trial["seed"]}
        (folder / f"trial{i}.json").write_text(json.dumps(config))
        log = open(folder / f"trial{i}.log", "w")  # noqa: SIM115  (closed when the process ends)
        proc = subprocess.Popen([sys.executable, "-c", DIRECT_TRIAL, str(folder / f"trial{i}.json"),
                                 str(folder / f"result{i}.json"), design["target"], ctx.mode.device,
                                 "2" if ctx.cuda else "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
        running.append((i, trial, proc, log, time.time()))
    ends: dict[int, float] = {}
    stop = time.monotonic() + timeout
    while len(ends) < len(running) and time.monotonic() < stop:
        for i, _, proc, _, _ in running:
            if i not in ends and proc.poll() is not None:
                ends[i] = time.time()
        time.sleep(0.2)
    rows = []
    for i, trial, proc, log, start in running:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
        out = folder / f"result{i}.json"
        result = json.loads(out.read_text()) if out.exists() else {}
        extra = result.get("extra", {})
        rows.append({"name": f"L={trial['n_layer']} d={trial['d_model']} s={trial['seed']}",
                     "status": result.get("status", f"no result (exit {proc.returncode})"),
                     "device": result.get("device"), "reason": result.get("reason"),
                     "n_params": float(extra.get("n_params") or 12 * trial["n_layer"] * trial["d_model"] ** 2),
                     "tokens": float(trial["tokens"]), "start": start, "end": ends.get(i, time.time()),
                     "final_eval_loss": result.get("final_eval_loss"),
                     "flops": result.get("flops"), "wall_s": result.get("wall_s"),
                     **{k: extra.get(k) for k in METRICS if k in extra}})
    for row in rows:
        for key in METRICS:
            row.setdefault(key, None)
    return rows


def oom_step(ctx: Context, allowance: float) -> dict[str, Any]:
    design = oom_design(ctx)
    missing = missing_packages()
    if missing is None:
        path = "the CLI on Ray, recorded in MLflow"
        cli = run_cli(ctx, oom_args(ctx, design), timeout=allowance - 5, log="oom_cli")
        trials = read_trials(ctx.out / "mlflow.db", OOM_EXPERIMENT)
    else:  # still prove the trainer's side on this machine
        path = f"trainer processes without Ray ({missing['error'].split(';')[0]})"
        cli = {"command": ["(direct)"], "exit_code": None}
        trials = run_direct(ctx, design, timeout=allowance - 5)
    big = [t for t in trials if t["n_params"] == max((u["n_params"] for u in trials), default=0)]
    others = [t for t in trials if t not in big]
    oom_end = max((t["end"] for t in big), default=math.inf)
    section = {**cli, "path": path, "limit": design["limit"], "big_model": design["trials"][0], "trials": trials,
               "oom_trial": big[0] if big else None, "max_concurrent": max_overlap(trials),
               "trials_started_after_the_oom": sum(t["start"] >= oom_end for t in others)}
    section["checks"] = {
        "the big trial recorded as oom, once": len(big) == 1 and big[0]["status"] == "oom",
        "its reason is an allocation failure": bool(big) and any(
            text in (big[0]["reason"] or "") for text in devices.OOM_MESSAGES),
        "the others finished": bool(others) and all(t["status"] == "finished" for t in others),
    }
    if missing is None:
        section["checks"]["CLI exit code 0 (the sweep went on)"] = cli["exit_code"] == 0
    if ctx.cuda:
        section["checks"][f"the others held to {GPU_FRACTION} of the GPU's memory"] = all(
            t["gpu_memory_fraction"] == GPU_FRACTION for t in others)
    return section


# -- output -------------------------------------------------------------------------------------------
def fmt(x: Any, spec: str = ".3g", scale: float = 1.0, suffix: str = "") -> str:
    return f"{x * scale:{spec}}{suffix}" if finite(x) else "-"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [f"# GPU check: {meta['device']} ({meta['gpu_name']}), torch {meta['torch']}", "",
             f"{'smoke mode, ' if meta['smoke'] else ''}budget {meta['budget_s']:.0f} s, took {meta['wall_s']:.0f} s; "
             f"torch.compile cache: `{meta['compile_cache']}`", "",
             "| step | status | figures | wall |", "|---|---|---|---|"]
    tp, sw, oom, wk = (results.get(k, {}) for k in ("throughput", "sweep", "oom", "workers"))
    lines.append(f"| 1. throughput | {tp.get('status', '-')} | best MFU {fmt(tp.get('best_mfu'), '.1f', 100, '%')} "
                 f"| {fmt(tp.get('wall_s'), '.0f', 1, ' s')} |")
    lines.append(f"| 2. IsoFLOP sweep on Ray | {sw.get('status', '-')} | {sw.get('n_finished', '-')}/"
                 f"{sw.get('n_trials', '-')} finished, slots busy {fmt(sw.get('slot_utilisation'), '.0f', 100, '%')}, "
                 f"GPU busy {fmt((sw.get('gpu_busy') or {}).get('mean'), '.0f', 100, '%')}, sweep MFU "
                 f"{fmt(sw.get('sweep_mfu'), '.1f', 100, '%')} | {fmt(sw.get('wall_s'), '.0f', 1, ' s')} |")
    big = oom.get("oom_trial") or {}
    lines.append(f"| 3. OOM | {oom.get('status', '-')} | big trial: {big.get('status', '-')} | "
                 f"{fmt(oom.get('wall_s'), '.0f', 1, ' s')} |")
    err = wk.get("eta_error")
    lines.append(f"| 4. workers | {wk.get('status', '-')} | one trial on {wk.get('workers', '-')} workers (Ray Train); "
                 f"ETA error {'-' if err is None else f'{100 * err:+.0f}%'} | "
                 f"{fmt(wk.get('wall_s'), '.0f', 1, ' s')} |")
    for name, section in (("throughput", tp), ("sweep", sw), ("oom", oom), ("workers", wk)):
        failed = [k for k, ok in section.get("checks", {}).items() if not ok]
        if section.get("error") or failed:
            lines.append(f"\n**{name}**: " + (section.get("error") or "failed checks: " + "; ".join(failed)))
    if tp.get("rows"):
        peaks = tp["peaks"]
        lines += ["", "## 1. Throughput", "",
                  f"matmul peak: bf16 {fmt(peaks.get('bf16'), '.1f', 1e-12)} TFLOP/s, fp32 (no TF32) "
                  f"{fmt(peaks.get('fp32'), '.1f', 1e-12)} TFLOP/s; MFU is against {tp['datasheet_source']} "
                  f"({fmt(tp['datasheet_peak'], '.1f', 1e-12)} TFLOP/s) and, second, the measured "
                  f"{tp['dtype']} peak.", "",
                  "| L x d | N | compiled | tokens/s | TFLOP/s | MFU | MFU of measured peak | GPU mem GB | wall "
                  "| note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in tp["rows"]:
            lines.append(f"| {r['n_layer']} x {r['d_model']} | {fmt(r.get('n_params'), '.1f', 1e-6, 'M')} | "
                         f"{'yes' if r['compile'] else 'no'} | {fmt(r.get('tokens_per_s'), ',.0f')} | "
                         f"{fmt(r.get('flops_per_s'), '.2f', 1e-12)} | {fmt(r.get('mfu'), '.1f', 100, '%')} | "
                         f"{fmt(r.get('mfu_measured_peak'), '.1f', 100, '%')} | {fmt(r.get('max_memory_gb'), '.1f')} | "
                         f"{fmt(r.get('wall_s'), '.0f', 1, ' s')} | {r.get('error', '')} |")
    for title, section in (("## 2. IsoFLOP sweep", sw), ("## 3. OOM sweep", oom)):
        if not section.get("trials"):
            continue
        if section.get("exit_code") is None:  # no CLI: trainer processes
            lines += ["", title, "", f"run as {section['path']}", ""]
        else:
            interrupted = " (timed out: interrupted)" if section.get("timed_out") else ""
            lines += ["", title, "", f"`python -m orchestrator {' '.join(section['command'])}` -> exit "
                      f"{section['exit_code']}{interrupted}", ""]
        if title.startswith("## 2"):
            lines += [f"max concurrent trials {section['max_concurrent']} on {section['sizing']['slots']} slots; "
                      f"GPUs used {section['gpus_used'] or '-'}; sweep wall {fmt(section['sweep_wall_s'], '.0f')} s",
                      ""]
        lines += ["| trial | N | D | status | device | GPU | eval loss | tokens/s | MFU | wall | reason |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in section["trials"]:
            lines.append(f"| {t['name']} | {fmt(t['n_params'], '.3g')} | {fmt(t['tokens'], '.3g')} | {t['status']} | "
                         f"{t['device']} | {fmt(t['gpu_physical_index'], '.0f')} | "
                         f"{fmt(t['final_eval_loss'], '.3f')} | "
                         f"{fmt(t['tokens_per_s'], ',.0f')} | {fmt(t['mfu'], '.1f', 100, '%')} | "
                         f"{fmt(t['wall_s'], '.1f', 1, ' s')} | {(t['reason'] or '')[:120]} |")
    return "\n".join(lines) + "\n"


def environment(compile_cache: Path) -> dict[str, str]:
    """The CLI's environment: the repo and this folder importable (the CPU memory-limit trainer), and
    torch.compile's caches in one stated place (local Ray workers inherit it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "TORCHINDUCTOR_CACHE_DIR": str(compile_cache), "TRITON_CACHE_DIR": str(compile_cache / "triton")}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = env["TORCHINDUCTOR_CACHE_DIR"]
    os.environ["TRITON_CACHE_DIR"] = env["TRITON_CACHE_DIR"]
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Writes OUT/results.json and OUT/results.md.")
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (2-3 minutes on 2 cores)")
    parser.add_argument("--budget-s", type=float, default=None, help="overall time budget (default 420; smoke 300)")
    parser.add_argument("--compile-cache", help="torch.compile cache folder (default OUT/torch_compile_cache)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty: give a new folder, so that the store holds this run only.")
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        parser.error("torch sees no CUDA device: run with --smoke for the CPU version of the check.")
    budget = args.budget_s if args.budget_s is not None else (300.0 if args.smoke else 420.0)
    if not budget > 0:
        parser.error(f"--budget-s {args.budget_s} is invalid: it must be a positive number of seconds.")
    out.mkdir(parents=True, exist_ok=True)
    compile_cache = Path(args.compile_cache).resolve() if args.compile_cache else out / "torch_compile_cache"
    started, wall0 = time.time(), time.monotonic()
    ctx = Context(out=out, mode=GPU if cuda else SMOKE, smoke=args.smoke, deadline=wall0 + budget,
                  env=environment(compile_cache))
    if cuda:  # the first CUDA calls: a broken driver fails here, and every step records it
        with contextlib.suppress(Exception):
            ctx.n_gpus = torch.cuda.device_count()
            ctx.gpu_name = torch.cuda.get_device_name(0)
            ctx.gpu_memory_bytes = torch.cuda.get_device_properties(0).total_memory
    if missing_packages() is not None:
        ctx.shares = dict(SHARES_WITHOUT_CLI)
    torch.set_num_threads(ctx.mode.threads)
    meta = {"device": ctx.mode.device, "gpu_name": ctx.gpu_name, "gpu_count": ctx.n_gpus,
            "gpu_memory_gb": ctx.gpu_memory_bytes / 2**30, "torch": torch.__version__,
            "cuda": torch.version.cuda, "smoke": args.smoke, "budget_s": budget, "started": started,
            "compile_cache": str(compile_cache), "out": str(out)}
    try:
        guarded(ctx, "throughput", throughput_step)
        guarded(ctx, "sweep", sweep_step)
        guarded(ctx, "oom", oom_step)
        guarded(ctx, "workers", workers_step)
    finally:
        results = {"meta": {**meta, "wall_s": time.monotonic() - wall0}, **ctx.results}
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        text = markdown(results)
        (out / "results.md").write_text(text)
        print("\n" + text)
    return 0 if all(ctx.results.get(k, {}).get("status") == "passed" for k in STEP_SHARES) else 1


if __name__ == "__main__":
    sys.exit(main())
