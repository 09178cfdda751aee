# The per-stage config files: <results>/config/<stage>.yaml, one per stage of
# etem.config.stages.STAGE_SECTIONS, written by a job (never while the rules are parsed, so
# `snakemake -n` writes nothing into results/).

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
    conda:
        ENV
    shell:
        "printf '%s' {params.text:q} > {output:q}.tmp 2> {log:q} && mv {output:q}.tmp {output:q}"
