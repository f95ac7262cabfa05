"""Configuration: frozen dataclasses loaded from YAML plus ``key=value`` overrides, validated once.

Each entry point declares a frozen dataclass (nested dataclasses allowed). ``load_config`` merges, in order,
the dataclass defaults, a YAML file and CLI/MLproject overrides such as ``search.epochs=3``; coerces values to
the annotated types; and raises :class:`ConfigError` with one line naming the offending field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from .errors import UserError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


class ConfigError(UserError):
    """A bad configuration file or field."""


class FieldError(ConfigError):
    """A bad value of one field, raised by a config's ``__post_init__``; :func:`load_config` reports it under the
    field's full dotted name (``search.architect.sampler: ...``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like key=value (e.g. epochs=3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _set_nested(d: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        sub = d.setdefault(k, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {k!r} is not a section")
        d = sub
    d[keys[-1]] = value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(tp, dict(value), where + ".")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().lstrip("-").isdigit()
        ):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(str(value))
    return value


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config field '{prefix}{unknown[0]}'; known fields: {', '.join(sorted(fields))}"
        )
    kwargs = {name: _coerce(v, hints[name], prefix + name) for name, v in data.items()}
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(f"{prefix}{e.field}: {e.message}") from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls`` <- YAML file at ``path`` <- ``overrides`` ("a.b=value"); validated once."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"config file {p} is not a text (UTF-8) YAML file") from None
        except OSError as e:
            raise ConfigError(f"config file {p}: cannot be read ({e.strerror or e})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded
    for item in overrides:
        keys, value = _parse_override(item)
        _set_nested(data, keys, value)
    return _build(cls, data)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain (YAML/JSON-able) dict of a config dataclass."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def flatten_config(cfg: Any) -> dict[str, str]:
    """``{"a.b": "value"}`` strings of a config, for MLflow params."""
    out: dict[str, str] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}{k}.", x)
        else:
            out[prefix.rstrip(".")] = ",".join(map(str, v)) if isinstance(v, list) else str(v)

    walk("", config_to_dict(cfg))
    return out


# ---- validation helpers of config dataclasses -----------------------------------------------------------


def check_finite(cfg: Any) -> None:
    """FieldError for the first float field of a config dataclass that is NaN or infinite."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        values = v if isinstance(v, tuple) else (v,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in values):
            raise FieldError(f.name, f"must be a finite number, got {v!r}")


def check_registered(field_name: str, value: str, what: str, available: Sequence[str]) -> None:
    if value not in available:
        raise FieldError(field_name, f"unknown {what} {value!r}; available: {', '.join(available)}")


def check_at_least(cfg: Any, minimum: float, *names: str) -> None:
    """FieldError for the first of ``names`` whose value is below ``minimum``."""
    for name in names:
        v = getattr(cfg, name)
        if not v >= minimum:
            raise FieldError(name, f"must be >= {minimum}, got {v}")


def check_positive(cfg: Any, *names: str) -> None:
    """FieldError for the first of ``names`` whose value is not > 0."""
    for name in names:
        v = getattr(cfg, name)
        if not v > 0:
            raise FieldError(name, f"must be > 0, got {v}")


def check_torch_device(name: str, field_name: str = "device") -> torch.device:
    """The torch device ``name`` if this machine has it, else a FieldError naming ``field_name``."""
    import torch
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as e:
        raise FieldError(field_name, f"{name!r} is not a torch device ({str(e).splitlines()[0]})") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FieldError(field_name, f"{name!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FieldError(field_name, f"{name!r}: this machine has {torch.cuda.device_count()} CUDA devices")
        return dev
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    raise FieldError(field_name, f"{name!r}: device type {dev.type!r} is not available here (cpu or cuda)")
