"""A user's own project: their config folders beside ours (--config-dir, hydra.searchpath), listed, composed,
validated like ours; and the package list that puts conf/ into the wheel. The installed wheel end to end is
tests/e2e/test_wheel.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from orchestrator.runner import user_code

REPO = Path(__file__).resolve().parents[1]

SWEEP = """\
# @package _global_
sweep:
  name: mine
  kind: isoflop
  budgets: [1.0e10, 2.0e10]
  sizes_per_budget: 3
  span: 4.0
model:
  seq_len: 64
  head_dim: 8
trainer:
  batch_tokens: 2048
  eval_tokens: 8192
hparams:
  min_steps: 0
  min_warmup_steps: 0
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty folder with conf/sweep/mine.yaml and conf/trainer/mine.yaml."""
    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    (tmp_path / "conf" / "trainer").mkdir()
    (tmp_path / "conf" / "sweep" / "mine.yaml").write_text(SWEEP)
    (tmp_path / "conf" / "trainer" / "mine.yaml").write_text("target: trainers.gpt:train\nlr: 1.0e-3\n")
    return tmp_path


def rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if re.fullmatch(r"[0-9a-f]{16}", line.split(" ", 1)[0])]


def test_pyproject_lists_every_package_and_config_group():
    # setuptools cannot discover packages and map conf/ into the wheel at once, so the list is written out:
    # a new package or config group that is not listed would be missing from the wheel.
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = {".".join(p.relative_to(REPO).parts) for top in ("orchestrator", "trainers")
            for p in [REPO / top, *(REPO / top).rglob("*")]
            if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))}
    groups = {"orchestrator.conf"} | {f"orchestrator.conf.{p.name}" for p in (REPO / "conf").iterdir() if p.is_dir()}
    assert listed == code | groups, f"pyproject.toml [tool.setuptools] packages: add {sorted(code | groups - listed)}"


def test_help_lists_the_users_configs_beside_ours(cli, project):
    result = cli("--config-dir", "conf", "--help")
    assert result.returncode == 0, result.stderr
    sweep_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("sweep "))
    assert "mine*" in sweep_line and "tiny" in sweep_line and "cpu_small" in sweep_line
    assert "trainer " in result.stdout and "mine*" in next(
        line for line in result.stdout.splitlines() if line.strip().startswith("trainer "))
    assert f"yours from: {project / 'conf'}" in result.stdout


@pytest.mark.parametrize("how", [["--config-dir", "conf"], ["-cd", "conf"], ["--config-dir=conf"],
                                 ["hydra.searchpath=[file://conf]"], ["hydra.searchpath=['conf']"]])
def test_a_user_sweep_composes_with_our_groups_and_plans(cli, project, how):
    result = cli(*how, "sweep=mine", "trainer=mine", "model=gpt", "action=plan")
    assert result.returncode == 0, result.stderr
    assert "sweep mine: 6 trials" in result.stdout and len(rows(result.stdout)) == 6
    assert sorted(p.name for p in project.iterdir()) == ["conf"]  # a plan writes nothing


def test_without_the_folder_a_user_sweep_is_unknown_and_the_sentence_says_how_to_add_it(cli, project):
    result = cli("sweep=mine", "action=plan")
    assert result.returncode == 2
    assert "sweep=mine is unknown" in result.stderr and "--config-dir DIR" in result.stderr


def test_a_typo_in_a_user_yaml_gets_the_same_sentence_as_a_typo_on_the_command_line(cli, project):
    (project / "conf" / "sweep" / "typo.yaml").write_text(SWEEP.replace("span:", "spn:"))
    theirs = cli("--config-dir", "conf", "sweep=typo", "action=plan")
    ours = cli("sweep=tiny", "sweep.spn=4", "action=plan")
    assert theirs.returncode == ours.returncode == 2
    assert len(theirs.stderr.strip().splitlines()) == 1
    where = f" (in {project / 'conf' / 'sweep' / 'typo.yaml'})"
    assert theirs.stderr.replace(where, "") == ours.stderr
    assert theirs.stderr.startswith("error: sweep.spn is not a config key" + where + "; sweep has: name, kind")


def test_a_wrong_type_in_a_user_data_config_names_the_key_and_the_file(cli, project):
    (project / "conf" / "data").mkdir()
    (project / "conf" / "data" / "corpus.yaml").write_text("name: tokens\npath: /x\nvocab_size: many\n")
    result = cli("--config-dir", "conf", "sweep=mine", "data=corpus", "action=plan")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: data.vocab_size (in {project / 'conf' / 'data' / 'corpus.yaml'}): "
                                    f"Value 'many'")


@pytest.mark.parametrize("setup, args, phrase", [
    (lambda p: None, ["--config-dir", "nope"], "--config-dir nope is not a folder"),
    (lambda p: (p / "conf" / "config.yaml").write_text("defaults: []\n"), ["--config-dir", "conf"],
     "holds config.yaml: the root config is the orchestrator's"),
    (lambda p: (p / "conf" / "sweep" / "tiny.yaml").write_text(SWEEP), ["--config-dir", "conf"],
     "has the same name as"),
    (lambda p: None, ["hydra.searchpath=conf"], "hydra.searchpath=conf is not a list"),
    (lambda p: None, ["hydra.searchpath=[pkg://no_such_package]"], "is not an importable package"),
    (lambda p: None, ["--config-dir"], "--config-dir needs a folder"),
])
def test_bad_config_folders_are_one_sentence(cli, project, setup, args, phrase):
    setup(project)
    result = cli("sweep=mine", "action=plan", *args)
    assert result.returncode == 2, result.stdout
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_the_trainer_code_shipped_to_ray_workers_is_the_users_folder_only(tmp_path, monkeypatch):
    # Ray's runtime environment carries the top-level package (or module file) of trainer.target to every
    # worker when it lives in the folder the sweep runs from; installed code (ours) is not shipped.
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "train.py").write_text("def train(config, report, **kw): ...\n")
    (tmp_path / "single.py").write_text("def train(config, report, **kw): ...\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert user_code("my_pkg.train:train") == [str(tmp_path / "my_pkg")]
    assert user_code("single:train") == [str(tmp_path / "single.py")]
    assert user_code("trainers.gpt:train") == []
    assert user_code("json:loads") == [] and user_code("sys:exit") == []  # the standard library is everywhere
    assert user_code("no_such_module:train") == []  # the pre-flight says so in one sentence


def test_the_readme_trainer_warms_up_decays_to_its_floor_at_D_and_evaluates_along_the_way(tmp_path):
    """The README's my_pkg/train.py (users copy it) trains one planned trial in-process: its rate rises over the
    warmup and ends at min_lr_ratio x peak at exactly D, and it evaluates evals_per_run times, the last at D, so its
    curve and envelope figures have points."""
    import importlib.util

    from orchestrator.cli import compose_config, data_axis, to_typed
    from orchestrator.sweep_plan import plan_trials

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (tmp_path / "readme_train.py").write_text(next(b for b in blocks if b.startswith("# my_pkg/train.py")))
    spec = importlib.util.spec_from_file_location("readme_train", tmp_path / "readme_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["sweep=tiny", "sweep.budgets=[2e10]", "trainer.warmup_tokens=16384", "trainer.evals_per_run=4"]
    config = to_typed(compose_config(args))
    trial = plan_trials(config, datasets=data_axis(config, args))[0]
    reports: list[dict] = []
    result = module.train(trial.config, reports.append)
    peak, D = trial.config["trainer"]["lr"], trial.config["tokens"]
    lrs = [r["lr"] for r in reports]
    warm = [r["lr"] for r in reports if r["tokens"] <= 16384]
    assert len(warm) >= 2 and warm == sorted(warm) and warm[0] < peak / 2  # a warmup, not a constant rate
    assert max(lrs) == pytest.approx(peak, rel=0.05)
    assert reports[-1]["tokens"] >= D and lrs[-1] == pytest.approx(0.1 * peak)  # decayed to its floor at D
    evals = [r for r in reports if "eval_loss" in r]
    assert len(evals) == 4 and evals[-1] is reports[-1] and evals[0]["tokens"] < D / 2
    assert result["final_eval_loss"] == evals[-1]["eval_loss"] and result["status"] == "finished"
