# Retrain stage: re-run logged trainings from their MLflow runs (logged config + inputs), on any
# profile, and compare old vs new validation metrics.
#
#   ETEM_RETRAIN_RUN_IDS=<run_id>[,<run_id>...] snakemake retrain --configfile config/demo.yaml
#   snakemake --profile profiles/slurm retrain ...           # the same on SLURM
#
# (Run ids are read from the environment: the campaign config rejects unknown keys.) The runs
# are looked up in MLFLOW_TRACKING_URI, else in this campaign's default store. Each retrain
# writes <results>/retrain/<run_id>/model.pt (the new weights; the original model file is left
# alone) and comparison.txt (new vs logged final metrics), and is itself an MLflow run tagged
# etem.retrain_of=<run_id>. To retrain from a config file instead, run the training rules with
# that config: snakemake --configfile my.yaml --forcerun train_denoiser.

import os

from etem.cluster.resources import gpus, retrain_run_ids


# Cheap bookkeeping rules run on the submitting host under cluster executors (no queue wait).
localrules:
    gather_structures,
    index_images,
    make_report,
    retrain,


rule retrain_network:
    input:
        config=config_of("training"),
    output:
        model=f"{RESULTS}/retrain/{{run_id}}/model.pt",
        comparison=f"{RESULTS}/retrain/{{run_id}}/comparison.txt",
    log:
        f"{RESULTS}/logs/retrain_network/{{run_id}}.log",
    benchmark:
        f"{RESULTS}/runtime/retrain_network/{{run_id}}.tsv"
    wildcard_constraints:
        run_id="[0-9a-f]{32}",
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(120),
        gpu=max(gpus(ETEM.training.denoiser), gpus(ETEM.training.segmenter),
                gpus(ETEM.training.unsupervised)),
    conda:
        ENV
    shell:
        "etem --tag rule=retrain_network retrain --run-id {wildcards.run_id:q} --config {input.config:q}"
        " --out {output.model:q} --threads {threads} > {output.comparison:q} 2> {log:q}"


rule retrain:
    input:
        lambda wildcards: expand(
            rules.retrain_network.output.comparison, run_id=retrain_run_ids(os.environ.get("ETEM_RETRAIN_RUN_IDS"))
        ),
    log:
        f"{RESULTS}/logs/retrain/retrain.log",
    conda:
        ENV
    shell:
        "cat {input:q} | tee {log:q}"
