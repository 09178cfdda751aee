"""Build a structure from its recipe: dispatch to the family builders."""

from __future__ import annotations

from typing import Any

from etem.structures.oxides import build_oxide
from etem.structures.pt_on_ceo2 import build_pt_on_ceo2
from etem.structures.recipes import Recipe

#: Builder of each family.
BUILDERS = {"pt_on_ceo2": build_pt_on_ceo2, "oxide": build_oxide}


def build(recipe: Recipe) -> Any:
    """Build the structure of ``recipe`` (not validated; see etem.structures.validation)."""
    try:
        builder = BUILDERS[recipe.family]
    except KeyError:
        raise ValueError(f"unknown family {recipe.family!r}") from None
    return builder(recipe)
