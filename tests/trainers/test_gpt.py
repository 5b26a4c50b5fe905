"""The GPT trainer through its contract: learning, exact budgets, evaluation, determinism, resume,
divergence, out-of-memory and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.accounting import train_flops_per_token
from trainers.api import DIVERGED, FINISHED, OOM, load_trainer
from trainers.config import ModelConfig
from trainers.data import DataError
from trainers.gpt import train
from trainers.model import GPT

REPORT_KEYS = {"step", "tokens", "flops", "train_loss", "lr", "tokens_per_s", "flops_per_s", "mfu"}


def test_tiny_model_learns_well_below_the_unigram_entropy(recorder, tiny_config):
    # 200 steps of 16 sequences: the loss must fall far below what a context-free model can reach.
    config = tiny_config(trainer={"eval_tokens": 4096}, tokens=512 * 200)
    result = load_trainer("trainers.gpt:train")(config, recorder, threads=1)
    extra = result["extra"]
    assert result["status"] == FINISHED
    assert result["final_eval_loss"] < extra["unigram_entropy"] - 0.7
    assert result["final_eval_loss"] > extra["entropy_floor"]  # and, of course, not below the Bayes loss
    evals = [r["eval_loss"] for r in recorder.reports if "eval_loss" in r]
    assert evals[-1] < evals[0]


def test_training_stops_exactly_at_d_with_the_schedule_at_its_end(recorder, tiny_config):
    # D = 5 full batches + 2 sequences: the last step takes the 2 sequences left, and the cosine ends there.
    d = 512 * 5 + 64
    config = tiny_config(tokens=d, trainer={"min_lr_ratio": 0.1, "lr": 1e-2})
    result = train(config, recorder, threads=1)
    assert result["tokens"] == d and result["steps"] == 6
    fpt = train_flops_per_token(ModelConfig(**config["model"]), vocab_size=256)
    assert result["flops"] == d * fpt
    last = recorder.reports[-1]
    assert last["tokens"] == d and last["flops"] == d * fpt
    assert last["lr"] == pytest.approx(1e-3, rel=1e-12)
    assert all(REPORT_KEYS <= r.keys() for r in recorder.reports)
    assert "eval_loss" in last and last["eval_loss"] == result["final_eval_loss"]
    assert result["eval_loss_se"] > 0 and result["device"] == "cpu" and result["dtype"] == "fp32"


def test_evaluates_at_every_interval_and_at_the_end(recorder, tiny_config):
    config = tiny_config(tokens=512 * 7, trainer={"eval_interval_tokens": 1024})
    train(config, recorder, threads=1)
    assert [r["tokens"] for r in recorder.reports if "eval_loss" in r] == [1024, 2048, 3072, 3584]


def test_same_seed_same_run_other_seed_other_run(tiny_config):
    runs = [train(tiny_config(seed=seed), lambda m: None, threads=1) for seed in (0, 0, 1)]
    assert runs[0]["final_eval_loss"] == runs[1]["final_eval_loss"]
    assert runs[0]["final_train_loss"] == runs[1]["final_train_loss"]
    assert runs[0]["final_train_loss"] != runs[2]["final_train_loss"]
    # Evaluation uses the language's fixed held-out sequences, whatever the trial seed.
    assert runs[0]["extra"]["entropy_floor"] == runs[2]["extra"]["entropy_floor"]


class Interrupt(Exception):
    pass


def test_resumed_trial_reaches_the_same_final_loss(tmp_path, tiny_config, new_recorder):
    config = tiny_config(tokens=512 * 8, trainer={"checkpoint_interval_tokens": 1024, "eval_interval_tokens": 1024})
    reference = train(config, lambda m: None, threads=1)

    def crash_at_3072(metrics):  # dies after step 6, before that step's checkpoint: resumes from 2048
        if metrics["tokens"] == 3072:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(config, crash_at_3072, run_dir=str(tmp_path), threads=1)
    assert (tmp_path / "checkpoint.pt").is_file()
    resumed = new_recorder()
    result = train(config, resumed, run_dir=str(tmp_path), threads=1)
    assert result["extra"]["resumed_from_tokens"] == 2048
    assert resumed.reports[0]["step"] == 5  # continues where the checkpoint left off
    assert result["final_eval_loss"] == reference["final_eval_loss"]
    assert result["final_train_loss"] == reference["final_train_loss"]
    assert result["tokens"] == reference["tokens"] and result["steps"] == reference["steps"]


def test_checkpoint_of_another_trial_is_refused(tmp_path, tiny_config):
    train(tiny_config(trainer={"checkpoint_interval_tokens": 1024}), lambda m: None, run_dir=str(tmp_path), threads=1)
    with pytest.raises(ValueError, match="different trial"):
        train(tiny_config(seed=5), lambda m: None, run_dir=str(tmp_path), threads=1)


def test_gradient_accumulation_matches_the_whole_batch(tiny_config):
    whole = train(tiny_config(), lambda m: None, threads=1)
    split = train(tiny_config(trainer={"micro_batch_tokens": 128}), lambda m: None, threads=1)
    assert split["extra"]["micro_batch_tokens"] == 128
    assert split["final_eval_loss"] == pytest.approx(whole["final_eval_loss"], abs=1e-4)


def test_nan_loss_stops_as_diverged(monkeypatch, tiny_config):
    forward, calls = GPT.forward, []

    def nan_on_third_step(self, idx, targets):
        calls.append(1)
        loss = forward(self, idx, targets)
        return loss * float("nan") if len(calls) == 3 else loss
    monkeypatch.setattr(GPT, "forward", nan_on_third_step)
    result = train(tiny_config(), lambda m: None, threads=1)
    assert result["status"] == DIVERGED and "nan" in result["reason"]
    assert result["steps"] == 2 and result["tokens"] == 1024


def test_loss_spike_beyond_the_factor_stops_as_diverged(tiny_config):
    # An absurd learning rate blows the loss up; the spike rule catches it before it turns into NaN.
    result = train(tiny_config(trainer={"lr": 50.0, "grad_clip": 0.0, "warmup_tokens": 512}), lambda m: None,
                   threads=1)
    assert result["status"] == DIVERGED
    assert "spike_factor" in result["reason"] or "nan" in result["reason"] or "inf" in result["reason"]


def test_out_of_memory_halves_the_micro_batch_then_reports_oom(monkeypatch, tiny_config):
    forward = GPT.forward

    def small_batches_only(self, idx, targets):
        if idx.size(0) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, idx, targets)
    monkeypatch.setattr(GPT, "forward", small_batches_only)
    result = train(tiny_config(), lambda m: None, threads=1)
    assert result["status"] == FINISHED and result["extra"]["micro_batch_tokens"] == 4 * 32

    def never_fits(self, idx, targets):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
    monkeypatch.setattr(GPT, "forward", never_fits)
    result = train(tiny_config(), lambda m: None, threads=1)
    assert result["status"] == OOM and "can't allocate memory" in result["reason"]


def test_out_of_memory_outside_the_step_is_an_oom_result_too(monkeypatch, tiny_config):
    # A size that cannot fit fails where its memory is first needed: the optimizer's state (first
    # step) or building the model. Either way it is a result, not a crash to retry.
    def no_room_for_state(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", no_room_for_state)
        result = train(tiny_config(), lambda m: None, threads=1)
    assert result["status"] == OOM and result["reason"].startswith("out of memory: CUDA out of memory")
    assert result["steps"] == 0 and result["extra"]["n_params"] > 0

    def no_room_for_weights(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 16777216 bytes")
    monkeypatch.setattr("trainers.gpt.GPT", no_room_for_weights)
    result = train(tiny_config(), lambda m: None, threads=1)
    assert result["status"] == OOM and "building the trial" in result["reason"] and result["steps"] == 0


def test_other_errors_are_raised_not_swallowed(monkeypatch, tiny_config):
    def broken(self, idx, targets):
        raise RuntimeError("shape mismatch")
    monkeypatch.setattr(GPT, "forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        train(tiny_config(), lambda m: None, threads=1)


@pytest.mark.parametrize(
    "override,match",
    [
        ({"tokens": 1000}, "tokens=1000 is not a multiple of model.seq_len=32"),
        ({"trainer": {"batch_tokens": 100}}, "trainer.batch_tokens=100"),
        ({"model": {"n_head": 3}}, "n_head"),
        ({"trainer": {"schedule": "linear"}}, "trainer.schedule"),
    ],
)
def test_bad_config_is_a_value_error(override, match, tiny_config):
    with pytest.raises(ValueError, match=match):
        train(tiny_config(**override), lambda m: None, threads=1)


def test_byte_corpus_smaller_than_d(tmp_path, tiny_config):
    (tmp_path / "corpus.txt").write_bytes(b"the quick brown fox jumps over the lazy dog. " * 60)  # 2700 bytes
    data = {"name": "bytes", "path": str(tmp_path / "corpus.txt")}
    with pytest.raises(DataError, match="allow_repeat"):
        train(tiny_config(data=data), lambda m: None, threads=1)
    result = train(tiny_config(data={**data, "allow_repeat": True}), lambda m: None, threads=1)
    assert result["status"] == FINISHED and result["epochs"] == pytest.approx(4096 / (2565 // 32 - 1) / 32)


@pytest.mark.parametrize("model", [{"positions": "rotary", "tied_embeddings": False, "bias": True}, {"n_layer": 2}])
def test_other_shapes_and_the_wsd_schedule_train(model, tiny_config):
    result = train(tiny_config(model=model, trainer={"schedule": "wsd"}), lambda m: None, threads=1)
    assert result["status"] == FINISHED and math.isfinite(result["final_eval_loss"])


def test_peak_flops_comes_from_the_environment(monkeypatch, recorder, tiny_config):
    monkeypatch.setenv("ORCH_PEAK_FLOPS", "1e9")
    result = train(tiny_config(), recorder, threads=1)
    assert result["extra"]["peak_flops"] == 1e9 and "ORCH_PEAK_FLOPS" in result["extra"]["peak_flops_source"]
    last = recorder.reports[-1]
    assert last["mfu"] == pytest.approx(last["flops_per_s"] / 1e9)
    assert result["extra"]["threads"] == 1
