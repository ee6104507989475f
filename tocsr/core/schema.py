"""Load frozen dataclasses from plain mappings (YAML/JSON), validating every key on the way.

Why not pydantic: the GPU machines this suite measures on do not ship it, and the error format the
suite promises (file, dotted key, value found, what was expected: one line) is easier to keep exact
with a small explicit loader. Supported field types: bool, int, float, str, Literal[...], X | None,
tuple[X, ...], dict[str, X] and nested frozen dataclasses. Numeric bounds come from field metadata:

    latency_ms: float = field(metadata={"gt": 0})

and cross-field rules from the dataclass's own `__post_init__` raising `ValueError`.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from tocsr.core.errors import ConfigError

T = TypeVar("T")


class SchemaError(ConfigError):
    """One bad value: where it is, what it was, what was expected."""

    def __init__(self, source: str, key: str, value: Any, expected: str):
        self.source, self.key, self.value, self.expected = source, key, value, expected
        shown = "<missing>" if value is _MISSING else repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        # A YAML key may hold any text, newlines included; repr keeps the message on one line.
        shown_key = key if key.isprintable() else repr(key)
        where = f"{source}: {shown_key}" if key else source
        super().__init__(f"{where} = {shown}: expected {expected}")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " (or null)"
    if origin is tuple:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of name -> {_describe(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _check_bounds(value: Any, meta: Mapping[str, Any], source: str, key: str, tp_desc: str) -> None:
    checks = (
        ("gt", lambda v, b: v > b, "> {}"),
        ("ge", lambda v, b: v >= b, ">= {}"),
        ("lt", lambda v, b: v < b, "< {}"),
        ("le", lambda v, b: v <= b, "<= {}"),
    )
    for name, ok, text in checks:
        if name in meta and value is not None and not ok(value, meta[name]):
            raise SchemaError(source, key, value, f"{tp_desc} {text.format(meta[name])}")
    pattern = meta.get("pattern")
    if pattern is not None and isinstance(value, str):
        import re

        if not re.fullmatch(pattern, value):
            raise SchemaError(source, key, value, meta.get("pattern_help", f"a string matching {pattern}"))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, source, key)
        for candidate in inner:
            try:
                return _convert(candidate, value, source, key)
            except SchemaError:
                continue
        raise SchemaError(source, key, value, _describe(tp))
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool) != any(isinstance(a, bool) for a in get_args(tp)):
            raise SchemaError(source, key, value, _describe(tp))
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SchemaError(source, key, value, _describe(tp))
        (inner,) = [a for a in get_args(tp) if a is not Ellipsis]
        return tuple(_convert(inner, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SchemaError(source, key, value, _describe(tp))
        _, inner = get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SchemaError(source, f"{key}.{k}", k, "string keys")
            out[k] = _convert(inner, v, source, f"{key}.{k}")
        return out
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise SchemaError(source, key, value, _describe(tp))
        return from_mapping(tp, value, source=source, prefix=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise SchemaError(source, key, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(source, key, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise SchemaError(source, key, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SchemaError(source, key, value, "a string")
        return value
    if tp is Any:
        return value
    raise TypeError(f"schema loader does not support field type {tp!r} (at {key})")


def from_mapping(cls: type[T], data: Mapping[str, Any], *, source: str, prefix: str = "") -> T:
    """Build `cls` from `data`, raising `SchemaError` on the first unknown, missing or bad key.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Budget:
        ...     latency_ms: float = dataclasses.field(metadata={"gt": 0})
        >>> from_mapping(Budget, {"latency_ms": 5}, source="p.yaml")
        Budget(latency_ms=5.0)
    """
    if not isinstance(data, Mapping):
        raise SchemaError(source, prefix, data, _describe(cls))
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = (prefix + ".") if prefix else ""
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise SchemaError(source, dotted + str(unknown[0]), data[unknown[0]],
                          f"no such key here; allowed keys: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = dotted + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(source, key, _MISSING, f"a value ({_describe(hints[name])}); it is required")
            continue
        value = _convert(hints[name], data[name], source, key)
        _check_bounds(value, f.metadata, source, key, _describe(hints[name]))
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as err:  # cross-field rules from __post_init__
        raise ConfigError(f"{source}{': ' + prefix if prefix else ''}: {err}") from None


def to_mapping(obj: Any) -> Any:
    """The inverse of `from_mapping`: plain dicts/lists, ready for JSON or YAML."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    return obj


__all__ = ["SchemaError", "from_mapping", "to_mapping"]
