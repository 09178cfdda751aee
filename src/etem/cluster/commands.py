"""Handler of ``etem tracking-server`` (arguments in :mod:`etem.cluster.cli`)."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from typing import Any

from etem.cluster.server import ServerSpec
from etem.errors import ConfigError

log = logging.getLogger("etem.cluster.commands")


def tracking_server(args: argparse.Namespace) -> int:
    """``etem tracking-server``: serve MLflow with a database backend until interrupted."""
    if not args.backend_uri:
        raise ConfigError("--backend-uri is required (or set ETEM_TRACKING_BACKEND_URI)")
    spec = ServerSpec(
        backend_uri=args.backend_uri, artifact_root=args.artifact_root, host=args.host,
        port=args.port, serve_artifacts=args.serve_artifacts, workers=args.workers,
    )
    spec.validate()
    cmd = spec.command()
    print(f"export MLFLOW_TRACKING_URI={spec.tracking_uri}", flush=True)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    spec.artifact_root.mkdir(parents=True, exist_ok=True)
    log.info("starting: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd)

    def _forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, _forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            return 130
    finally:
        sys.stdout.flush()
