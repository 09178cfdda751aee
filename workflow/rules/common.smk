# Helpers shared by the rules: the results layout, shard lists, the resolved config file and
# the command prefix every rule uses. Paths come from etem.paths.Layout (one definition).

import os
import shlex
import shutil
import sys

from etem.config import write_resolved
from etem.paths import Layout
from etem.runs import tracking_uri

# Jobs call the `etem` of the environment Snakemake runs in (e.g. .venv/bin/snakemake without
# an activated venv): put its folder first on the jobs' PATH. Every job records its MLflow run
# in the campaign's store (MLFLOW_TRACKING_URI of the submitting shell wins).
_BIN = os.path.dirname(sys.executable)
_PREFIX = "set -euo pipefail; "
if shutil.which("etem") != os.path.join(_BIN, "etem") and os.path.exists(os.path.join(_BIN, "etem")):
    _PREFIX += f"export PATH={shlex.quote(_BIN)}:\"$PATH\"; "
_PREFIX += (
    f"_etem_store={shlex.quote(tracking_uri(ETEM))}; "
    'export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-$_etem_store}"; '
)
# shell.prefix is formatted like a rule's command: literal braces are doubled.
shell.prefix(_PREFIX.replace("{", "{{").replace("}", "}}"))

LAYOUT = Layout(ETEM.results_path)
RESULTS = str(LAYOUT.root)
# Every job reads the resolved config (defaults filled in); rewritten only when it changes.
CONFIG_FILE = str(write_resolved(ETEM, LAYOUT.config))
STRUCTURE_SHARDS = [f"{i:03d}" for i in range(ETEM.structures.n_shards)]
SIMULATION_SHARDS = [f"{i:03d}" for i in range(ETEM.simulation.n_shards)]
ENV = "../../envs/etem.yaml"
# Rules call `etem --tag rule=<name> ...` so MLflow records the rule of each run.


def mem_mb(base):
    """mem_mb that grows with the attempt, so --retries recovers from out-of-memory kills."""
    return lambda wildcards, attempt: base * attempt


def runtime_min(base):
    """Runtime [min] that grows with the attempt, so --retries recovers from time-outs."""
    return lambda wildcards, attempt: base * attempt
