"""pyproject.toml's explicit package list matches the source tree, so the wheel carries every module and config.

setuptools cannot combine package discovery with mapping conf/ to `orchestrator.conf`, so the packages are
listed by hand (pyproject.toml); a package or config group added without listing it would be missing from the
wheel only (an editable install still finds it). tests/test_wheel.py builds and installs the wheel (slow).
"""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_python_package_in_the_tree_is_listed():
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("orchestrator", "trainers")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    code = {name for name in _listed() if not name.startswith("orchestrator.conf")}
    assert found == code, f"not listed: {sorted(found - code)}; listed but absent: {sorted(code - found)}"


def test_every_config_group_is_listed_as_package_data():
    groups = {f"orchestrator.conf.{d.name}" for d in (ROOT / "conf").iterdir() if d.is_dir() and any(d.glob("*.yaml"))}
    conf = {name for name in _listed() if name.startswith("orchestrator.conf.")}
    assert groups == conf, f"not listed: {sorted(groups - conf)}; listed but absent: {sorted(conf - groups)}"
    assert "orchestrator.conf" in _listed() and (ROOT / "conf" / "config.yaml").exists()
