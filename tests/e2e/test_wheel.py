"""The tool as a user installs it: the built wheel in a fresh virtual environment outside the repository, used from
an empty folder with the user's own sweep, data config, trainer module and text, through the `orchestrator`
console script and `python -m orchestrator`.

Installing every dependency from the registry would take minutes, so the fresh environment sees the project
venv's third-party packages through a .pth line (a plain path: the editable install's finder there is not
run), and the wheel is installed with --no-deps; the test checks that `orchestrator`, `trainers` and the
configs are imported from the wheel's files, not from this repository.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

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
hparams:
  min_steps: 0
  min_warmup_steps: 0
"""
TRAINER = "target: my_pkg.train:train\nlr: 3.0e-3\nbatch_tokens: 2048\neval_tokens: 8192\n"


def readme_trainer() -> str:
    """The complete trainer example of the README's "Use it from your own project" section."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    example = [b for b in blocks if b.startswith("# my_pkg/train.py")]
    assert len(example) == 1, "the README's my_pkg/train.py example is missing"
    return example[0]


def corpus(folder: Path) -> None:
    """About 3 MB of made-up text in 600 documents (text files and a JSONL file)."""
    rng = random.Random(3)
    syllables = ["ka", "to", "ri", "mu", "sel", "an", "dor", "ve", "li", "zo"]
    docs = [" ".join("".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(rng.randint(500, 1500)))
            for _ in range(600)]
    folder.mkdir()
    for i, doc in enumerate(docs[:300]):
        (folder / f"{i:03d}.txt").write_text(doc)
    (folder / "more.jsonl").write_text("".join(f'{{"text": "{doc}"}}\n' for doc in docs[300:]))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("orchestrator", "trainers", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)],
                   check=True, capture_output=True, timeout=600)
    wheel = next((root / "dist").glob("scaling_orchestrator-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    return venv / "bin"


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0"}


def test_the_wheel_runs_a_users_project_from_an_empty_folder(installed, tmp_path):
    project = tmp_path / "my_project"
    project.mkdir()
    env = user_env()

    def orchestrator(*args: str, module: bool = False) -> subprocess.CompletedProcess:
        command = [str(installed / "python"), "-m", "orchestrator"] if module else [str(installed / "orchestrator")]
        result = subprocess.run([*command, *args], cwd=project, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    # The tool and its configs come from the wheel in the fresh venv, not from this repository.
    where = subprocess.run([str(installed / "python"), "-c", "import orchestrator, trainers, orchestrator.cli as c; "
                            "print(orchestrator.__file__, trainers.__file__, c.CONF_DIR)"],
                           cwd=project, env=env, capture_output=True, text=True, check=True).stdout.split()
    venv = installed.parent
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert Path(where[2]) == venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages" / "orchestrator" / "conf"

    # The user's folder: text, a trainer module (the README's example), a sweep, a data and a trainer config.
    corpus(project / "corpus")
    (project / "my_pkg").mkdir()
    (project / "my_pkg" / "__init__.py").write_text("")
    (project / "my_pkg" / "train.py").write_text(readme_trainer())
    for group, text in (("sweep", SWEEP), ("trainer", TRAINER)):
        (project / "conf" / group).mkdir(parents=True)
        (project / "conf" / group / "mine.yaml").write_text(text)

    prepared = orchestrator("action=prepare", "prepare.input=corpus", "prepare.output=tokens",
                            "prepare.vocab_size=512")
    use = re.search(r"data\.vocab_size=(\d+) data\.dtype=(\w+)", prepared.stdout)
    (project / "conf" / "data").mkdir()
    (project / "conf" / "data" / "corpus.yaml").write_text(
        f"name: tokens\npath: {project / 'tokens'}\nvocab_size: {use[1]}\ndtype: {use[2]}\n")

    mine = ["--config-dir", "conf", "sweep=mine", "data=corpus", "trainer=mine"]
    helped = orchestrator("--config-dir", "conf", "--help")
    assert re.search(r"^\s+sweep .*mine\*", helped.stdout, flags=re.M)
    assert re.search(r"^\s+data .*corpus\*", helped.stdout, flags=re.M)
    planned = orchestrator(*mine, "action=plan")
    assert "sweep mine: 6 trials" in planned.stdout
    assert sorted(p.name for p in project.iterdir()) == ["conf", "corpus", "my_pkg", "tokens"]  # plan wrote nothing

    ran = orchestrator(*mine, module=True)
    assert "runs: http://127.0.0.1:5000/#/experiments/" in ran.stdout
    reported = orchestrator(*mine, "action=report")
    assert "report: reports/mine/index.html" in reported.stdout

    # The runs are in this folder's store, under an experiment MLflow 3 opens as model training.
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mine")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    trials = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("kind") == "trial"]
    assert len(trials) == 6 and {r.data.tags["status"] for r in trials} == {"finished"}
    assert {r.data.params["trainer.target"] for r in trials} == {"my_pkg.train:train"}
    assert {r.data.params["data.path"] for r in trials} == {str(project / "tokens")}
    assert all(r.data.metrics["final_eval_loss"] < 6.0 for r in trials)  # ln(512) = 6.24: every model learned
    assert (project / "reports" / "mine" / "index.html").stat().st_size > 10_000
    assert (project / "reports" / "mine" / "fit.json").is_file()
    with sqlite3.connect(project / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM experiments WHERE name = 'mine'").fetchone() == (1,)
