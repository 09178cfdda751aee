"""The pretrained general denoiser shipped in the package (package data).

``denoiser.pt`` is an etem model file (:mod:`etem.models.io`) of a supervised,
dose-conditioned denoiser that refines the SURE-chosen Wiener estimate of the whole frame
(``prefilter: wiener_sure``), trained on a campaign with per-image microscope randomisation
(recipe ``bash benchmarks/pretrained.sh``, config ``benchmarks/pretrained.yaml``);
``MODEL_CARD.md`` / ``model_card.json`` beside it give its training config, data digest,
steps, wall hours, machine, validation metrics and learning curve (``learning_curve.csv``,
``learning_curve.png``). ``etem apply`` uses it when no denoiser is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Folder of the packaged model files and their cards.
FOLDER = Path(__file__).resolve().parent

#: How summaries and logs name the packaged model.
SOURCE = "pretrained (packaged)"


def pretrained_path(kind: str = "denoiser") -> Path | None:
    """The packaged model file of ``kind``, or None when the package ships none."""
    path = FOLDER / f"{kind}.pt"
    return path if path.is_file() else None


def model_card() -> dict[str, Any]:
    """The packaged model's card (``model_card.json``); empty when absent."""
    path = FOLDER / "model_card.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
