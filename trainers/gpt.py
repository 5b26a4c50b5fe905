"""The built-in GPT trainer: `train(config, report, ...)`, the contract of `trainers/api.py`.

One trial trains `trainers.model.GPT` on exactly `config["tokens"]` = D tokens:
- AdamW with decoupled weight decay on matrices only, warmup + cosine (or WSD) whose length is D
  (`trainers/schedule.py`), global gradient-norm clipping;
- a batch of `trainer.batch_tokens` per optimizer step, split into micro-batches (gradient
  accumulation) of `trainer.micro_batch_tokens`, halved automatically while a step runs out of memory;
  the last step takes only the sequences left, so training stops at exactly D;
- evaluation on the held-out split every `trainer.eval_interval_tokens` and at the end, with the
  standard error of the mean over sequences (tokens within a sequence are correlated);
- reports through the callback only (no MLflow or Ray here): step, tokens, flops (exact accounting,
  `trainers/accounting.py`), train_loss, lr, tokens_per_s, flops_per_s, mfu, and on evaluation
  steps eval_loss, eval_loss_se;
- divergence (a non-finite loss, or one above `trainer.spike_factor` x its running minimum) and
  out-of-memory end the trial as results (`diverged`, `oom`) with the reason; out of memory is a
  result wherever it strikes (building the model, a step, the optimizer's state, evaluation), so a
  size that cannot fit is recorded as `oom` and not retried as a crash;
- several workers (a trial that spans workers: orchestrator/runner/train.py starts them on Ray Train, which
  sets up torch.distributed, gloo on CPU, NCCL on GPUs): the model is wrapped in DDP, or sharded by FSDP2's
  `fully_shard` when the runner says so (`cluster.parallel=fsdp`: trainers/parallel.py); every optimizer step's
  batch is the GLOBAL batch of `trainer.batch_tokens`, rank r taking its contiguous share of the very sequences
  one worker would take (so the data order is that of one worker), each micro-batch's loss weighted by its share
  of the global batch (x world size, which the gradient mean over ranks divides out), so the gradient is the
  global batch mean's up to float summation order; the loss is summed over ranks. Every rank runs as many
  micro-batches as the largest share needs (FSDP gathers parameters in each forward: a collective). Rank 0
  reports and writes checkpoints, full-state in both modes (so a checkpoint resumes on any number of workers of
  either mode); rank 0 alone evaluates under DDP, every rank under FSDP (its forward is a collective too). Every
  rank resumes from the same checkpoint. FLOP accounting is that of the global batch;
- checkpoints to `run_dir` every `trainer.checkpoint_interval_tokens`; a restarted trial resumes there
  and reaches the same final loss as an uninterrupted one (the data stream is indexed by sequence, and
  init and data order are functions of the seed);
- a WSD trunk (`config["trunk"]`, orchestrator/forks.py): the trial of the largest D of a group that differ
  only in D, trained at the constant rate up to `trunk.stop_at` tokens; at each fork point `at` it writes
  the checkpoint that the independent run of that fork's D would hold at `at` tokens (its config, the same
  model, optimizer and counters: before its cooldown a WSD run does not depend on D) into the fork's
  folder, and reports `fork_ready` = at. The fork is then an ordinary trial that resumes from it;
- CPU by default with `threads` intra-op threads; CUDA with bf16 autocast and optional torch.compile
  (its cache is inductor's: set TORCHINDUCTOR_CACHE_DIR to keep it somewhere shared); on CUDA the
  model is built on the GPU (no host-side initialisation of a large model) and batches are staged in
  pinned memory by the loader thread; the device, precision, MFU peak and (on CUDA) the GPU's
  physical index, memory share and peak memory used are recorded in the result.

D, `trainer.batch_tokens` and `trainer.micro_batch_tokens` must be multiples of `model.seq_len`: a
training sequence is seq_len tokens (inputs x_0..x_{T-1}, targets x_1..x_T).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from trainers.accounting import count_params, train_flops_per_token
from trainers import checkpoint
from trainers import device as devices
from trainers import parallel
from trainers.api import DIVERGED, FINISHED, OOM, Report, TrialResult
from trainers.config import DataConfig, ModelConfig, TrainerConfig
from trainers.data import Source, build_source
from trainers.model import GPT
from trainers.schedule import Schedule

__all__ = ["GPT", "train"]

LOG_POINTS = 100
"""About this many train-loss reports per trial (plus one per evaluation)."""


@dataclasses.dataclass
class Counters:
    """The loop state a checkpoint must carry besides model and optimizer."""

    step: int = 0
    tokens: int = 0
    micro_seqs: int = 0
    min_loss: float = math.inf
    last_loss: float | None = None


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a multi-worker trial (rank 0 of 1 when torch.distributed is not initialised)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Ranks:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), world=dist.get_world_size())
        return cls()

    def share(self, n: int) -> tuple[int, int]:
        """(offset, count) of this rank's contiguous share of `n` sequences (the first n % world ranks take one
        more)."""
        base, extra = divmod(n, self.world)
        return self.rank * base + min(self.rank, extra), base + (self.rank < extra)


class Stop(Exception):
    """A trial ending as a result (diverged, oom), carrying its status and reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _every(interval: int, before: int, after: int) -> bool:
    """Whether a multiple of `interval` lies in (before, after]."""
    return interval > 0 and after // interval > before // interval


def _check_units(model: ModelConfig, trainer: TrainerConfig, tokens: int) -> None:
    t = model.seq_len
    for key, value in (("tokens", tokens), ("trainer.batch_tokens", trainer.batch_tokens),
                       ("trainer.micro_batch_tokens", trainer.micro_batch_tokens)):
        if value % t:
            raise ValueError(f"{key}={value} is not a multiple of model.seq_len={t}: a sequence is seq_len tokens.")
    if tokens < t:
        raise ValueError(f"tokens={tokens} is invalid: a trial needs at least one sequence (model.seq_len={t}).")


class GPTTrial:
    """One trial's model, optimizer, data and loop; `run()` returns its TrialResult."""

    def __init__(self, config: dict[str, Any], report: Report, *, run_dir: str | None, device: str,
                 threads: int) -> None:
        self.config, self.report, self.run_dir = config, report, run_dir
        self.model_cfg = ModelConfig(**config["model"])
        self.data_cfg = DataConfig(**config["data"])
        self.cfg = TrainerConfig(**config["trainer"])
        self.total, self.seed = int(config["tokens"]), int(config["seed"])
        _check_units(self.model_cfg, self.cfg, self.total)
        trunk = config.get("trunk") or {}
        self.forks = sorted((int(f["at"]), f["config"], f["dir"]) for f in trunk.get("forks", []))
        self.stop = int(trunk.get("stop_at", self.total))
        """Where training stops: D, or a trunk's last fork point."""
        self.rt = devices.resolve(device, dtype=self.cfg.dtype, threads=threads)
        self.seq_len = self.model_cfg.seq_len
        self.source: Source = build_source(self.data_cfg, seq_len=self.seq_len, seed=self.seed, tokens=self.total,
                                           eval_tokens=self.cfg.eval_tokens)
        vocab = self.data_cfg.vocab_size
        torch.manual_seed(self.seed)  # seeds the CUDA generators too
        with self.rt.device:  # parameters are allocated and initialised where they will train
            self.model = GPT(self.model_cfg, vocab_size=vocab)
        self.params = count_params(self.model_cfg, vocab_size=vocab)
        assert self.model.n_params() == self.params.total, "model and accounting disagree"
        self.flops_per_token = train_flops_per_token(self.model_cfg, vocab_size=vocab)
        self.ranks = Ranks.current()
        self.parallel = parallel.mode() if self.ranks.world > 1 else None
        """ddp or fsdp for a trial of several workers (trainers/parallel.py), None for one."""
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        if self.parallel == "ddp":  # the same init on every rank (the seed); DDP broadcasts rank 0's anyway
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model)
        elif self.parallel == "fsdp":  # each rank keeps its shard of the same init
            parallel.shard(self.model, blocks=self.model.blocks)
        self.params_held = parallel.held(self.model)
        """Parameter elements this rank holds between steps (its shards under FSDP)."""
        self.evaluates = self.ranks.rank == 0 or self.parallel == "fsdp"
        """Whether this rank evaluates: rank 0, or every rank under FSDP (its forward gathers parameters)."""
        self.compiled = torch.compile(self.ddp or self.model) if self.cfg.compile else (self.ddp or self.model)
        self.opt = torch.optim.AdamW(
            self.model.param_groups(weight_decay=self.cfg.weight_decay), lr=self.cfg.lr,
            betas=(self.cfg.beta1, self.cfg.beta2), fused=True,
        )
        self.schedule = Schedule.for_trial(
            peak=self.cfg.lr, total_tokens=self.total, warmup_tokens=self.cfg.warmup_tokens, kind=self.cfg.schedule,
            min_ratio=self.cfg.min_lr_ratio, decay_fraction=self.cfg.decay_fraction,
            cooldown_shape=self.cfg.cooldown_shape,
        )
        self.batch_seqs = self.cfg.batch_tokens // self.seq_len
        self.eval_interval = self.cfg.eval_interval_tokens or max(self.total // self.cfg.evals_per_run, 1)
        self.log_every = max(math.ceil(self.total / self.cfg.batch_tokens) // LOG_POINTS, 1)
        self.c = Counters(micro_seqs=(self.cfg.micro_batch_tokens or self.cfg.batch_tokens) // self.seq_len)
        self.resumed_from = 0
        self._val: torch.Tensor | None = None

    # -- checkpoints ---------------------------------------------------------------------------
    def restore(self) -> None:
        state = checkpoint.load(self.run_dir, config=self.config)
        if state is None:
            return
        parallel.load_full_state(self.model, self.opt, model_state=state["model"], optimizer_state=state["optimizer"])
        self.c = Counters(**state["counters"])
        self.resumed_from = self.c.tokens

    def save(self, run_dir: str | None = None, config: dict[str, Any] | None = None) -> None:
        """This trial's checkpoint, or (a trunk at a fork point) the fork's, under the fork's config: the full state
        (every rank gathers it, which FSDP's shards need; rank 0 writes it)."""
        model_state, optimizer_state = parallel.full_state(self.model, self.opt)
        if self.ranks.rank != 0:
            return
        checkpoint.save(run_dir or self.run_dir, {
            "config": config or self.config, "model": model_state, "optimizer": optimizer_state,
            "counters": dataclasses.asdict(self.c),
        })

    def fork_points(self, before: int, after: int) -> None:
        """A trunk passing fork points: write each fork's checkpoint (once), keep the trunk's own, report it."""
        passed = [(at, cfg, folder) for at, cfg, folder in self.forks if before < at <= after]
        for at, cfg, folder in passed:
            if at != after:
                raise RuntimeError(f"fork point {at} is not on a step boundary (the step ended at {after})")
            self.save(folder, cfg)
        if passed:
            if self.run_dir is not None:
                self.save()  # the trunk's progress survives a kill from here on
            self.report({"step": self.c.step, "tokens": self.c.tokens, "fork_ready": float(after)})

    # -- one optimizer step --------------------------------------------------------------------
    def _accumulate(self, batch: torch.Tensor, n: int) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches of a global batch of `n` sequences; returns the
        global batch's mean loss (0-dim tensor). Every rank runs as many micro-batches as the largest share needs:
        one with fewer (a smaller share; an empty one, in a last step of fewer sequences than ranks) runs one
        sequence at weight 0 for each it lacks, so that it still joins every collective (FSDP's parameter gathers
        in each forward and backward, the gradient reduction)."""
        m = self.c.micro_seqs
        micros = [batch[i : i + m] for i in range(0, batch.size(0), m)]  # (b, T+1) each
        largest = -(-n // self.ranks.world)  # rank 0's share: ceil(n / world)
        filler = batch[:1] if batch.size(0) else self.source.train(0, 1)
        weights = [micro.size(0) / n for micro in micros] + [0.0] * (max(-(-largest // m), 1) - len(micros))
        micros += [filler] * (len(weights) - len(micros))
        total = torch.zeros((), device=self.rt.device)
        for i, (micro, share) in enumerate(zip(micros, weights)):
            micro = micro.to(self.rt.device, non_blocking=True)  # (b, T+1)
            # Gradients are reduced across ranks on the last micro-batch's backward only (gradient accumulation).
            sync = i == len(micros) - 1
            if self.parallel == "fsdp":
                self.model.set_requires_gradient_sync(sync)
            with contextlib.nullcontext() if sync or self.ddp is None else self.ddp.no_sync(), self.rt.autocast():
                loss = self.compiled(micro[:, :-1], micro[:, 1:])
            # Weight by the micro-batch's share of the global batch so the gradient is that of the batch mean
            # (x world: DDP and FSDP average over ranks).
            (loss * (share * self.ranks.world)).backward()
            total += loss.detach() * share
        if self.ranks.world > 1:
            torch.distributed.all_reduce(total)  # sum of the ranks' shares: the global batch mean
        return total

    def fetch(self, tokens: int) -> tuple[torch.Tensor, int]:
        """This rank's share (n_r, T+1) of the batch of the step that starts after `tokens` training tokens, and
        that global batch's size n in sequences."""
        n_seqs = min(self.batch_seqs, (self.total - tokens) // self.seq_len)
        offset, count = self.ranks.share(n_seqs)
        batch = self.source.train(tokens // self.seq_len + offset, count)
        return (batch.pin_memory() if self.rt.device.type == "cuda" else batch), n_seqs

    def step(self, batch: torch.Tensor, n_seqs: int) -> float:
        """One optimizer step on `batch` (this rank's share of a global batch of `n_seqs` sequences); halves the
        micro-batch while it runs out of memory."""
        while True:
            self.opt.zero_grad(set_to_none=True)
            try:
                loss = self._accumulate(batch, n_seqs).item()
                break
            except Exception as err:
                if not devices.is_oom(err):
                    raise
                message = _first_line(err)
            # Outside the except block, so the traceback's activations are freed before the retry.
            self.opt.zero_grad(set_to_none=True)
            if self.rt.device.type == "cuda":
                torch.cuda.empty_cache()
            if self.c.micro_seqs == 1:
                raise Stop(OOM, f"out of memory with one sequence per micro-batch: {message}")
            self.c.micro_seqs = max(self.c.micro_seqs // 2, 1)
        self._check_divergence(loss)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        lr = self.schedule(self.c.tokens + n_seqs * self.seq_len)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        return loss

    def _check_divergence(self, loss: float) -> None:
        where = f"at step {self.c.step + 1} (tokens {self.c.tokens})"
        if not math.isfinite(loss):
            raise Stop(DIVERGED, f"train loss is {loss} {where}")
        if loss > self.cfg.spike_factor * self.c.min_loss:
            raise Stop(DIVERGED, f"train loss {loss:.4g} {where} exceeds trainer.spike_factor={self.cfg.spike_factor} "
                                 f"x its running minimum {self.c.min_loss:.4g}")
        self.c.min_loss = min(self.c.min_loss, loss)

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Mean held-out loss (nats/token) and its standard error over sequences."""
        if self._val is None:
            self._val = self.source.val()  # (n_val, T+1)
        self.model.eval()
        per_seq = []
        try:
            for i in range(0, self._val.size(0), self.c.micro_seqs):
                seqs = self._val[i : i + self.c.micro_seqs].to(self.rt.device)  # (b, T+1)
                with self.rt.autocast():
                    losses = self.model.token_losses(seqs[:, :-1], seqs[:, 1:])  # (b, T)
                per_seq.append(losses.mean(1).double().cpu())
        except Exception as err:
            if devices.is_oom(err):
                raise Stop(OOM, f"out of memory during evaluation: {_first_line(err)}") from err
            raise
        finally:
            self.model.train()
            if self.parallel == "fsdp":  # the root's parameters stay gathered after a forward without backward
                self.model.reshard()
        losses = torch.cat(per_seq)  # (n_val,) equal-length sequences, so their mean is the token mean
        se = losses.std().item() / math.sqrt(losses.numel()) if losses.numel() > 1 else 0.0
        return losses.mean().item(), se

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> TrialResult:
        start = time.perf_counter()
        self.restore()
        train_s, window_s, window_tokens, window_losses = 0.0, 0.0, 0, []
        eval_loss = eval_se = None
        # One worker prepares the next batch while this one computes (it matters on a GPU, where
        # sampling the synthetic language would otherwise sit between kernels).
        loader = ThreadPoolExecutor(max_workers=1)
        pending = loader.submit(self.fetch, self.c.tokens) if self.c.tokens < self.stop else None
        try:
            while self.c.tokens < self.stop:
                t0 = time.perf_counter()
                batch, n_seqs = pending.result()  # (n_r, T+1): this rank's share of n_seqs
                after = self.c.tokens + n_seqs * self.seq_len
                pending = loader.submit(self.fetch, after) if after < self.stop else None
                loss = self.step(batch, n_seqs)
                devices.synchronize(self.rt.device)
                dt = time.perf_counter() - t0
                before = self.c.tokens
                self.c.tokens, self.c.step, self.c.last_loss = after, self.c.step + 1, loss
                train_s, window_s, window_tokens = train_s + dt, window_s + dt, window_tokens + after - before
                window_losses.append(loss)
                evaluate = after == self.stop or _every(self.eval_interval, before, after)
                if evaluate or self.c.step % self.log_every == 0:
                    metrics = self._metrics(window_losses, window_tokens, window_s)
                    if evaluate and self.evaluates:
                        eval_loss, eval_se = self.evaluate()
                        metrics.update(eval_loss=eval_loss, eval_loss_se=eval_se)
                    self.report(metrics)
                    window_s, window_tokens, window_losses = 0.0, 0, []
                if self.run_dir is not None and _every(self.cfg.checkpoint_interval_tokens, before, after):
                    self.save()
                if self.forks:
                    self.fork_points(before, after)
            if eval_loss is None and self.evaluates:  # resumed from a checkpoint taken at D: score it
                eval_loss, eval_se = self.evaluate()
        except Stop as stop:
            return self._result(stop.status, start, train_s, reason=stop.reason)
        except Exception as err:
            if not devices.is_oom(err):
                raise
            # Outside the forward/backward pass (the optimizer's first step allocates its state): the
            # micro-batch cannot help, the trial does not fit.
            return self._result(OOM, start, train_s, reason=f"out of memory: {_first_line(err)}")
        finally:
            loader.shutdown(cancel_futures=True)
        return self._result(FINISHED, start, train_s, eval_loss=eval_loss, eval_se=eval_se)

    def _metrics(self, losses: list[float], tokens: int, seconds: float) -> dict[str, Any]:
        tokens_per_s = tokens / seconds if seconds > 0 else 0.0
        flops_per_s = tokens_per_s * self.flops_per_token
        return {
            "step": self.c.step, "tokens": self.c.tokens, "flops": float(self.c.tokens) * self.flops_per_token,
            "train_loss": sum(losses) / len(losses), "lr": self.schedule(self.c.tokens),
            "tokens_per_s": tokens_per_s, "flops_per_s": flops_per_s, "mfu": flops_per_s / self.rt.peak_flops,
        }

    def _result(self, status: str, start: float, train_s: float, *, reason: str | None = None,
                eval_loss: float | None = None, eval_se: float | None = None) -> TrialResult:
        trained = self.c.tokens - self.resumed_from
        tokens_per_s = trained / train_s if train_s > 0 else 0.0
        extra = {
            **self.source.info,
            "n_params": self.params.total, "n_params_nonembed": self.params.nonembed,
            "flops_per_token": self.flops_per_token, "peak_flops": self.rt.peak_flops,
            "peak_flops_source": self.rt.peak_source, "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * self.flops_per_token / self.rt.peak_flops,
            "micro_batch_tokens": self.c.micro_seqs * self.seq_len, "resumed_from_tokens": self.resumed_from,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "workers": self.ranks.world,
            "params_per_worker": self.params_held,
            **self.rt.gpu_numbers(),
        }
        if self.rt.device.type == "cuda":
            extra["gpu_name"] = self.rt.name
        last = self.c.last_loss
        return TrialResult(
            status=status, final_train_loss=last if last is not None and math.isfinite(last) else None,
            final_eval_loss=eval_loss, eval_loss_se=eval_se, tokens=self.c.tokens,
            flops=float(self.c.tokens) * self.flops_per_token, steps=self.c.step, reason=reason,
            device=str(self.rt.device), dtype=self.rt.dtype,
            epochs=self.c.tokens / per_epoch if (per_epoch := self.source.info.get("train_tokens_per_epoch")) else 0.0,
            wall_s=time.perf_counter() - start, extra=extra,
        )


def train(config: dict[str, Any], report: Report, *, run_dir: str | None = None, device: str = "cpu",
          threads: int = 1) -> dict[str, Any]:
    """Train one GPT trial (see the module docstring); returns a TrialResult as a dict."""
    try:
        trial = GPTTrial(config, report, run_dir=run_dir, device=device, threads=threads)
    except Exception as err:
        if not devices.is_oom(err):
            raise
        # The model (or its data) cannot even be allocated: the same result as an OOM in a step.
        return dataclasses.asdict(TrialResult(status=OOM, reason=f"out of memory building the trial: "
                                                                 f"{_first_line(err)}", device=device))
    return dataclasses.asdict(trial.run())
