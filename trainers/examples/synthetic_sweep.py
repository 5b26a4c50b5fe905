"""A small scaling sweep of the GPT trainer on the synthetic language, without the orchestrator.

    python -m trainers.examples.synthetic_sweep            # 3 sizes x 3 token counts, 2e13 FLOPs
    python -m trainers.examples.synthetic_sweep --smoke    # seconds

It shows that on the default language, at CPU scale, the held-out loss falls with both the model size
N and the tokens D and stays clearly above the language's exact loss floor (its numbers are in
`trainers/README_results.md`). Every trial runs through the same contract a sweep uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from trainers.config import DataConfig
from trainers.gpt import train

SHAPES = [  # (n_layer, d_model, n_head): about 25k, 120k and 640k parameters at vocab 256
    (1, 32, 1),
    (2, 64, 2),
    (3, 128, 4),
]
TOKENS = [2**19, 2**20, 2**21]
SEQ_LEN = 128


def trial_config(shape: tuple[int, int, int], tokens: int, *, seed: int = 0, seq_len: int = SEQ_LEN,
                 eval_tokens: int = 65536) -> dict:
    n_layer, d_model, n_head = shape
    return {
        "model": {"n_layer": n_layer, "d_model": d_model, "n_head": n_head, "seq_len": seq_len},
        "data": dataclasses.asdict(DataConfig()),
        "trainer": {"lr": 3e-3, "batch_tokens": 4096, "eval_tokens": eval_tokens, "eval_interval_tokens": tokens // 4},
        "tokens": tokens,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two tiny trials, for tests")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        grid = [((1, 16, 1), 4096), ((1, 32, 1), 4096)]
        kwargs = dict(seq_len=32, eval_tokens=1024)
    else:
        grid = [(shape, tokens) for shape in SHAPES for tokens in TOKENS]
        kwargs = {}
    rows = []
    for shape, tokens in grid:
        start = time.perf_counter()
        result = train(trial_config(shape, tokens, **kwargs), lambda metrics: None, threads=args.threads)
        extra = result["extra"]
        rows.append({
            "n_layer": shape[0], "d_model": shape[1], "n_params": extra["n_params"], "tokens": tokens,
            "eval_loss": result["final_eval_loss"], "eval_loss_se": result["eval_loss_se"],
            "entropy_floor": extra["entropy_floor"], "entropy_floor_se": extra["entropy_floor_se"],
            "unigram_entropy": extra["unigram_entropy"], "flops": result["flops"],
            "tokens_per_s": round(extra["tokens_per_s"]),
            "wall_s": round(time.perf_counter() - start, 1),
        })
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
