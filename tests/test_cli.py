"""The CLI as a user runs it (subprocess): plan output, --cfg, and every bad-input case."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from orchestrator.cli import CONF_DIR, available, register_schemas
from orchestrator.config import GROUP_SCHEMAS, Config

# Keys a group needs from the user before it can be used (data paths are the user's own files).
REQUIRED = {("data", "bytes"): ["data.path=/corpus"], ("data", "tokens"): ["data.path=/corpus"],
            ("sweep", "gpu_isoflop"): ["data.path=/corpus"]}


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUP_SCHEMAS for o in available(g)])
def test_every_yaml_in_conf_composes_and_validates(group, option):
    # None can rot: each option composes against its schema and converts to typed dataclasses.
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"{group}={option}", *REQUIRED.get((group, option), [])])
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, Config)
    if group == "sweep":
        assert config.sweep.name == option  # the experiment is named after its file


def test_plan_prints_every_trial_and_totals_and_writes_nothing(cli, tmp_path: Path):
    result = cli("sweep=tiny", "action=plan")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines if re.fullmatch(r"[0-9a-f]{16}", line.split(" ", 1)[0])]
    assert len(rows) == 6  # 2 budgets x 3 sizes
    assert "sweep tiny: 6 trials" in result.stdout
    assert "estimated time" in result.stdout and "FLOP/s per trial" in result.stdout
    for column in ("trial_id", "N_total", "D/N", "C/6ND", "est", "status"):
        assert column in lines[0]
    assert list(tmp_path.iterdir()) == []  # no outputs/, no mlflow.db, nothing


def test_overrides_follow_hydra_grammar(cli):
    result = cli("sweep=tiny", "action=plan", "sweep.budgets=[1e10,3e10,1e11]", "model.head_dim=4")
    assert result.returncode == 0, result.stderr
    assert "sweep tiny: 9 trials" in result.stdout


def test_cfg_job_prints_the_composed_config(cli):
    result = cli("sweep=tiny", "model.n_head=4", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert cfg.sweep.name == "tiny" and cfg.model.n_head == 4 and cfg.trainer.batch_tokens == 2048


@pytest.mark.parametrize("args, phrase", [
    (["sweep=nope"], "sweep=nope is unknown: available sweep configs are cpu_small"),
    (["sweep=tiny", "sweep.budgets=[0]"], "sweep.budgets contains 0.0"),
    (["sweep=tiny", "sweep.budgets=[-1e12]"], "sweep.budgets contains -1"),
    (["sweep=tiny", "sweep.budgets=[nan]"], "sweep.budgets contains nan"),
    (["sweep=grid_example", "sweep.tokens=[0]"], "sweep.tokens contains 0.0"),
    (["sweep=tiny", "model.d_model=30", "model.n_head=4"], "model.d_model=30 is not divisible by model.n_head=4"),
    (["sweep=tiny", "sweep.budgets=[1e6]"], "fewer than one optimizer step of trainer.batch_tokens=2048"),
    (["sweep=tiny", "sweep.span=1000"], "fewer than sweep.min_tokens_per_param=1.0"),
    (["sweep=tiny", "sweep.budgets=[]"], "sweep.budgets is empty"),
    (["sweep=grid_example", "sweep.seeds=[]"], "sweep.seeds is empty"),
    (["sweep=tiny", "data=nope"], "data=nope is unknown: available data configs are bytes, synthetic, tokens"),
    (["sweep=tiny", "sweep.datasets=[nope]"], "sweep.datasets contains 'nope'"),
    (["sweep=tiny", "model.n_head=four"], "model.n_head: Value 'four'"),
    (["sweep=tiny", "sweep.budgets=[abc]"], "sweep.budgets[0]: Value 'abc'"),
    (["sweep=tiny", "model.n_haed=4"], "model.n_haed is not a config key"),
    (["sweep=tiny", "action=dance"], "action='dance' is unknown"),
    (["sweep=tiny", "sweep.name='<script>x/y'"], "sweep.name='<script>x/y' is invalid"),
    (["sweep=tiny", "sweep.name=<script>"], "'sweep.name=<script>' is not a valid override"),
])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(cli, tmp_path, args, phrase):
    result = cli(*args, "action=plan") if not any(a.startswith("action=") for a in args) else cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert phrase in message
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_duplicate_trials_collapse_with_a_warning(cli):
    result = cli("sweep=grid_example", "sweep.sizes=[1e5,1.001e5]", "sweep.tokens=[1e6]", "action=plan")
    assert result.returncode == 0, result.stderr
    assert "warning: 1 planned trial(s) duplicate others" in result.stderr
    assert "sweep grid_example: 1 trials" in result.stdout


def test_help_lists_groups_and_options(cli):
    result = cli("--help")
    assert result.returncode == 0
    assert "cpu_small" in result.stdout and "action" in result.stdout
