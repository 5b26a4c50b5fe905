"""Pre-flight through the real CLI: a run that cannot succeed stops with one sentence and exit 2 before
anything is written (no mlflow.db, no mlruns/, no checkpoints): a trainer that cannot be imported, options
the trainer rejects, data that is missing or too small, resources no node can ever give a trial."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}"}
TINY = ["sweep=tiny", "trainer=surrogate"]


def refused(result, phrase: str, folder: Path, *, inputs: set[str] = frozenset()) -> None:
    """Exit 2, one sentence holding `phrase` on stderr, no traceback, and nothing written but the inputs."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert phrase in message, message
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert {p.name for p in folder.iterdir()} == set(inputs)  # no mlflow.db, mlruns/, checkpoints/, reports/


@pytest.mark.parametrize("target, phrase", [
    ("nonexistent.mod:fn", "trainer.target='nonexistent.mod:fn' cannot be imported: ModuleNotFoundError: "
                           "No module named 'nonexistent'"),
    ("import_fails:train", "trainer.target='import_fails:train' cannot be imported: RuntimeError: "
                           "TRAINER_HOME is not set"),
    ("contract:no_such_function", "contract has no function 'no_such_function'"),
    ("no_colon", "trainer.target='no_colon' is invalid: write it as module:function"),
])
def test_a_trainer_that_cannot_be_loaded_stops_before_the_store(cli, tmp_path, target, phrase):
    result = cli(*TINY, f"trainer.target={target}", env=ENV)
    refused(result, phrase, tmp_path)


def test_the_trainers_own_options_are_validated_before_the_store(cli, tmp_path):
    # A plug-in's validate hook (trainers/api.py) judges its free-form trainer.options on every planned trial:
    # before hooks, every trial crashed and was retried three times.
    plugin = ["sweep=list_example", "trainer.target=behaviours:train", "hparams.allow_invalid=true"]
    result = cli(*plugin, "+trainer.options.sleep_ss=1", env=ENV)
    refused(result, "trainer.options has unknown keys ['sleep_ss']: behaviours:train takes sleep_s.", tmp_path)
    result = cli(*plugin, "+trainer.options.sleep_s=-1", env=ENV)
    refused(result, "trainer.options.sleep_s=-1 is invalid: it must be a finite number of seconds >= 0.", tmp_path)
    # The surrogate's knobs are a typed schema (trainers.config.SurrogateConfig): a typo or a bad value is
    # refused when the config is composed.
    result = cli(*TINY, "+trainer.surrogate.nosie=0.01")
    refused(result, "trainer.surrogate.nosie is not a config key; did you mean trainer.surrogate.noise?", tmp_path)
    result = cli(*TINY, "trainer.surrogate.alpha=-0.3")
    refused(result, "trainer.surrogate.alpha=-0.3 is invalid: it must be >= 0.", tmp_path)


def test_a_validate_hook_with_a_bug_is_an_internal_failure_not_bad_input(cli, tmp_path):
    result = cli(*TINY, "trainer.target=buggy_validate:train", env=ENV)
    assert result.returncode == 1, result.stderr  # a bug (TypeError), not the user's input
    assert "Traceback" in result.stderr and "TypeError" in result.stderr
    assert "this is a bug, not bad input" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("content, phrase", [
    (None, "data.path={path} does not exist"),
    (b"", "data.path={path} holds no bytes: the corpus is empty"),
    (b"0123456789", "data.path={path}: the training split has 9 tokens, fewer than the 128 needed for one "
                    "sequence of model.seq_len=64"),
    # 5% of 20000 bytes held out: (19000 // 64 - 1) * 64 = 18880 training tokens in whole windows, and the
    # largest trial of sweep=tiny trains on 361664 tokens.
    (b"x" * 20_000, "data.path={path}: the training split holds 18880 tokens of whole sequences but the trial "
                    "needs tokens=361664 (19.16 epochs)"),
])
def test_data_that_cannot_serve_a_trial_stops_before_the_store(cli, tmp_path, content, phrase):
    path = tmp_path / "corpus.txt"
    inputs = set()
    if content is not None:
        path.write_bytes(content)
        inputs = {"corpus.txt"}
    result = cli("sweep=tiny", "data=bytes", f"data.path={path}")
    refused(result, phrase.format(path=path), tmp_path, inputs=inputs)


def test_token_files_are_checked_by_size_before_the_store(cli, tmp_path):
    folder = tmp_path / "tokens"
    folder.mkdir()
    (folder / "train.bin").write_bytes(b"\x01\x00" * 5000)
    result = cli("sweep=tiny", "data=tokens", f"data.path={folder}", "data.vocab_size=256")
    refused(result, f"data.path={folder} must be a folder holding train.bin and val.bin (nanoGPT layout); "
                    f"val.bin is missing", tmp_path, inputs={"tokens"})
    (folder / "val.bin").write_bytes(b"\x01\x00\x02")
    result = cli("sweep=tiny", "data=tokens", f"data.path={folder}", "data.vocab_size=256")
    refused(result, "val.bin has 3 bytes, not a whole number of data.dtype=uint16 tokens", tmp_path, inputs={"tokens"})


@pytest.mark.parametrize("override, phrase", [
    ("sweep.seeds=[0,-1]", "sweep.seeds contains -1: seeds must be integers >= 0"),
    ("data.seed=-5", "data.seed=-5 is invalid: it must be >= 0"),
])
def test_negative_seeds_are_rejected(cli, tmp_path, override, phrase):
    refused(cli(*TINY, override), phrase, tmp_path)


@pytest.mark.parametrize("override, phrase", [
    ("cluster.gpus_per_trial=-1", "cluster.gpus_per_trial=-1.0 is invalid: it must be a finite number >= 0"),
    ("cluster.gpus_per_trial=nan", "cluster.gpus_per_trial=nan is invalid: it must be a finite number >= 0"),
    ("cluster.memory_per_trial_gb=-2", "cluster.memory_per_trial_gb=-2.0 is invalid"),
    ("cluster.memory_per_trial_gb=nan", "cluster.memory_per_trial_gb=nan is invalid"),
    ("cluster.gpus_per_trial=1.5", "above 1 it must be a whole number of GPUs"),
    ("cluster.num_cpus=0", "cluster.num_cpus=0 is invalid"),
])
def test_impossible_resource_values_are_config_errors(cli, tmp_path, override, phrase):
    refused(cli(*TINY, override, "action=plan"), phrase, tmp_path)


def test_more_cpus_per_trial_than_the_local_instance_has_stops_at_once(cli, tmp_path):
    # Before: the trial waited forever for 4 CPUs on a 2-CPU instance, the parent run left RUNNING.
    result = cli(*TINY, "cluster.num_cpus=2", "cluster.cpus_per_trial=4")
    refused(result, "cluster.cpus_per_trial=4 can never be satisfied: the local Ray instance has 2 CPUs "
                    "(cluster.num_cpus)", tmp_path)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_a_gpu_per_trial_without_a_gpu_stops_once_ray_is_up(cli, tmp_path):
    result = cli(*TINY, "cluster.gpus_per_trial=1", timeout=300)
    refused(result, "cluster.gpus_per_trial=1 can never be satisfied: the local Ray instance has no GPU", tmp_path)


def test_more_memory_per_trial_than_any_node_offers_stops_once_ray_is_up(cli, tmp_path):
    result = cli(*TINY, "cluster.memory_per_trial_gb=100000", timeout=300)
    refused(result, "cluster.memory_per_trial_gb=100000 can never be satisfied: the largest node of the local Ray "
                    "instance offers", tmp_path)


def test_resources_must_fit_on_one_node_of_an_existing_cluster():
    # What check_resources decides from Ray's per-node totals once connected (a trial cannot span nodes).
    from orchestrator.cluster_options import ClusterConfig
    from orchestrator.preflight import PreflightError, check_resources

    gib = 2**30
    nodes = [{"CPU": 4.0, "memory": 8.0 * gib}, {"CPU": 16.0, "GPU": 1.0, "memory": 64.0 * gib}]
    check_resources(ClusterConfig(address="auto", cpus_per_trial=8, gpus_per_trial=1, memory_per_trial_gb=32), nodes)
    check_resources(ClusterConfig(address="auto", cpus_per_trial=2, gpus_per_trial=0.25), nodes)
    cases = [
        (dict(cpus_per_trial=32), "cluster.cpus_per_trial=32 can never be satisfied: the largest node of the Ray "
                                  "cluster at auto has 16 CPUs"),
        (dict(gpus_per_trial=2), "cluster.gpus_per_trial=2 can never be satisfied: the largest node of the Ray "
                                 "cluster at auto has 1 GPUs"),
        (dict(memory_per_trial_gb=100), "cluster.memory_per_trial_gb=100 can never be satisfied: the largest node "
                                        "of the Ray cluster at auto offers 64 GiB"),
    ]
    for kw, phrase in cases:
        with pytest.raises(PreflightError) as err:
            check_resources(ClusterConfig(address="auto", **kw), nodes)
        assert phrase in str(err.value)
    split = [{"CPU": 16.0}, {"CPU": 1.0, "GPU": 1.0}]  # 8 CPUs exist, a GPU exists, never on one node
    with pytest.raises(PreflightError, match="no single node of the Ray cluster at auto has cluster.cpus_per_trial=8"):
        check_resources(ClusterConfig(address="auto", cpus_per_trial=8, gpus_per_trial=1), split)
