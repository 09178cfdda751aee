"""Config of the campaign's movies: the movie sheet (experiments) and the synthetic movie row."""

from __future__ import annotations

from pydantic import Field

from etem.config.base import StrictModel


class MoviesConfig(StrictModel):
    """Which movies the apply stage and the report run on.

    ``sheet`` names a TSV movie sheet (one row per experiment movie, columns in
    ``etem sheet schema`` and the README section "Your own movies"); ``synthetic`` adds the
    campaign's own synthetic movie as one more row named ``synthetic`` (so the demo and smoke
    campaigns need no sheet).
    """

    sheet: str | None = Field(
        None,
        description="movie sheet (TSV: name, path, optional pixel_size_A, dose_e_per_px, "
        "frame_time_s, group, denoiser, finetune); relative paths in it are relative to the "
        "sheet's folder",
    )
    synthetic: bool = Field(
        True, description="also run the campaign's synthetic movie, as the row 'synthetic'"
    )
