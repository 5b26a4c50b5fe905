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
from dataclasses import dataclass, is_dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from orchestrator.config import GROUP_SCHEMAS, Config
from orchestrator.errors import EXIT_FAILURE, EXIT_USAGE, RunFailure, UsageError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

USAGE = """\
usage: python -m orchestrator [GROUP=OPTION ...] [KEY=VALUE ...] [--cfg job|all] [--help]

actions (action=...):
  run      plan the sweep and run every pending trial (default)
  plan     print the plan (trials, cost, status); runs and writes nothing
  fit      fit scaling laws to a sweep's runs (or fit.runs_csv=PATH)
  report   write the frontier report

groups:
{groups}
examples:
  python -m orchestrator sweep=cpu_small action=plan
  python -m orchestrator sweep=tiny sweep.budgets=[1e10,3e10] model.head_dim=8
  python -m orchestrator sweep=tiny --cfg job
"""


def register_schemas() -> None:
    """Put every group's dataclass schema in Hydra's ConfigStore (validated on composition)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"{group}_schema", node=schema)


def available(group: str) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@dataclass
class Invocation:
    overrides: list[str]
    cfg: str | None = None
    help: bool = False


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
        elif arg.startswith("-"):
            raise UsageError(f"unknown flag {arg!r}: allowed are --cfg job|all and --help; configure with KEY=VALUE.")
        else:
            inv.overrides.append(arg)
    return inv


def _check_group_choices(overrides: list[str]) -> None:
    """Unknown option of a config group -> one sentence listing the available options."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key in GROUP_SCHEMAS and value not in available(key):
            raise UsageError(f"{key}={value} is unknown: available {key} configs are {', '.join(available(key))}.")


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


def _check_additions(overrides: list[str]) -> None:
    """`+key=value` may only add what a schema allows: a key under a free-form mapping (such as
    trainer.surrogate.<knob>) or a user's config group (a folder in conf/). Hydra's `+` otherwise adds any
    key at all, so `+acton=plan` would be accepted and ignored while a full sweep runs."""
    schema = OmegaConf.structured(Config)
    for override in overrides:
        if not override.startswith("+"):
            continue
        key = _override_key(override)
        if "@" in key or ("." not in key and (CONF_DIR / key).is_dir()):
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


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose conf/ with Hydra; composition or type errors become one-sentence UsageErrors."""
    _check_given_once(overrides)
    _check_additions(overrides)
    _check_group_choices(overrides)
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except MissingConfigException as err:
        raise UsageError(str(err).splitlines()[0]) from None
    except OverrideParseException as err:
        bad = str(err).splitlines()[0].split(": ", 1)[-1]
        raise UsageError(f"{bad!r} is not a valid override: write KEY=VALUE, and quote values with special "
                         f"characters (KEY='a value'); see Hydra's override grammar.") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(_explain(err)) from None


def _explain(err: BaseException) -> str:
    """Turn Hydra/OmegaConf's multi-line errors into one sentence naming the key."""
    cause: BaseException = err
    while cause.__cause__ is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or "?"
        msg = str(getattr(cause, "msg", cause)).splitlines()[0]
        if "not in struct" in msg or "Key '" in msg and "not" in msg:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            return f"{key} is not a config key{_known_keys(parent)}."
        return f"{key}: {msg.rstrip('.')}."
    return str(err).splitlines()[0]


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


def data_axis(config: Config, overrides: list[str]) -> dict:
    """The sweep's datasets: {name: DataConfig}; the selected `data` group when the axis is empty."""
    if not config.sweep.datasets:
        return {config.data.name: config.data}
    datasets = {}
    for name in config.sweep.datasets:
        if name not in available("data"):
            raise UsageError(
                f"sweep.datasets contains {name!r}, which is unknown: available data configs are "
                f"{', '.join(available('data'))}."
            )
        cfg = compose_config([o for o in overrides if not o.startswith("data=")] + [f"data={name}"])
        datasets[name] = to_typed(cfg).data
    return datasets


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        inv = parse_argv(argv)
        if inv.help:
            groups = "\n".join(f"  {g:9s} {', '.join(available(g))}" for g in GROUP_SCHEMAS)
            print(USAGE.format(groups=groups))
            return 0
        cfg = compose_config(inv.overrides)
        if inv.cfg:
            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        config = to_typed(cfg)
        return dispatch(config, overrides=inv.overrides)
    except UsageError as err:  # bad input (PlanError, TrackingError, PreflightError, FitInputError, ...)
        print(f"error: {err}", file=sys.stderr)
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


def dispatch(config: Config, *, overrides: list[str]) -> int:
    from orchestrator import commands  # noqa: PLC0415  (heavy imports only once the config is valid)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datasets = data_axis(config, overrides) if config.action in ("run", "plan") else {}
        trials = commands.plan_trials(config, datasets=datasets) if datasets else []
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return commands.ACTIONS[config.action](config, trials=trials)
