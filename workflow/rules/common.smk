# Helpers shared by the rules: the results layout, shard lists, the per-stage config files and
# the command prefix every rule uses. Paths come from etem.paths.Layout (one definition).
# Nothing here writes a file while the rules are parsed: `snakemake -n` writes nothing into
# results/ (the per-stage configs are outputs of the rule stage_config below).

import os
import re
import shlex
import shutil
import sys

from etem.config import STAGE_SECTIONS, stage_yaml
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


def config_of(stage):
    """The resolved config file of ``stage`` (an input of every rule of that stage)."""
    return str(LAYOUT.stage_config(stage))


# Each stage reads only its own config sections (etem.config.stages.STAGE_SECTIONS), resolved
# with defaults into <results>/config/<stage>.yaml by this rule. Its text is a param: Snakemake
# reruns it (and then the stage's jobs, whose input it is) only when the text changes, e.g. an
# apply setting re-runs the apply and report jobs, never the simulation or a training.
rule stage_config:
    output:
        config_of("{stage}"),
    params:
        text=lambda wildcards: stage_yaml(ETEM, wildcards.stage),
    wildcard_constraints:
        stage="|".join(re.escape(s) for s in STAGE_SECTIONS),
    log:
        f"{RESULTS}/logs/stage_config/{{stage}}.log",
    localrule: True
    shell:
        "printf '%s' {params.text:q} > {output:q}.tmp 2> {log:q} && mv {output:q}.tmp {output:q}"
