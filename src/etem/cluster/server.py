"""The MLflow tracking server for multi-node campaigns (PostgreSQL backend, shared artifacts).

Jobs on many nodes cannot share one sqlite file safely; they talk to one ``mlflow server``
instead, selected by ``MLFLOW_TRACKING_URI`` (see :func:`etem.runs.tracking_uri`).
"""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from etem.errors import ConfigError

#: Backend store schemes accepted for a multi-node server (sqlite is for one machine only).
SQL_SCHEMES = ("postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql", "sqlite")


@dataclass(frozen=True)
class ServerSpec:
    """How to start ``mlflow server``.

    Attributes
    ----------
    backend_uri
        SQLAlchemy URI of the backend store, e.g. ``postgresql://etem@dbhost:5432/mlflow``.
    artifact_root
        Directory (on storage the server can write) for run artifacts.
    host
        Interface to bind; ``0.0.0.0`` for jobs on other nodes.
    port
        TCP port.
    serve_artifacts
        True: the server proxies artifact uploads (jobs need no access to ``artifact_root``).
        False: jobs write ``artifact_root`` directly (it must be on a shared filesystem).
    workers
        Server worker processes.
    """

    backend_uri: str
    artifact_root: Path
    host: str = "127.0.0.1"
    port: int = 5000
    serve_artifacts: bool = True
    workers: int = 4

    def validate(self) -> None:
        """Raise :class:`~etem.errors.ConfigError` for unusable settings."""
        scheme = urlparse(self.backend_uri).scheme
        if scheme not in SQL_SCHEMES:
            raise ConfigError(
                f"--backend-uri {self.backend_uri!r}: expected a database URI "
                "(postgresql://user@host:port/db)"
            )
        if scheme.startswith("postgresql"):
            try:
                import psycopg2  # noqa: F401  # lazy: optional driver (cluster extra), checked here
            except ImportError:
                raise ConfigError(
                    "a PostgreSQL backend needs the psycopg2 driver: "
                    "pip install psycopg2-binary"
                ) from None
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: expected 1-65535")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: expected >= 1")

    @property
    def advertised_host(self) -> str:
        """Host name jobs use to reach the server."""
        if self.host in ("0.0.0.0", "::", ""):
            fqdn = socket.getfqdn()
            return socket.gethostname() if fqdn.startswith("localhost") else fqdn
        return self.host

    @property
    def tracking_uri(self) -> str:
        """The ``MLFLOW_TRACKING_URI`` jobs must export."""
        return f"http://{self.advertised_host}:{self.port}"

    def command(self) -> list[str]:
        """The ``mlflow server`` command line."""
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        root = self.artifact_root.resolve()
        cmd = [
            mlflow, "server",
            "--backend-store-uri", self.backend_uri,
            "--host", self.host,
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]
        if self.serve_artifacts:
            cmd += ["--serve-artifacts", "--artifacts-destination", root.as_uri()]
        else:
            cmd += ["--no-serve-artifacts", "--default-artifact-root", root.as_uri()]
        if self.host not in ("127.0.0.1", "localhost"):
            hosts = {self.advertised_host, socket.gethostname(), "localhost", "127.0.0.1"}
            hosts |= {f"{h}:{self.port}" for h in list(hosts)}
            cmd += ["--allowed-hosts", ",".join(sorted(hosts))]
        return cmd
