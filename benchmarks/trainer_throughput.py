"""Throughput of the GPT trainer against this machine's measured matmul peak.

    python benchmarks/trainer_throughput.py            # CPU: ~2 minutes on 2 threads
    python benchmarks/trainer_throughput.py --smoke    # seconds (tests run it)
    python benchmarks/trainer_throughput.py --device cuda [--compile]

In one process, on one machine: (1) the dense matmul peak in fp32 and bf16 (best of repeated square
matmuls, 2 n^3 FLOPs each), (2) the trainer's tokens/s and model FLOP/s for several model sizes,
running the real `trainers.gpt.train` on the synthetic language and reading the per-step numbers it
reports. Model FLOPs are the exact training count of `trainers/accounting.py` (Chinchilla App. F:
attention scores at the full context, backward = 2 x forward), so MFU = achieved / measured peak
follows PaLM's definition (Chowdhery et al. 2022, App. B). The first steps (allocation, warm caches)
are dropped and the median of the rest is reported, since a shared machine makes single steps noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from trainers.accounting import count_params
from trainers.config import ModelConfig
from trainers.gpt import train

CPU_SIZES = [(2, 128), (4, 256), (4, 384)]
"""(n_layer, d_model) at head size 64, seq_len 128, 8192 tokens per step."""
GPU_SIZES = [(6, 512), (8, 768), (12, 1024)]
"""(n_layer, d_model) at head size 64, seq_len 1024, 65536 tokens per step; 8 x 768 is 57M parameters."""


def matmul_peak(dtype: torch.dtype, *, device: str, n: int, seconds: float) -> float:
    """Best FLOP/s of (n x n) @ (n x n) over repeated trials lasting about `seconds` in all."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: library initialisation, allocation
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        reps = 10 if device != "cpu" else 1
        for _ in range(reps):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


def trainer_throughput(n_layer: int, d_model: int, *, seq_len: int, batch_tokens: int, steps: int, warmup: int,
                       device: str, threads: int, dtype: str, compile: bool, data: dict | None = None,
                       trainer: dict | None = None) -> dict:
    """Run the trainer for `steps` optimizer steps; median throughput of the steps after `warmup`.
    `data` is the trial's data section (default: the synthetic language); `trainer` adds trainer keys."""
    model = {"n_layer": n_layer, "d_model": d_model, "n_head": max(d_model // 64, 1), "seq_len": seq_len}
    data = data or {}
    config = {
        "model": model,
        "data": data,
        "trainer": {"batch_tokens": batch_tokens, "eval_tokens": seq_len, "eval_interval_tokens": 1 << 62,
                    "dtype": dtype, "compile": compile, **(trainer or {})},
        "tokens": batch_tokens * steps,
        "seed": 0,
    }
    reports: list[dict] = []
    result = train(config, reports.append, device=device, threads=threads)
    if result["status"] != "finished":
        raise RuntimeError(f"L={n_layer} d={d_model} ended {result['status']}: {result['reason']}")
    timed = [r for r in reports if r["step"] > warmup]
    assert len(timed) == steps - warmup, "the trainer reports every step of a run this short"
    return {
        "n_layer": n_layer, "d_model": d_model, "seq_len": seq_len, "batch_tokens": batch_tokens,
        "n_params": count_params(ModelConfig(**model), vocab_size=data.get("vocab_size", 256)).total,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
        "flops_per_s": statistics.median(r["flops_per_s"] for r in timed),
        "best_flops_per_s": max(r["flops_per_s"] for r in timed),
        "device": result["device"], "dtype": result["dtype"], "compile": compile, "status": result["status"],
        "peak_flops_source": result["extra"].get("peak_flops_source"), "gpu_name": result["extra"].get("gpu_name"),
        "max_memory_gb": result["extra"].get("gpu_max_memory_allocated_gb"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few steps: finishes in seconds")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per size (the first 2 are dropped)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")

    if args.smoke:
        sizes, seq_len, batch_tokens, steps, n, seconds = [(1, 32), (1, 64), (2, 64)], 32, 512, 3, 256, 0.2
    elif cuda:
        sizes, seq_len, batch_tokens, steps, n, seconds = GPU_SIZES, 1024, 65536, args.steps, 8192, 3.0
    else:
        sizes, seq_len, batch_tokens, steps, n, seconds = CPU_SIZES, 128, 8192, args.steps, 2048, 3.0
    warmup = min(2, steps - 1)

    def peak(dtype: torch.dtype) -> float:
        # bf16 is timed on a smaller matrix on CPU: without AVX512-BF16/AMX it runs at ~1 GFLOP/s.
        size = n if cuda or dtype == torch.float32 else min(n, 256)
        return matmul_peak(dtype, device=args.device, n=size, seconds=seconds)

    peaks = {"fp32": peak(torch.float32), "bf16": peak(torch.bfloat16)}
    # bf16 is benchmarked where it is faster than fp32 (it is the trainer's CUDA default).
    dtypes = ["fp32", "bf16"] if peaks["bf16"] > peaks["fp32"] else ["fp32"]
    rows = []
    for dtype in dtypes:
        for n_layer, d_model in sizes:
            rows.append(trainer_throughput(n_layer, d_model, seq_len=seq_len, batch_tokens=batch_tokens, steps=steps,
                                           warmup=warmup, device=args.device, threads=args.threads, dtype=dtype,
                                           compile=args.compile))
            print(f"  ran {dtype} L={n_layer} d={d_model}: {rows[-1]['flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)
    # Other processes can only lower a measured peak: take the better of before and after the runs.
    for dtype in dtypes:
        peaks[dtype] = max(peaks[dtype], peak(torch.float32 if dtype == "fp32" else torch.bfloat16))
    print(f"matmul peak ({args.device}, {args.threads} threads): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    for row in rows:
        row["peak_flops"] = peaks[row["dtype"]]
        row["mfu"] = row["flops_per_s"] / row["peak_flops"]
        print(f"{row['dtype']} L={row['n_layer']:<2} d={row['d_model']:<5} N={row['n_params'] / 1e6:7.2f}M  "
              f"{row['tokens_per_s']:10.0f} tokens/s  {row['flops_per_s'] / 1e9:8.1f} GFLOP/s  "
              f"MFU {100 * row['mfu']:5.1f}% of the measured {row['dtype']} peak")
    out = {"device": args.device, "threads": args.threads, "torch": torch.__version__, "peaks": peaks, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
