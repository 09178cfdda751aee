"""Config of experiment tracking (MLflow)."""

from __future__ import annotations

from pydantic import Field

from etem.config.base import StrictModel


class TrackingConfig(StrictModel):
    """Where runs are recorded. ``MLFLOW_TRACKING_URI`` overrides ``uri``."""

    enabled: bool = Field(True, description="record every stage as an MLflow run")
    uri: str | None = Field(
        None, description="tracking URI; default sqlite:///<results_dir>/mlflow.db"
    )
    experiment: str | None = Field(None, description="experiment name; default: campaign name")
