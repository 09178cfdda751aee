# Rules of the training stage: the three networks (etem train ...).
# Each writes a model file under models/; a checkpoint <model>.ckpt beside it lets a killed
# job resume where it stopped (rerun the same target). Tracked in MLflow as train-<net>.
# A GPU is requested when training.<net>.device is "cuda" (etem.cluster.resources.gpus).

from etem.cluster.resources import gpus


rule train_denoiser:
    input:
        config=config_of("training"),
        index=str(LAYOUT.simulation_index),
    output:
        model=str(LAYOUT.model("denoiser")),
    log:
        f"{RESULTS}/logs/train_denoiser.log",
    benchmark:
        f"{RESULTS}/runtime/train_denoiser.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(120),
        gpu=gpus(ETEM.training.denoiser),
    conda:
        ENV
    shell:
        "etem --tag rule=train_denoiser train denoiser --config {input.config:q} --index {input.index:q}"
        " --out {output.model:q} --threads {threads} > {log:q} 2>&1"


rule train_segmenter:
    input:
        config=config_of("training"),
        index=str(LAYOUT.simulation_index),
    output:
        model=str(LAYOUT.model("segmenter")),
    log:
        f"{RESULTS}/logs/train_segmenter.log",
    benchmark:
        f"{RESULTS}/runtime/train_segmenter.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(120),
        gpu=gpus(ETEM.training.segmenter),
    conda:
        ENV
    shell:
        "etem --tag rule=train_segmenter train segmenter --config {input.config:q} --index {input.index:q}"
        " --out {output.model:q} --threads {threads} > {log:q} 2>&1"


rule train_unsupervised:
    input:
        config=config_of("training"),
        movie=str(LAYOUT.synthetic_movie),
    output:
        model=str(LAYOUT.model("unsupervised")),
    log:
        f"{RESULTS}/logs/train_unsupervised.log",
    benchmark:
        f"{RESULTS}/runtime/train_unsupervised.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(120),
        gpu=gpus(ETEM.training.unsupervised),
    conda:
        ENV
    shell:
        "etem --tag rule=train_unsupervised train unsupervised --config {input.config:q} --movie {input.movie:q}"
        " --out {output.model:q} --threads {threads} > {log:q} 2>&1"


rule train_group:
    # one blind-spot network per group of the movie sheet, trained on all of the group's
    # movies (patches streamed from each; settings of training.unsupervised). A glob row is
    # passed as its pattern, quoted (the shell expands nothing; the training expands it).
    input:
        config=config_of("training"),
        movies=lambda wildcards: GROUP_FILES[wildcards.group],
    output:
        model=str(LAYOUT.group_model("{group}")),
    params:
        movies=lambda wildcards: GROUP_MOVIES[wildcards.group],
    wildcard_constraints:
        group="|".join(re.escape(g) for g in GROUP_MOVIES) or "$^",
    log:
        f"{RESULTS}/logs/train_group/{{group}}.log",
    benchmark:
        f"{RESULTS}/runtime/train_group/{{group}}.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(240),
        gpu=gpus(ETEM.training.unsupervised),
    conda:
        ENV
    shell:
        "etem --tag rule=train_group --tag wildcards=group={wildcards.group:q} train unsupervised"
        " --config {input.config:q} --movie {params.movies:q} --out {output.model:q}"
        " --threads {threads} > {log:q} 2>&1"
