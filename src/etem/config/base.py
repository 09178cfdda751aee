"""Base class of all config sections: unknown keys are errors, assignments are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section. Unknown keys are rejected (``extra='forbid'``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
