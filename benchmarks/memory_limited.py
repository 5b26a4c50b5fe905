"""A plug-in trainer: the GPT trainer under a per-trial memory limit on the CPU (benchmarks only).

`trainer.options.memory_limit_mb` MiB of address space above what the worker process already maps
(RLIMIT_AS): an allocation that crosses it fails inside torch's CPU allocator with its real "can't
allocate memory" error, so a model too big for the limit ends as `oom` through the trainer's own
out-of-memory path (`gpu_check.py` step 3). The previous limit is restored afterwards, since Ray
reuses CPU workers. Not for CUDA, whose driver reserves huge virtual address ranges: there the
runner's GPU memory share (ORCH_GPU_MEMORY_FRACTION) is the limit, and this passes straight through.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any


def mapped_bytes() -> int:
    """The process's current address-space size (VmSize), which RLIMIT_AS bounds."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmSize is missing from /proc/self/status")


def train(config: dict[str, Any], report, *, run_dir: str | None = None, device: str = "cpu",
          threads: int = 1) -> dict[str, Any]:
    from trainers.gpt import train as gpt_train

    limit_mb = float(config["trainer"].get("options", {}).get("memory_limit_mb", 0))
    if device != "cpu" or limit_mb <= 0:
        return gpt_train(config, report, run_dir=run_dir, device=device, threads=threads)
    previous = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped_bytes() + int(limit_mb * 2**20)
    if previous[1] != resource.RLIM_INFINITY:
        limit = min(limit, previous[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, previous[1]))
    try:
        return gpt_train(config, report, run_dir=run_dir, device=device, threads=threads)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, previous)
