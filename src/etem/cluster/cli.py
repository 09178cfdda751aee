"""``etem tracking-server``: start an MLflow server for multi-node (e.g. SLURM) campaigns."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("etem.cluster.cli")


def register(sub: Any) -> None:
    """Add the ``tracking-server`` subcommand."""
    p = sub.add_parser(
        "tracking-server",
        help="start an MLflow tracking server (PostgreSQL backend) for multi-node runs",
        description=(
            "Start `mlflow server` with a database backend store and an artifact root, for "
            "campaigns whose jobs run on many nodes (sqlite is safe on one machine only). "
            "Prints the MLFLOW_TRACKING_URI that every job must export (the SLURM profile "
            "passes the submitting shell's environment to the jobs), then serves until "
            "interrupted. Inputs: a reachable database (PostgreSQL needs the psycopg2 driver). "
            "Outputs: runs in the database, artifacts under --artifact-root."
        ),
    )
    p.add_argument(
        "--backend-uri", default=os.environ.get("ETEM_TRACKING_BACKEND_URI"),
        help="backend store URI, e.g. postgresql://etem@dbhost:5432/mlflow "
        "(default: $ETEM_TRACKING_BACKEND_URI)",
    )
    p.add_argument(
        "--artifact-root", type=Path, default=Path("mlartifacts"),
        help="artifact directory (default: ./mlartifacts; on shared storage with "
        "--no-serve-artifacts)",
    )
    p.add_argument(
        "--host", default="127.0.0.1",
        help="interface to bind (default: 127.0.0.1); 0.0.0.0 to accept jobs from other nodes",
    )
    p.add_argument("--port", type=int, default=5000, help="TCP port (default: 5000)")
    p.add_argument("--workers", type=int, default=4, help="server worker processes (default: 4)")
    p.add_argument(
        "--no-serve-artifacts", dest="serve_artifacts", action="store_false",
        help="jobs write artifacts straight to --artifact-root (shared filesystem) instead of "
        "uploading them through the server",
    )
    p.add_argument(
        "--print-command", action="store_true",
        help="print the mlflow command and the URI to export, start nothing",
    )
    p.set_defaults(handler="etem.cluster.commands:tracking_server")
