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
    assert "estimated time" in result.stdout and "FLOP/s per worker" in result.stdout
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
    # A typo'd `+key` used to be accepted and ignored while a full sweep ran; a key given twice kept the last.
    (["sweep=tiny", "+acton=plan"], "acton is not a config key; did you mean action?"),
    (["sweep=tiny", "+trainer.surogate.noise=1"], "trainer.surogate is not a config key; did you mean "
                                                  "trainer.surrogate?"),
    (["sweep=tiny", "+foo=1"], "foo is not a config key: the root has action, sweep, model"),
    (["sweep=tiny", "action=plan", "action=run"], "action is given twice (action=plan and action=run): give each "
                                                  "key once."),
    (["sweep=tiny", "sweep=cpu_small"], "sweep is given twice (sweep=tiny and sweep=cpu_small)"),
    (["sweep=tiny", "model.n_head=2", "+model.n_head=4"], "model.n_head is given twice"),
    (["sweep=tiny", f"sweep.name={'a' * 300}"], "sweep.name is 300 characters long: the limit is 100"),
    (["sweep=tiny", "sweep.seeds=[0,-1]"], "sweep.seeds contains -1: seeds must be integers >= 0"),
    (["sweep=tiny", "model.positions=rotary", "model.head_dim=7"], "the shape rule (model.aspect_ratio=16, "
                                                                   "model.head_dim=7) builds an invalid model"),
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


def test_a_huge_plan_prints_its_first_and_last_rows_and_says_so(cli):
    # 3 sizes x 40 token counts x 20 seeds = 2400 trials: a table of 60 rows and a line saying what is left out
    # (a 1e6-trial plan printed 117 MB).
    tokens = "[" + ",".join(str(500_000 + 4096 * i) for i in range(40)) + "]"
    seeds = "[" + ",".join(str(i) for i in range(20)) + "]"
    result = cli("sweep=grid_example", f"sweep.tokens={tokens}", f"sweep.seeds={seeds}", "action=plan")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.fullmatch(r"[0-9a-f]{16}", line.split(" ", 1)[0])]
    assert len(rows) == 60
    assert "... 2340 rows not shown: showing the first 30 and last 30 of 2400 trials ..." in result.stdout
    assert "sweep grid_example: 2400 trials" in result.stdout and "status: pending 2400" in result.stdout


def test_an_absurd_plan_gets_a_plain_warning(cli):
    # Budgets of 1e40 used to plan to "9e25 h" without a word.
    result = cli("sweep=grid_example", "sweep.tokens=[1e30]", "action=plan")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and re.search(r"about [0-9.e+]+ years on \d+ slot", warning[0])
    assert "mistyped exponent" in warning[0]
    normal = cli("sweep=grid_example", "action=plan")
    assert "warning:" not in normal.stdout
