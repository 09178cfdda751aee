# etem: the whole campaign (structures -> images -> networks -> benchmarks -> movies -> report).
# This file only loads and validates the config and includes the rules; every rule is a thin
# call of the `etem` CLI (all logic lives in the package under src/).
#
#   snakemake --cores all                                   # demo campaign (config/demo.yaml)
#   snakemake --cores all --configfile config/config.yaml   # the full campaign
#   snakemake --profile profiles/slurm --configfile config/config.yaml   # on SLURM

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

if not config and workflow.overwrite_configfiles:
    raise WorkflowError(f"invalid config: {', '.join(map(str, workflow.overwrite_configfiles))}"
                        ": empty (give at least `name:`)")
if not config:
    configfile: "config/demo.yaml"

from etem.config import load_config
from etem.errors import ConfigError

try:
    ETEM = load_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}")  # one validator: the pydantic models


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/simulation.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/apply.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/retrain.smk"


rule all:
    input:
        str(LAYOUT.report),
    default_target: True
