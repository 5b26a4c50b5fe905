"""The measurements behind conf/hparams/cpu.yaml and the demo sweep's centre: GPT trials on the synthetic
language on this machine, two single-thread trials at a time, each trained exactly as a sweep trains it.

Four small experiments, each printed as a table (losses are final held-out losses, +- their standard error):
1. steps at a fixed token count D: the same model and D with 4x, 2x and 1x batches (fewer and more steps);
   how much worse a run with fewer steps ends is what `min_steps` is about;
2. learning rate at two batch sizes (the best rate grows with the batch);
3. warmup length in steps (what `min_warmup_steps` is about);
4. an IsoFLOP pilot at two budgets with the rules on: where the loss minimum lies, in tokens per parameter
   (the demo's `centre_tokens_per_param`).

    python benchmarks/cpu_rules.py            # about 25 minutes on 2 cores
    python benchmarks/cpu_rules.py --smoke    # seconds: tiny models, tiny D
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainers.accounting import train_flops_per_token
from orchestrator.planner import resolve_shape
from trainers.config import DataConfig, ModelConfig

SEQ = 128
MODEL = ModelConfig(n_layer=2, d_model=64, n_head=8, seq_len=SEQ, head_dim=8, aspect_ratio=16)
LANGUAGE = {"n_topics": 4, "n_states": 32}  # the demo's language (conf/sweep/cpu_small.yaml)


def rules(D: int) -> tuple[int, float, int]:
    """The cpu.yaml rules: batch ~D/1024 as a power-of-two number of sequences in [512, 8192], lr = 1e-5 sqrt(D)
    clipped to [3e-3, 3e-2], warmup 5% of D."""
    sequences = max(D / 1024 / SEQ, 1.0)
    batch = int(min(max(SEQ * 2 ** round(math.log2(sequences)), 512), 8192))
    return batch, min(max(1e-5 * math.sqrt(D), 3e-3), 3e-2), int(0.05 * D)


def trial(size: float, *, D: int | None = None, C: float | None = None, lr: float | None = None,
          batch: int | None = None, warmup: int | None = None, eval_tokens: int = 131072) -> dict:
    shape = resolve_shape(size, model=MODEL, vocab_size=256)
    if D is None:
        D = max(SEQ, round(C / train_flops_per_token(shape, vocab_size=256) / SEQ) * SEQ)
    rb, rlr, rw = rules(D)
    model = {k: v for k, v in dataclasses.asdict(shape).items() if k not in ("aspect_ratio", "head_dim")}
    return {"model": model, "data": {**dataclasses.asdict(DataConfig()), **LANGUAGE},
            "trainer": {"lr": rlr if lr is None else lr, "batch_tokens": rb if batch is None else batch,
                        "warmup_tokens": rw if warmup is None else warmup, "eval_tokens": eval_tokens,
                        "evals_per_run": 1},
            "tokens": D, "seed": 0}


def run(config: dict) -> dict:
    from trainers.gpt import train

    t0 = time.perf_counter()
    r = train(config, lambda metrics: None, threads=1)
    m = config["model"]
    return {"shape": f"{m['n_layer']}x{m['d_model']}", "N": r["extra"]["n_params"], "D": config["tokens"],
            "batch": config["trainer"]["batch_tokens"], "lr": config["trainer"]["lr"], "steps": r["steps"],
            "warmup_steps": config["trainer"]["warmup_tokens"] / config["trainer"]["batch_tokens"],
            "loss": r["final_eval_loss"], "se": r["eval_loss_se"], "floor": r["extra"].get("entropy_floor"),
            "seconds": time.perf_counter() - t0}


def table(title: str, rows: list[dict], columns: tuple[str, ...]) -> None:
    print(f"\n{title}")
    print("  " + "  ".join(f"{c:>10}" for c in columns) + "        loss")
    for r in rows:
        cells = "  ".join(f"{r[c]:>10.4g}" if isinstance(r[c], float) else f"{r[c]:>10}" for c in columns)
        print(f"  {cells}   {r['loss']:.4f} +- {r['se']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        size, D, budgets, pilot = 5e3, 64 * SEQ * 4, (3e8,), (5e3, 1e4, 2e4)
        batches, lrs, warmups, eval_tokens = (4 * SEQ, 2 * SEQ), (3e-3, 1e-2), (SEQ, 4 * SEQ), 4 * SEQ
    else:
        size, D, budgets, pilot = 2.3e4, 1_500_032, (2.6e11, 7.8e11), (9e3, 1.6e4, 2.3e4, 3.7e4, 5.4e4)
        batches, lrs, warmups, eval_tokens = (4096, 2048, 1024), (5e-3, 1e-2, 2e-2), (1024, 20 * 1024, 80 * 1024), 131072
    experiments = {
        "1. steps at fixed D (same model, same tokens, larger batches = fewer steps)":
            ([trial(size, D=D, batch=b, eval_tokens=eval_tokens) for b in batches], ("shape", "D", "batch", "steps")),
        "2. learning rate at two batch sizes":
            ([trial(size, D=D, batch=b, lr=lr, eval_tokens=eval_tokens) for b in batches[-2:] for lr in lrs],
             ("shape", "batch", "lr", "steps")),
        "3. warmup length (steps of the batch)":
            ([trial(size, D=D, batch=batches[-1], warmup=w, eval_tokens=eval_tokens) for w in warmups],
             ("shape", "batch", "warmup_steps", "steps")),
        "4. IsoFLOP pilot with the rules on (where is the minimum?)":
            ([trial(s, C=c, eval_tokens=eval_tokens) for c in budgets for s in pilot], ("shape", "N", "D", "steps")),
    }
    with ProcessPoolExecutor(max_workers=2) as pool:
        for title, (configs, columns) in experiments.items():
            rows = list(pool.map(run, configs))
            table(title, rows, columns)
            if title.startswith("4."):
                for C in budgets:
                    at = [(r, cfg) for r, cfg in zip(rows, configs) if abs(r["D"] * train_flops_per_token(
                        resolve_shape(r["N"], model=MODEL, vocab_size=256), vocab_size=256) / C - 1) < 0.05]
                    if at:
                        best = min(at, key=lambda rc: rc[0]["loss"])[0]
                        print(f"  C={C:.3g}: lowest loss at N={best['N']} on D={best['D']}: "
                              f"{best['D'] / best['N']:.0f} tokens per parameter (floor {best['floor']:.4f})")
    print("\ncpu_rules: done")


if __name__ == "__main__":
    main()
