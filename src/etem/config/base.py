"""Base class of all config sections and the bounded value types they use.

One validator decides: the pydantic models (unknown keys, types, bounds). Types are strict
where YAML makes mistakes easy: a number field takes numbers only (not ``"7"`` nor ``true``),
an integer field integers only (not ``10.5``), a bool field ``true``/``false`` only;
NaN and infinity are refused everywhere.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"expected (low, high) with low <= high, got {tuple(v)}")
    return v


Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
"""An integer > 0."""
Defocus = Annotated[float, Field(ge=-2000, le=2000)]
"""A defocus [nm] within ±2 µm (HRTEM works within tens of nm)."""
TiltMrad = Annotated[float, Field(ge=-200, le=200)]
"""A beam or crystal tilt component [mrad] within ±200 mrad (±11.5°)."""
"""A float > 0."""
Fraction = Annotated[float, Field(gt=0, lt=1)]
"""A float in (0, 1)."""
PositiveRange = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]
"""(low, high) with 0 < low <= high."""
FrameIndex = Annotated[int, Field(ge=0)]


def _odd(v: int) -> int:
    if v % 2 == 0:
        raise ValueError("expected an odd integer (a window centred on its pixel)")
    return v


OddPositiveInt = Annotated[int, Field(ge=1), AfterValidator(_odd)]
"""An odd integer >= 1 (the side of a centred window)."""


def _folder_name(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
        raise ValueError("use letters, digits, '_', '.', '-' only (it names a folder)")
    return v


#: a name that is also one folder name (campaign, code path)
FolderName = Annotated[str, AfterValidator(_folder_name)]
"""A frame number (0-based)."""


def _check_kind(value: Any, ann: Any, where: str) -> None:
    """Raise ValueError when ``value`` has the wrong basic kind for annotation ``ann``."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        _check_kind(value, typing.get_args(ann)[0], where)
        return
    if origin in (Union, types.UnionType):
        options = typing.get_args(ann)
        if value is None and type(None) in options:
            return
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                _check_kind(value, option, where)
                return
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin in (list, tuple) and isinstance(value, list | tuple):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        for i, item in enumerate(value):
            if args:
                _check_kind(item, args[min(i, len(args) - 1)], f"{where}[{i}]")
        return
    if ann is bool and not isinstance(value, bool):
        raise ValueError("expected true or false")
    if ann is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("expected an integer")
    if ann is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("expected a number")


class StrictModel(BaseModel):
    """A config section. Unknown keys are rejected (``extra='forbid'``), numbers, integers and
    booleans must be given as such, NaN and infinity are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_kinds(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None:
            _check_kind(value, field.annotation, info.field_name or "")
        return value
