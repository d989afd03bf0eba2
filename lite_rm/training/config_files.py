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
    """Set ``section.key`` (or ``key``) in a nested config dict, creating the section."""
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
        ConfigError: unreadable file, syntax error, unknown key or bad value (named).
    """
    data = read_config_file(path)
    for key, value in (overrides or {}).items():
        set_key(data, key, value)
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
