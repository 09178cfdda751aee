"""``config/defaults.yaml``: every config key with its default, unit and meaning, generated
from the pydantic models (the one definition), so the file never drifts from the code."""

from __future__ import annotations

import json
import textwrap
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from etem.config import EtemConfig

HEADER = """\
# Every key of an etem campaign config, with its default and meaning (units in brackets).
# Generated from the models in src/etem/config/ by `etem config defaults`; do not edit:
# copy the keys you change into your own config (config/demo.yaml is an example).
"""


def _section(model: type[BaseModel]) -> type[BaseModel] | None:
    """The config-section class of a field annotation, if it is one (also ``X | None``)."""
    for t in (model, *typing.get_args(model)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _value(v: Any) -> str:
    """A default as one line of YAML flow style."""
    if isinstance(v, tuple):
        v = list(v)
    text = yaml.safe_dump(json.loads(json.dumps(v, default=str)), default_flow_style=True,
                          width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _lines(model: type[BaseModel], values: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    for name, field in model.model_fields.items():
        doc = field.description or ""
        sub = _section(field.annotation)  # type: ignore[arg-type]
        if sub is not None and isinstance(values.get(name), dict):
            head = (sub.__doc__ or "").strip().splitlines()[0] if sub.__doc__ else ""
            if head:
                out.append(f"{pad}# {head}")
            out.append(f"{pad}{name}:")
            out += _lines(sub, values[name], indent + 1)
            continue
        if doc:
            out += [f"{pad}# {line}" for line in textwrap.wrap(doc, 96 - len(pad))]
        out.append(f"{pad}{name}: {_value(values.get(name))}")
    return out


def defaults_yaml() -> str:
    """The text of ``config/defaults.yaml`` (every key of :class:`EtemConfig`)."""
    values = EtemConfig().model_dump(mode="json")
    return HEADER + "\n".join(_lines(EtemConfig, values, 0)) + "\n"
