"""The device a trial runs on: which one, at what precision, its peak FLOP/s, and what an OOM looks like.

MFU (model FLOPs utilisation; Chowdhery et al. 2022, PaLM, App. B) is achieved model FLOP/s over a
stated peak. The peak comes from the environment variable `ORCH_PEAK_FLOPS` when set (the honest
choice: the matmul peak `benchmarks/trainer_throughput.py` measures on this machine), else from a
per-device default below; the trial records which it used.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

PEAK_FLOPS_ENV = "ORCH_PEAK_FLOPS"
CPU_PEAK_FLOPS_PER_THREAD = 190e9
"""Default CPU peak per torch thread (FLOP/s) when ORCH_PEAK_FLOPS is unset: the fp32 matmul peak
measured on the 2-core development machine (about 380 GFLOP/s on 2 threads), so a 1-thread trial is
compared with one core's peak."""
CUDA_BF16_PEAK_FLOPS = {
    # Dense bf16 tensor-core peaks from the vendors' datasheets (no sparsity).
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
}
"""fp32 on CUDA runs matmuls as TF32, whose dense peak is half the bf16 one on these parts."""


@dataclass(frozen=True)
class Runtime:
    """Where and how a trial computes."""

    device: torch.device
    dtype: str
    """fp32 or bf16 (bf16 = autocast: fp32 master weights, bf16 matmuls)."""
    peak_flops: float
    peak_source: str
    """Where peak_flops came from: the env variable, a datasheet entry, or the CPU default."""

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def resolve(device: str, *, dtype: str, threads: int) -> Runtime:
    """The trial's runtime. `device` is cpu, cuda[:i] or auto (CUDA when present); `dtype` auto means
    bf16 autocast on CUDA and fp32 on CPU. Sets torch's intra-op thread count to `threads`."""
    if threads < 1:
        raise ValueError(f"threads={threads} is invalid: it must be a positive integer.")
    torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is unsupported: allowed are cpu, cuda, cuda:<i>, auto.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but torch sees no CUDA device.")
    resolved = dtype if dtype != "auto" else ("bf16" if dev.type == "cuda" else "fp32")
    if dev.type == "cuda":
        # TF32 matmuls for the fp32 parts (Ampere and later); bf16 autocast covers the rest.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, source = _peak_flops(dev, resolved)
    return Runtime(device=dev, dtype=resolved, peak_flops=peak, peak_source=source)


def _peak_flops(dev: torch.device, dtype: str) -> tuple[float, str]:
    env = os.environ.get(PEAK_FLOPS_ENV)
    if env:
        try:
            return float(env), f"env {PEAK_FLOPS_ENV}"
        except ValueError:
            raise ValueError(f"{PEAK_FLOPS_ENV}={env!r} is invalid: it must be a number of FLOP/s.") from None
    if dev.type == "cpu":
        threads = torch.get_num_threads()
        return CPU_PEAK_FLOPS_PER_THREAD * threads, f"CPU default ({threads} thread(s) x 190 GFLOP/s)"
    name = torch.cuda.get_device_name(dev)
    for key, bf16_peak in CUDA_BF16_PEAK_FLOPS.items():
        if key in name:
            return (bf16_peak if dtype == "bf16" else bf16_peak / 2), f"datasheet {key} {dtype}"
    # An unknown GPU: the H100 figure keeps MFU defined; set ORCH_PEAK_FLOPS for a true one.
    return CUDA_BF16_PEAK_FLOPS["H100"], f"unknown GPU {name!r}: H100 bf16 assumed"


def is_oom(err: BaseException) -> bool:
    """An out-of-memory failure: CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and ("out of memory" in str(err) or "can't allocate memory" in str(err))


def synchronize(dev: torch.device) -> None:
    """Wait for queued kernels, so wall-clock timings measure the work (no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
