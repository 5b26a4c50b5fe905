"""Where config groups come from: the orchestrator's own `conf/` and the user's folders.

Ours is package data of the installed wheel (`orchestrator/conf/`, mapped from the repository's top-level
`conf/` by pyproject.toml), or the source tree's `conf/` (a checkout, an editable install). A user adds folders
of their own with Hydra's conventions, `--config-dir DIR` or `hydra.searchpath=[DIR, ...]`: their group
folders (`DIR/sweep/mine.yaml`, `DIR/data/corpus.yaml`, `DIR/trainer/mine.yaml`, ...) sit beside ours, are
composed after ours and validated against the same schemas (cli.py). A user's option with the name of one of
ours would be silently shadowed by Hydra's search order, so it is refused in one sentence instead.

Plain pathlib: the CLI is the only module that talks to Hydra.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import UsageError

ROOT_CONFIG = "config.yaml"


def builtin_conf_dir() -> Path:
    """Our conf/: the wheel's package data (orchestrator/conf), else the source tree's conf/ beside the package."""
    packaged = importlib.resources.files("orchestrator") / "conf"
    if packaged.is_dir() and (packaged / ROOT_CONFIG).is_file():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / "conf"
    assert (source / ROOT_CONFIG).is_file(), f"the orchestrator's configs are missing: neither {packaged} nor {source}"
    return source


def _searchpath_entry(entry: str) -> Path:
    """A Hydra search-path entry (file://DIR, pkg://package.path or a plain folder) as a folder."""
    entry = entry.strip().strip("'\"")
    if entry.startswith("pkg://"):
        module = entry.removeprefix("pkg://").replace("/", ".")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(f"hydra.searchpath entry {entry!r} is not an importable package: give pkg://package.path, "
                             f"file://FOLDER or a folder.")
        return Path(list(spec.submodule_search_locations)[0])
    return Path(entry.removeprefix("file://"))


def parse_searchpath(value: str) -> list[Path]:
    """`hydra.searchpath=[a,b]` (Hydra's list grammar, entries optionally quoted) -> folders."""
    value = value.strip()
    if not (value.startswith("[") and value.endswith("]")):
        raise UsageError(f"hydra.searchpath={value} is not a list: write hydra.searchpath=[DIR] or "
                         f"hydra.searchpath=[file://DIR,pkg://package.path].")
    return [_searchpath_entry(e) for e in value[1:-1].split(",") if e.strip()]


@dataclass(frozen=True)
class ConfigDirs:
    """Our conf/ and the user's folders, in search order (ours first)."""

    user: tuple[Path, ...] = ()
    builtin: Path = field(default_factory=builtin_conf_dir)

    @classmethod
    def of(cls, folders: list[str | Path]) -> ConfigDirs:
        """Check the user's folders (they exist, add no root config, shadow none of our options)."""
        user = []
        for folder in folders:
            path = Path(folder).expanduser().resolve()
            if not path.is_dir():
                raise UsageError(f"--config-dir {folder} is not a folder: give a folder holding config groups "
                                 f"(sweep/, model/, data/, trainer/, ...).")
            if (path / ROOT_CONFIG).is_file():
                raise UsageError(f"--config-dir {folder} holds {ROOT_CONFIG}: the root config is the orchestrator's, "
                                 f"so remove or rename it and keep your configs in group folders (sweep/, data/, ...).")
            if path != cls().builtin and path not in user:
                user.append(path)
        dirs = cls(user=tuple(user))
        dirs._check_unique()
        return dirs

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.builtin, *self.user)

    def _check_unique(self) -> None:
        seen: dict[tuple[str, str], Path] = {}
        for folder in self.all:
            for file in sorted(folder.glob("*/*.yaml")):
                key = (file.parent.name, file.stem)
                if key in seen:
                    group, option = key
                    raise UsageError(f"{file} has the same name as {seen[key]} ({group}={option}): rename yours, since "
                                     f"a config is chosen by its file name and Hydra would use only one of them.")
                seen[key] = file

    def options(self, group: str) -> list[str]:
        """The options of a config group: the YAML files in <folder>/<group>/ of every folder."""
        return sorted({p.stem for folder in self.all for p in (folder / group).glob("*.yaml")})

    def user_options(self, group: str) -> list[str]:
        return sorted({p.stem for folder in self.user for p in (folder / group).glob("*.yaml")})

    def is_group(self, name: str) -> bool:
        return any((folder / name).is_dir() for folder in self.all)

    def searchpath_override(self) -> list[str]:
        """The override that puts the user's folders on Hydra's search path (after ours: the primary config dir)."""
        if not self.user:
            return []
        return ["hydra.searchpath=[" + ",".join(f"'file://{p}'" for p in self.user) + "]"]


def yaml_error_sentence(err: Exception) -> str:
    """A YAML file that cannot be parsed (PyYAML's MarkedYAMLError, raised while Hydra composes), in one sentence
    naming the file, the line and what the parser expected."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or (str(err).strip().splitlines() or ["unreadable"])[0]
    if mark is None:
        return f"a config file is not valid YAML: {problem}; fix that file (or move it out of the config folder)."
    return (f"{mark.name} is not valid YAML: {problem} at line {mark.line + 1}, column {mark.column + 1}; fix the "
            f"file (or move it out of the config folder).")
