"""The device a trial runs on: which one, at what precision, its peak FLOP/s, and what an OOM looks like.

MFU (model FLOPs utilisation; Chowdhery et al. 2022, PaLM, App. B) is achieved model FLOP/s over a
stated peak. The peak comes from the environment variable `ORCH_PEAK_FLOPS` when set (the honest
choice: the matmul peak `benchmarks/trainer_throughput.py` measures on this machine), else from a
per-device default below; the trial records which it used.

On CUDA, `cuda` means the first device the process can see. Under Ray that is the GPU Ray assigned
to the task: Ray sets `CUDA_VISIBLE_DEVICES` for every task that asks for GPUs, fractions included,
and the runner gives each GPU trial a fresh worker process, so no CUDA context from an earlier task
pins another GPU. A trial that shares a GPU (`cluster.gpus_per_trial` < 1) is held to its share of
the GPU's memory (`ORCH_GPU_MEMORY_FRACTION`, set by the runner), so a model that does not fit ends
as `oom` in its own trial instead of starving its neighbours.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

PEAK_FLOPS_ENV = "ORCH_PEAK_FLOPS"
GPU_MEMORY_FRACTION_ENV = "ORCH_GPU_MEMORY_FRACTION"
"""Share of the GPU's memory this process may allocate (0 < f <= 1): `cluster.gpus_per_trial` when
the runner packs several trials onto one GPU (torch.cuda.set_per_process_memory_fraction)."""
CPU_PEAK_FLOPS_PER_THREAD = 190e9
"""Default CPU peak per torch thread (FLOP/s) when ORCH_PEAK_FLOPS is unset: the fp32 matmul peak
measured on the 2-core development machine (about 380 GFLOP/s on 2 threads), so a 1-thread trial is
compared with one core's peak."""
CUDA_BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    # Dense bf16 tensor-core peaks (no 2:4 sparsity: half the datasheets' "with sparsity" figures),
    # matched against torch.cuda.get_device_name in this order, the more specific names first.
    ("H100 PCIe", 756e12),  # H100 PCIe datasheet: 1,513 TFLOPS with sparsity
    ("H100 NVL", 835e12),  # H100 NVL datasheet: 1,671 TFLOPS with sparsity
    ("H200 NVL", 835e12),  # H200 NVL datasheet: 1,671 TFLOPS with sparsity
    ("H100", 989e12),  # H100 SXM5 ("NVIDIA H100 80GB HBM3"): 1,979 with sparsity; 989.4 dense
    ("H200", 989e12),  # H200 SXM (and GH200): the H100 SXM's compute with HBM3e; 1,979 with sparsity
    ("A100", 312e12),  # A100 SXM4 and PCIe, 40 and 80 GB alike: 624 with sparsity
    ("L40S", 362e12),  # L40S datasheet: 733 with sparsity
    ("L40", 181e12),  # L40 datasheet: 362 with sparsity
    ("L4", 121e12),  # L4 datasheet: 242 with sparsity
    ("A10G", 70e12),  # AWS's A10 variant: no NVIDIA datasheet; the commonly quoted figure
    ("RTX 4090", 165e12),  # GeForce: bf16 with fp32 accumulation runs at half the fp16-accumulate rate
)
"""fp32 on CUDA runs matmuls as TF32, whose dense peak is half the bf16 one on these parts."""
UNKNOWN_GPU_PEAK = 989e12
"""An unlisted GPU: the H100 SXM figure keeps MFU defined; set ORCH_PEAK_FLOPS for a true one."""


@dataclass(frozen=True)
class Runtime:
    """Where and how a trial computes."""

    device: torch.device
    """cpu, or cuda:<i> with the index explicit (0 is the first GPU this process sees)."""
    dtype: str
    """fp32 or bf16 (bf16 = autocast: fp32 master weights, bf16 matmuls)."""
    peak_flops: float
    peak_source: str
    """Where peak_flops came from: the env variable, a datasheet entry, or the CPU default."""
    name: str = "cpu"
    """The GPU's name as CUDA reports it (cpu on CPU)."""
    memory_fraction: float = 1.0
    """Share of the GPU's memory the trial may allocate (1: all of it)."""

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def gpu_numbers(self) -> dict[str, float]:
        """What a CUDA trial records about its GPU (numbers, so the tracker logs them as metrics): the
        physical index Ray assigned, how many GPUs the process sees, the memory share, and the peak
        memory the trial allocated."""
        if self.device.type != "cuda":
            return {}
        out = {"gpu_memory_fraction": self.memory_fraction, "gpu_visible_count": float(torch.cuda.device_count()),
               "gpu_memory_total_gb": torch.cuda.get_device_properties(self.device).total_memory / 2**30,
               "gpu_max_memory_allocated_gb": torch.cuda.max_memory_allocated(self.device) / 2**30}
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        index = self.device.index or 0
        if index < len(visible) and visible[index].strip().isdigit():
            out["gpu_physical_index"] = float(visible[index])
        return out


def resolve(device: str, *, dtype: str, threads: int) -> Runtime:
    """The trial's runtime. `device` is cpu, cuda[:i] or auto (CUDA when present); `dtype` auto means
    bf16 autocast on CUDA and fp32 on CPU. Sets torch's intra-op thread count to `threads`; on CUDA,
    makes the device current and applies the memory share of `ORCH_GPU_MEMORY_FRACTION`."""
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
    if dev.type == "cpu":
        peak, source = _peak_flops(None, resolved)
        return Runtime(device=dev, dtype=resolved, peak_flops=peak, peak_source=source)
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} is not visible: this process sees {torch.cuda.device_count()} GPU(s) "
                         f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}).")
    # The current device is where index-less allocations land (the loader thread's pinned buffers too).
    torch.cuda.set_device(dev)
    # TF32 matmuls for the fp32 parts (Ampere and later); bf16 autocast covers the rest.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    fraction = memory_fraction()
    if fraction < 1.0:
        torch.cuda.set_per_process_memory_fraction(fraction, dev)
    name = torch.cuda.get_device_name(dev)
    peak, source = _peak_flops(name, resolved)
    return Runtime(device=dev, dtype=resolved, peak_flops=peak, peak_source=source, name=name,
                   memory_fraction=fraction)


def memory_fraction() -> float:
    """The GPU memory share from ORCH_GPU_MEMORY_FRACTION (1.0 when unset)."""
    env = os.environ.get(GPU_MEMORY_FRACTION_ENV)
    if not env:
        return 1.0
    try:
        fraction = float(env)
    except ValueError:
        fraction = float("nan")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{GPU_MEMORY_FRACTION_ENV}={env!r} is invalid: it must be a number in (0, 1].")
    return fraction


def datasheet_peak(name: str, dtype: str) -> tuple[float, str]:
    """Dense peak FLOP/s of the GPU called `name` (as torch.cuda.get_device_name reports it) in
    `dtype` (bf16, or fp32 = TF32 at half the bf16 rate), and where the figure came from."""
    for key, bf16_peak in CUDA_BF16_PEAK_FLOPS:
        if key in name:
            return (bf16_peak if dtype == "bf16" else bf16_peak / 2), f"datasheet {key} {dtype} dense"
    peak = UNKNOWN_GPU_PEAK if dtype == "bf16" else UNKNOWN_GPU_PEAK / 2
    return peak, f"unknown GPU {name!r}: H100 SXM {dtype} assumed"


def _peak_flops(gpu_name: str | None, dtype: str) -> tuple[float, str]:
    env = os.environ.get(PEAK_FLOPS_ENV)
    if env:
        try:
            return float(env), f"env {PEAK_FLOPS_ENV}"
        except ValueError:
            raise ValueError(f"{PEAK_FLOPS_ENV}={env!r} is invalid: it must be a number of FLOP/s.") from None
    if gpu_name is None:
        threads = torch.get_num_threads()
        return CPU_PEAK_FLOPS_PER_THREAD * threads, f"CPU default ({threads} thread(s) x 190 GFLOP/s)"
    return datasheet_peak(gpu_name, dtype)


OOM_MESSAGES = ("out of memory", "can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED")
"""Out-of-memory as RuntimeError text: CUDA's and the CPU allocator's (DefaultCPUAllocator), and
cuBLAS failing to allocate its workspace on a full GPU."""


def is_oom(err: BaseException) -> bool:
    """An out-of-memory failure: CUDA's OutOfMemoryError, MemoryError, or an allocator's RuntimeError."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in OOM_MESSAGES)


def synchronize(dev: torch.device) -> None:
    """Wait for queued kernels, so wall-clock timings measure the work (no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
