"""An example plug-in trainer: an MLP student learning a random MLP teacher (a regression task).

Run it in a sweep with `trainer.target=trainers.examples.mlp:train`. It shows the whole contract a
user's own trainer has to meet: read what it needs from the trial config, call `report` with
`step`, `tokens`, `flops`, `train_loss` (and `eval_loss` on evaluations), return a `TrialResult` dict.

What it reads: `model.d_model` (hidden width) and `model.n_layer` (hidden layers) shape the student;
`tokens` is the number of training examples; `trainer.lr` and `trainer.batch_tokens` (here: examples
per step) drive Adam; `seed` fixes the teacher-independent parts (init, data order). The teacher is
fixed (seed 0), with label noise of standard deviation `NOISE`, so the irreducible loss (MSE) is
NOISE^2 and scaling the student's width or the examples lowers the loss towards it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from torch import nn

from trainers.api import DIVERGED, FINISHED, Report, TrialResult

IN_DIM, TEACHER_WIDTH, NOISE, EVAL_EXAMPLES = 16, 64, 0.1, 4096


def _mlp(width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = IN_DIM
    for _ in range(depth):
        layers += [nn.Linear(dim, width), nn.Tanh()]
        dim = width
    return nn.Sequential(*layers, nn.Linear(dim, 1))


def _examples(teacher: nn.Module, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, IN_DIM, generator=generator)  # (n, IN_DIM)
    with torch.no_grad():
        y = teacher(x) + NOISE * torch.randn(n, 1, generator=generator)  # (n, 1)
    return x, y


def train(config: dict[str, Any], report: Report, *, run_dir: str | None = None,  # noqa: ARG001 (the contract)
          device: str = "cpu", threads: int = 1) -> dict[str, Any]:  # noqa: ARG001
    """Train the student on `config["tokens"]` examples; returns a TrialResult dict."""
    start = time.perf_counter()
    torch.set_num_threads(threads)
    model_cfg, trainer_cfg = config.get("model", {}), config.get("trainer", {})
    width, depth = int(model_cfg.get("d_model", 64)), int(model_cfg.get("n_layer", 2))
    examples, seed = int(config["tokens"]), int(config["seed"])
    lr, batch = float(trainer_cfg.get("lr", 3e-3)), int(trainer_cfg.get("batch_tokens", 256))
    if examples < 1 or batch < 1:
        raise ValueError(f"tokens={examples} and trainer.batch_tokens={batch} must be positive.")

    torch.manual_seed(0)
    teacher = _mlp(TEACHER_WIDTH, 2)
    for p in teacher.parameters():
        nn.init.normal_(p, std=1.0 / math.sqrt(p.shape[-1]))
    eval_x, eval_y = _examples(teacher, EVAL_EXAMPLES, torch.Generator().manual_seed(1))  # held out: its own seed
    torch.manual_seed(seed)
    student = _mlp(width, depth)
    n_params = sum(p.numel() for p in student.parameters())
    flops_per_example = 6 * n_params  # forward 2N + backward 4N (Kaplan et al. 2020, Sec. 2.1)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    data = torch.Generator().manual_seed(10_000 + seed)  # training stream: disjoint from the eval seed

    done, step, loss = 0, 0, float("nan")
    steps = math.ceil(examples / batch)
    eval_every = max(steps // 5, 1)
    while done < examples:
        x, y = _examples(teacher, min(batch, examples - done), data)
        loss_t = nn.functional.mse_loss(student(x), y)
        loss = loss_t.item()
        if not math.isfinite(loss):
            return dataclasses.asdict(TrialResult(status=DIVERGED, reason=f"loss is {loss} at step {step + 1}",
                                                  tokens=done, steps=step, flops=float(done * flops_per_example)))
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        opt.step()
        done, step = done + x.size(0), step + 1
        metrics = {"step": step, "tokens": done, "flops": float(done * flops_per_example), "train_loss": loss}
        if step % eval_every == 0 or done == examples:
            with torch.no_grad():
                errors = (student(eval_x) - eval_y).pow(2).squeeze(1)  # (EVAL_EXAMPLES,)
            eval_loss, eval_se = errors.mean().item(), errors.std().item() / math.sqrt(EVAL_EXAMPLES)
            metrics.update(eval_loss=eval_loss, eval_loss_se=eval_se)
            report(metrics)
    return dataclasses.asdict(TrialResult(
        status=FINISHED, final_train_loss=loss, final_eval_loss=eval_loss, eval_loss_se=eval_se, tokens=done,
        flops=float(done * flops_per_example), steps=step, wall_s=time.perf_counter() - start,
        extra={"n_params": n_params, "entropy_floor": NOISE**2},
    ))
