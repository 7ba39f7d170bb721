"""Settings by flag or environment: one pydantic-settings class per process.

Each service declares a ``BaseSettings`` subclass with its own env prefix and a
description per field. ``parse_settings`` turns that class into a command line, so
that ``--help`` documents every flag with its environment variable and default, flags
given on the command line override the environment, and a bad value is one argparse
error line that names the flag (or the variable) and what is wrong with it.

Kept by hand rather than pydantic-settings' own CLI, which takes a list as ``--tickers A
--tickers B`` or ``A,B`` but not the ``--tickers A B`` the chart and the README use, and
reports a bad value as pydantic's multi-line error.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return origin in (list, tuple)


def _flag(name: str, field: FieldInfo) -> str:
    # A field may name its flag, where its own name would shadow a pydantic method.
    return (field.json_schema_extra or {}).get("flag", "--" + name.replace("_", "-"))


def _env(settings_cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    if isinstance(field.validation_alias, str):  # a standard variable, such as MLflow's
        return field.validation_alias
    return f"{settings_cls.model_config.get('env_prefix', '')}{name}".upper()


def build_parser(
    settings_cls: type[BaseSettings], prog: str, description: str
) -> argparse.ArgumentParser:
    """An argparse parser whose flags are the settings' fields, secrets aside (those come from
    the environment or a file only)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples' lines
        argument_default=argparse.SUPPRESS,  # only flags actually given override the environment
    )
    for name, field in settings_cls.model_fields.items():
        if field.annotation is SecretStr:  # never a flag: any user of the host sees the flags
            continue
        default = field.get_default(call_default_factory=True)
        env = _env(settings_cls, name, field)
        help_text = f"{field.description or ''} [env {env}; default {default!r}]"
        flag = _flag(name, field)
        if field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif _is_list(field.annotation):
            parser.add_argument(flag, dest=name, nargs="+", metavar=name.upper(), help=help_text)
        else:
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=help_text)
    return parser


def describe_errors(
    error: ValidationError, settings_cls: type[BaseSettings], given: dict[str, Any]
) -> str:
    """Pydantic's errors as one line: where each bad value came from, and what is wrong."""
    parts = []
    for item in error.errors():
        if not item["loc"]:  # a rule between fields: its message names them
            parts.append(item["msg"].removeprefix("Value error, "))
            continue
        name = str(item["loc"][0])
        field = settings_cls.model_fields.get(name)
        if field is None:  # reported under its alias
            name, field = next(
                (
                    (n, f)
                    for n, f in settings_cls.model_fields.items()
                    if f.validation_alias == name
                ),
                (name, None),
            )
        where = name
        if field is not None:
            source = _flag(name, field) if name in given else _env(settings_cls, name, field)
            where = f"argument {source}" if name in given else source
        message = item["msg"].removeprefix("Value error, ")
        got = "" if repr(item["input"]) in message else f" (got {item['input']!r})"
        parts.append(f"{where}: {message[0].lower()}{message[1:]}{got}")
    return "; ".join(parts)


def parse_settings(
    settings_cls: type[S], argv: Sequence[str] | None, prog: str, description: str
) -> S:
    """Settings from the environment, overridden by the flags in ``argv``."""
    parser = build_parser(settings_cls, prog, description)
    given = vars(parser.parse_args(argv))
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        parser.error(describe_errors(exc, settings_cls, given))
        raise  # unreachable: parser.error exits
