"""Config files for ``lite-rm train``: TOML or YAML into the nested dict :class:`TrainConfig` is built from.

Parsing only: values are validated by :meth:`lite_rm.training.config.TrainConfig.from_dict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lite_rm.files import TOMLDecodeError, parse_toml
from lite_rm.training.config import ConfigError, TrainConfig


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict (not yet validated).

    Raises:
        ConfigError: missing file, unknown suffix or syntax error.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            data = parse_toml(text)
        except TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from None
    elif suffix in (".yaml", ".yml"):
        from lite_rm.extras import require

        yaml = require("yaml")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
    else:
        raise ConfigError(f"{path}: expected a .toml, .yaml or .yml config file, found {suffix or 'no suffix'!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of keys at the top level, found {type(data).__name__}")
    return data


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.key`` (or ``key``, or ``general.proportions.SET``) in a nested config dict, creating
    the section."""
    if dotted.startswith("general.proportions.") and dotted.count(".") == 2:
        data.setdefault("general", {}).setdefault("proportions", {})[dotted.split(".")[2]] = value
        return
    *sections, key = dotted.split(".")
    target = data
    for section in sections:
        if section not in ("base", "general", "custom") or not isinstance(target.setdefault(section, {}), dict):
            raise ConfigError(f"config key {dotted!r}: sections are base, general and custom")
        target = target[section]
    target[key] = value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a config file and apply ``overrides`` (``{"custom.l2sp_coef": 0.1}``).

    Raises:
        ConfigError: unreadable file, syntax error, unknown key or bad value (named, after the file's path).
    """
    return config_from(read_config_file(path), overrides, source=path)


def config_from(data: dict[str, Any], overrides: dict[str, Any] | None = None,
                source: str | Path | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a parsed config (:func:`read_config_file`, or ``{}`` for the defaults)
    with ``overrides`` (``{"custom.l2sp_coef": 0.1}``, see :func:`set_key`) applied; changes ``data``.

    Args:
        data: the parsed config.
        overrides: dotted keys and their values, applied in order.
        source: the file ``data`` came from, put before error messages.

    Raises:
        ConfigError: an unknown key or a bad value (named).
    """
    for key, value in (overrides or {}).items():
        set_key(data, key, value)
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as err:
        if source is None:
            raise
        raise ConfigError(f"{source}: {err}") from None
