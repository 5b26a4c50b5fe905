"""`python -m orchestrator [OVERRIDES] [--cfg job|all] [--help]`: compose, validate, dispatch.

The only module that imports hydra/omegaconf. Composition uses Hydra's Compose API (so overrides
follow Hydra's grammar: `sweep=tiny`, `sweep.budgets=[1e12,3e12]`, `model.n_head=4`, `+key=v`)
but the entry point is ours, so that bad input gets exit code 2 with one clear sentence and nothing is
written (no `outputs/` folder, no log files) until an action decides to write.
"""

from __future__ import annotations

import difflib
import sys
import traceback
import warnings
from dataclasses import dataclass, field, is_dataclass

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from orchestrator.conf_dirs import ConfigDirs, builtin_conf_dir, parse_searchpath, yaml_error_sentence
from orchestrator.config import GROUP_SCHEMAS, Config
from orchestrator.errors import EXIT_FAILURE, EXIT_USAGE, RunFailure, UsageError
from orchestrator.fitting.command_line import CommandLine, settings_text

CONF_DIR = builtin_conf_dir()
"""Our conf/: the wheel's package data or the source tree's (orchestrator/conf_dirs.py)."""

USAGE = """\
usage: python -m orchestrator [GROUP=OPTION ...] [KEY=VALUE ...] [--config-dir DIR] [--cfg job|all] [--help]
       (the `orchestrator` command is the same)

actions (action=...):
  run      plan the sweep and run every pending trial (default)
  plan     print the plan (trials, cost, status); runs and writes nothing
  fit      fit scaling laws to a sweep's runs (or fit.runs_csv=PATH)
  report   write the frontier report
  compare  the compute multiplier of variant sweeps over a baseline (compare.baseline=A compare.variants=[B])
  prepare  tokenize a folder of text, JSONL or Parquet files for data=tokens (prepare.input=DIR prepare.output=DIR)
  pilot    measure a sweep's lr and batch rules and IsoFLOP centre; writes hparams=pilot_<name> (--config-dir DIR)

groups (* marks yours, from --config-dir DIR or hydra.searchpath=[DIR]):
{groups}
examples:
  python -m orchestrator sweep=cpu_small action=plan
  python -m orchestrator sweep=tiny sweep.budgets=[1e10,3e10] model.head_dim=8
  python -m orchestrator sweep=tiny --cfg job
  python -m orchestrator sweep=forks_tiny action=plan                # WSD trunks and their cooldown forks
  python -m orchestrator --config-dir conf sweep=mine model=gpt     # your conf/sweep/mine.yaml
"""


def register_schemas() -> None:
    """Put every group's dataclass schema in Hydra's ConfigStore (validated on composition)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"{group}_schema", node=schema)


def available(group: str, dirs: ConfigDirs | None = None) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/ and in the user's folders' <group>/."""
    return (dirs or ConfigDirs()).options(group)


@dataclass
class Invocation:
    overrides: list[str]
    cfg: str | None = None
    help: bool = False
    config_dirs: list[str] = field(default_factory=list)
    """The user's config folders (--config-dir DIR, hydra.searchpath=[DIR, ...]), in order."""


def parse_argv(argv: list[str]) -> Invocation:
    inv = Invocation(overrides=[])
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            inv.help = True
        elif arg in ("--cfg", "-c"):
            inv.cfg = next(args, None)
            if inv.cfg not in ("job", "all"):
                raise UsageError(f"--cfg takes job or all, not {inv.cfg!r}.")
        elif arg.startswith("--cfg="):
            inv.cfg = arg.split("=", 1)[1]
            if inv.cfg not in ("job", "all"):
                raise UsageError(f"--cfg takes job or all, not {inv.cfg!r}.")
        elif arg in ("--config-dir", "-cd"):
            folder = next(args, None)
            if folder is None:
                raise UsageError(f"{arg} needs a folder: {arg} DIR.")
            inv.config_dirs.append(folder)
        elif arg.startswith("--config-dir="):
            inv.config_dirs.append(arg.split("=", 1)[1])
        elif arg.startswith("-"):
            raise UsageError(f"unknown flag {arg!r}: allowed are --config-dir DIR, --cfg job|all and --help; configure "
                             f"with KEY=VALUE.")
        elif _override_key(arg) == "hydra.searchpath":
            inv.config_dirs.extend(str(p) for p in parse_searchpath(arg.partition("=")[2]))
        else:
            inv.overrides.append(arg)
    return inv


def _check_group_choices(overrides: list[str], dirs: ConfigDirs) -> None:
    """Unknown option of a config group -> one sentence listing the available options."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key in GROUP_SCHEMAS and value not in available(key, dirs):
            raise UsageError(f"{key}={value} is unknown: available {key} configs are "
                             f"{', '.join(available(key, dirs))}{_where(dirs)}.")


def _where(dirs: ConfigDirs) -> str:
    return f" (from {', '.join(str(d) for d in dirs.all)})" if dirs.user else " (add your own with --config-dir DIR)"


def _override_key(override: str) -> str:
    """`+trainer.lr=1` -> `trainer.lr`; `sweep=tiny` -> `sweep`."""
    return override.lstrip("+~").partition("=")[0].strip()


def _check_given_once(overrides: list[str]) -> None:
    """`action=plan action=run` is a conflict, not "the last one wins": one sentence naming both."""
    seen: dict[str, str] = {}
    for override in overrides:
        key = _override_key(override)
        if key in seen:
            raise UsageError(f"{key} is given twice ({seen[key]} and {override}): give each key once.")
        seen[key] = override


def _check_additions(overrides: list[str], dirs: ConfigDirs) -> None:
    """`+key=value` may only add what a schema allows: a key under a free-form mapping (such as a plug-in
    trainer's trainer.options.<knob>) or a user's config group (a folder in conf/). Hydra's `+` otherwise adds
    any key at all, so `+acton=plan` would be accepted and ignored while a full sweep runs."""
    schema = OmegaConf.structured(Config)
    for override in overrides:
        if not override.startswith("+"):
            continue
        key = _override_key(override)
        if "@" in key or ("." not in key and dirs.is_group(key)):
            continue  # a config group (Hydra's `+group=option` / `+group@package=option`)
        node, path = schema, []
        for part in key.split("."):
            if not (OmegaConf.is_dict(node) and is_dataclass(OmegaConf.get_type(node))):
                break  # a free-form mapping or list: anything may be added below it
            if part not in node:
                name = ".".join([*path, part])
                close = difflib.get_close_matches(part, list(node.keys()), n=1)
                if close:
                    raise UsageError(f"{name} is not a config key; did you mean {'.'.join([*path, close[0]])}?")
                raise UsageError(f"{name} is not a config key: {'.'.join(path) or 'the root'} has "
                                 f"{', '.join(node.keys())}.")
            node, path = node[part], [*path, part]


def compose_config(overrides: list[str], dirs: ConfigDirs | None = None) -> DictConfig:
    """Compose conf/ (and the user's config folders) with Hydra; composition or type errors become one-sentence
    UsageErrors, the same for a user's YAML as for ours."""
    dirs = dirs or ConfigDirs()
    _check_given_once(overrides)
    _check_additions(overrides, dirs)
    _check_group_choices(overrides, dirs)
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(dirs.builtin), version_base="1.3"):
            return compose(config_name="config", overrides=[*overrides, *dirs.searchpath_override()])
    except MissingConfigException as err:
        raise UsageError(str(err).splitlines()[0]) from None
    except OverrideParseException as err:
        bad = str(err).splitlines()[0].split(": ", 1)[-1]
        raise UsageError(f"{bad!r} is not a valid override: write KEY=VALUE, and quote values with special "
                         f"characters (KEY='a value'); see Hydra's override grammar.") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(_explain(err, dirs)) from None


def _explain(err: BaseException, dirs: ConfigDirs | None = None) -> str:
    """Turn Hydra/OmegaConf's multi-line errors into one sentence naming the key (and the YAML file it is in,
    ours or the user's, when Hydra says which)."""
    cause: BaseException = err
    while not isinstance(cause, OmegaConfBaseException) and (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__  # Hydra re-raises a YAML's error as the context, not the cause
    where = _yaml_of(str(err), dirs) if dirs is not None else ""
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or "?"
        msg = str(getattr(cause, "msg", cause)).splitlines()[0]
        if "not in struct" in msg or "Key '" in msg and "not" in msg:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            return f"{key} is not a config key{where}{_known_keys(parent)}."
        return f"{key}{where}: {msg.rstrip('.')}."
    return str(err).splitlines()[0]


def _yaml_of(message: str, dirs: ConfigDirs) -> str:
    """" (in FILE)" for Hydra's "In 'group/option': ..." prefix, else ""."""
    if not message.startswith("In '"):
        return ""
    name = message[4:].split("'", 1)[0]
    files = [folder / f"{name}.yaml" for folder in dirs.all if (folder / f"{name}.yaml").is_file()]
    return f" (in {files[0]})" if files else ""


def _known_keys(parent: str) -> str:
    schema = GROUP_SCHEMAS.get(parent)
    if schema is None:
        return ""
    return f"; {parent} has: {', '.join(schema.__dataclass_fields__)}"


def to_typed(cfg: DictConfig) -> Config:
    """DictConfig -> typed dataclasses (runs every __post_init__ check)."""
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise UsageError(_explain(err)) from None
    except ValueError as err:  # a schema's __post_init__ check: one sentence about the user's value
        raise UsageError(str(err)) from None
    assert isinstance(config, Config)
    return config


def data_axis(config: Config, overrides: list[str], dirs: ConfigDirs | None = None) -> dict:
    """The sweep's datasets: {name: DataConfig}; the selected `data` group when the axis is empty."""
    if not config.sweep.datasets:
        return {config.data.name: config.data}
    datasets = {}
    for name in config.sweep.datasets:
        if name not in available("data", dirs):
            raise UsageError(
                f"sweep.datasets contains {name!r}, which is unknown: available data configs are "
                f"{', '.join(available('data', dirs))}."
            )
        cfg = compose_config([o for o in overrides if not o.startswith("data=")] + [f"data={name}"], dirs)
        datasets[name] = to_typed(cfg).data
    return datasets


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        inv = parse_argv(argv)
        dirs = ConfigDirs.of(inv.config_dirs)
        if inv.help:
            print(USAGE.format(groups=_group_lines(dirs)))
            return 0
        cfg = compose_config(inv.overrides, dirs)
        if inv.cfg:
            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        config = to_typed(cfg)
        return dispatch(config, overrides=inv.overrides, dirs=dirs, command=command_line(argv, cfg))
    except UsageError as err:  # bad input (PlanError, TrackingError, PreflightError, FitInputError, ...)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except YAMLError as err:  # a config file (the user's, under --config-dir) that does not parse
        print(f"error: {yaml_error_sentence(err)}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailure as err:  # valid input, but the work could not be done (e.g. the sweep is busy)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (a bug, not the user's input: keep the traceback)
        traceback.print_exc()
        print(f"error: internal failure ({type(err).__name__}: {err}); this is a bug, not bad input.",
              file=sys.stderr)
        return EXIT_FAILURE


def _group_lines(dirs: ConfigDirs) -> str:
    """One line per group: its options, the user's marked with *."""
    lines = []
    for group in GROUP_SCHEMAS:
        mine = set(dirs.user_options(group))
        lines.append(f"  {group:9s} " + ", ".join(o + ("*" if o in mine else "") for o in available(group, dirs)))
    return "\n".join(lines) + ("\n  yours from: " + ", ".join(str(d) for d in dirs.user) if dirs.user else "")


def program_name() -> str:
    """How the user started us, as they would type it again: `python -m orchestrator` (with the interpreter they
    typed, e.g. `.venv/bin/python`) or the `orchestrator` console script; `python -m orchestrator` otherwise (an
    in-process call such as a test's)."""
    orig = list(getattr(sys, "orig_argv", []))
    for i in range(len(orig) - 1):
        if orig[i] == "-m" and orig[i + 1] == "orchestrator":
            return " ".join([*orig[:1], "-m", "orchestrator"])
    script = sys.argv[0] if sys.argv else ""
    if script.endswith("/orchestrator") or script == "orchestrator":
        return "orchestrator"
    return "python -m orchestrator"


def command_line(argv: list[str], cfg: DictConfig) -> CommandLine:
    """The user's command line as the checks' fixes rewrite it (fitting/command_line.py): every argument they gave,
    --config-dir and overrides included, and the composed values in effect."""
    flat: dict[str, str] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = settings_text(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return CommandLine(program=program_name(), args=tuple(argv), settings=flat)


def dispatch(config: Config, *, overrides: list[str], dirs: ConfigDirs | None = None,
             command: CommandLine | None = None) -> int:
    from orchestrator import commands  # noqa: PLC0415  (heavy imports only once the config is valid)
    from orchestrator.sweep_plan import plan_trials  # noqa: PLC0415

    commands.invoked_as(command)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datasets = data_axis(config, overrides, dirs) if config.action in ("run", "plan", "pilot") else {}
        trials = plan_trials(config, datasets=datasets) if datasets and config.action != "pilot" else []
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if config.action == "pilot":  # it writes its hparams option into the user's config folder
        return commands.action_pilot(config, trials=trials, datasets=datasets, dirs=dirs)
    return commands.ACTIONS[config.action](config, trials=trials, datasets=datasets)
