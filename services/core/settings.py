"""Settings by flag or environment: one pydantic-settings class per process.

Each service declares a ``BaseSettings`` subclass with its own env prefix and a
description per field. ``parse_settings`` turns that class into a command line, so
that ``--help`` documents every flag with its environment variable and default, and
flags given on the command line override the environment.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return origin in (list, tuple)


def build_parser(
    settings_cls: type[BaseSettings], prog: str, description: str
) -> argparse.ArgumentParser:
    """An argparse parser whose flags are the settings' fields."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only flags actually given override the environment
    )
    for name, field in settings_cls.model_fields.items():
        env = f"{prefix}{name}".upper()
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description or ''} [env {env}; default {default!r}]"
        # A field may name its flag, where its own name would shadow a pydantic method.
        flag = (field.json_schema_extra or {}).get("flag", _flag(name))
        if field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif _is_list(field.annotation):
            parser.add_argument(flag, dest=name, nargs="+", metavar=name.upper(), help=help_text)
        else:
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=help_text)
    return parser


def parse_settings(
    settings_cls: type[S], argv: Sequence[str] | None, prog: str, description: str
) -> S:
    """Settings from the environment, overridden by the flags in ``argv``."""
    parser = build_parser(settings_cls, prog, description)
    given = vars(parser.parse_args(argv))
    try:
        return settings_cls(**given)
    except ValueError as exc:  # pydantic's ValidationError names the field and the problem
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
