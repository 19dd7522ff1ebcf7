"""Loading the hydra configs under configs/, and the errors and checks for bad values."""

from __future__ import annotations

import math
import pathlib
from typing import Any, Sequence

import yaml
from hydra import compose, initialize_config_module
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_MODULE = "slac_robot.configs"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and the fix."""


def require_int(key: str, value: Any, minimum: int = 1) -> int:
    """Returns value, or raises ConfigError naming `key` when it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def require_number(key: str, value: Any) -> float:
    """Returns value as a float, or raises ConfigError naming `key` when it is not a finite number
    (inf and nan reach physics, rendering and the safety limits as nonsense, or switch a check off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def require_positive(key: str, value: Any) -> float:
    """Returns value as a float, or raises ConfigError naming `key` when it is not a finite number > 0."""
    if not require_number(key, value) > 0:
        raise ConfigError(f"{key} must be a finite number > 0, got {value!r}")
    return float(value)


def require_ratio(key: str, value: Any) -> float:
    """Returns value as a float, or raises ConfigError naming `key` when it is not a finite number >= 0."""
    if not require_number(key, value) >= 0:
        raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_finite(cfg: DictConfig | dict | list, prefix: str = "", source: str = "") -> None:
    """Raises ConfigError naming the first value in a config that is inf or nan.

    No value of ours means anything when infinite: a physics step, an image size, a goal, a
    learning rate. A safety limit set to inf would switch that protection off: a limit can be
    relaxed (a wider finite value) but not switched off from the config. source: the file the
    config was read from, named in the message."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg)
    for key, value in items:
        path = (f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}") if prefix else str(key)
        if isinstance(value, (dict, list)):
            check_finite(value, path, source)
        elif isinstance(value, float) and not math.isfinite(value):
            where = f"{source}: " if source else ""
            if path.startswith("safety."):
                raise ConfigError(f"{where}{path}={value} would switch that safety limit off; a limit can be relaxed "
                                  "(a wider finite value) but not switched off")
            raise ConfigError(f"{where}{path}={value} is not a finite number; give a finite value")


def group_options(group: str) -> list[str]:
    """The selectable options of a config group (files starting with `_` are shared parts)."""
    import slac_robot.configs

    folder = pathlib.Path(slac_robot.configs.__file__).parent / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def load_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Composes configs/<config_name>.yaml with hydra command-line overrides.

    Raises ConfigError with a one-line message for an unknown group option, an unknown key, a
    malformed override, or a value whose type differs from the declared one (text for a number)."""
    groups = _groups()
    group_choices = [o for o in overrides if "=" in o and o.split("=", 1)[0] in groups]
    for choice in group_choices:
        group, option = choice.split("=", 1)
        if option == "null":
            raise ConfigError(f"{group} cannot be null; choose one of: {', '.join(group_options(group))}")
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
            declared = compose(config_name=config_name, overrides=group_choices)
    except MissingConfigException as error:
        group, _, chosen = (error.missing_cfg_file or "").partition("/")
        if not group:
            raise ConfigError(_first_line(error)) from None
        raise ConfigError(
            f"{group}={chosen} is not an option; choose one of: {', '.join(group_options(group))}"
        ) from None
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        # (hydra reports some malformed overrides as a plain ValueError)
        raise ConfigError(_first_line(error)) from None
    _check_types(OmegaConf.to_container(declared), OmegaConf.to_container(cfg), prefix="")
    try:
        check_finite(cfg)
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        raise ConfigError(_first_line(error)) from None
    return cfg


def load_saved_config(path: pathlib.Path, what: str) -> DictConfig:
    """A run's saved config.yaml; ConfigError naming the file and the problem when it is missing
    or cannot be read. what: the option that pointed here (resume, run), for the message."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}={path.parent}: no config.yaml there; pass the directory of a `slac-robot train` run")
    try:
        saved = OmegaConf.load(path)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, OmegaConfBaseException) as error:
        raise ConfigError(f"{path} cannot be read ({type(error).__name__}: {_first_line(error)}); "
                          "restore it from a copy, or start a new run") from None
    if not isinstance(saved, DictConfig) or "agent" not in saved:
        raise ConfigError(f"{path} is not a slac-robot run's config (no agent section); restore it from a copy")
    try:
        check_finite(saved, source=str(path))
    except OmegaConfBaseException as error:
        raise ConfigError(f"{path} cannot be read ({type(error).__name__}: {_first_line(error)}); "
                          "restore it from a copy, or start a new run") from None
    return saved


def _groups() -> set[str]:
    import slac_robot.configs

    root = pathlib.Path(slac_robot.configs.__file__).parent
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}


def _kind(value: Any) -> str | None:
    """The type a config value declares: "bool", "number", "list", "dict", or None (anything)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, dict)):
        return type(value).__name__
    return None


def _check_types(declared: Any, given: Any, prefix: str) -> None:
    """Raises ConfigError where `given` puts a value of another kind than `declared` has."""
    kind = _kind(declared)
    if kind is None:
        return
    if kind != _kind(given):
        raise ConfigError(f"{prefix} expects a {kind}, got {given!r}")
    if kind == "dict":
        for key, value in declared.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in given:
                choices = f"; choose one of: {', '.join(group_options(path))}" if path in _groups() else ""
                raise ConfigError(f"{path} is missing from the config{choices}")
            _check_types(value, given[key], path)
    elif kind == "list":
        for index, value in enumerate(given):
            if declared:
                _check_types(declared[min(index, len(declared) - 1)], value, f"{prefix}[{index}]")


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(error).__name__
