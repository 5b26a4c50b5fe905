"""Peak resident memory of a command's whole process tree (Linux /proc), sampled while it runs.

`run_measured(cmd)` starts the command, samples the summed RSS of it and every descendant every 0.1 s, and returns
(exit code, wall seconds, peak GB of the tree, peak GB of the largest single process per getrusage). The
getrusage figure is exact for the largest process; the sampled sum covers children (Ray workers, thread pools
live in one process and are counted once).
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of `pid` and its descendants now."""
    tree, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_bytes(p)
        todo.extend(tree.get(p, []))
    return total


def run_measured(cmd: list[str], *, cwd: str | Path, env: dict | None = None, timeout: float = 3600,
                 stdout=None, stderr=None) -> tuple[int, float, float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=stdout, stderr=stderr)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        code = proc.wait(timeout=timeout)
    finally:
        done.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
    seconds = time.perf_counter() - start
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return code, seconds, peak[0] / 2**30, largest / 2**30
