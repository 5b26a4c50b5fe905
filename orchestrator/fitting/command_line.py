"""The user's own command line, as the checks' fixes rewrite it (issue 25: a fix must paste and run).

`CommandLine` is what the CLI saw (the program, every argument, `--config-dir` included) and the values the
composed config has in effect. A fix is that command with its changes: each change replaces the same key's
override (the CLI refuses a key given twice), `action=...` is dropped (the fix reruns the sweep), and a fix
whose every change is already in effect is no fix (`with_` returns None).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_PROGRAM = "python -m orchestrator"


def _key(arg: str) -> str | None:
    """`+trainer.lr=1` -> `trainer.lr`; a flag or a flag's value -> None."""
    if arg.startswith("-") or "=" not in arg:
        return None
    return arg.lstrip("+~").partition("=")[0].strip()


@dataclass(frozen=True)
class CommandLine:
    """`program` as typed (`python -m orchestrator`, `.venv/bin/python -m orchestrator`, `orchestrator`), `args` the
    arguments after it, `settings` the composed config's values in effect (dotted name -> text, booleans as
    true/false) so that a fix already in effect is recognised."""

    program: str = DEFAULT_PROGRAM
    args: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_sweep(cls, name: str) -> CommandLine:
        """What a caller without the user's command line (a test, a library call) knows: the sweep's name."""
        return cls(args=(f"sweep={name}",))

    def in_effect(self, change: str) -> bool:
        key, _, value = change.lstrip("+").partition("=")
        return key in self.settings and self.settings[key] == value

    def with_(self, *changes: str) -> str | None:
        """The rerun command with `changes` (KEY=VALUE each); None when every change is already in effect."""
        if changes and all(self.in_effect(c) for c in changes):
            return None
        replaced = {_key(c) for c in changes} | {"action"}
        kept = [a for a in self.args if _key(a) not in replaced]
        return " ".join([self.program, shlex.join([*kept, *changes])]).strip()

    def __str__(self) -> str:
        return self.with_() or self.program


def settings_text(value: object) -> str:
    """How a config value reads on the command line: booleans true/false, None null, others as str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(settings_text(v) for v in value) + "]"
    return "null" if value is None else str(value)
