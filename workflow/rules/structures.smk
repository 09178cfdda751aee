# Rules of the structures stage: the library of atomic models (docs/structures.md).
# One job per shard (`etem structures build --shard i/n`), then one gather job that writes
# the campaign manifest, the gallery figure and the MLflow run of the stage.


rule build_structures:
    input:
        config=config_of("structures"),
    output:
        shard=directory(f"{RESULTS}/structures/shard_{{shard}}"),
    params:
        shard=lambda wildcards: f"{int(wildcards.shard)}/{len(STRUCTURE_SHARDS)}",
    log:
        f"{RESULTS}/logs/build_structures/{{shard}}.log",
    benchmark:
        f"{RESULTS}/runtime/build_structures/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(1500),
        runtime=runtime_min(20),
    conda:
        ENV
    shell:
        "etem --tag rule=build_structures --tag wildcards=shard={wildcards.shard:q} structures build --config {input.config:q} --shard {params.shard:q}"
        " --workers {threads} --out {output.shard:q} > {log:q} 2>&1"


rule gather_structures:
    input:
        config=config_of("structures"),
        shards=expand(f"{RESULTS}/structures/shard_{{shard}}", shard=STRUCTURE_SHARDS),
    output:
        manifest=str(LAYOUT.structures_manifest),
        gallery=report(
            str(LAYOUT.structures_gallery),
            caption="../report/structures_gallery.rst",
            category="Structures",
        ),
    log:
        f"{RESULTS}/logs/gather_structures.log",
    benchmark:
        f"{RESULTS}/runtime/gather_structures.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    conda:
        ENV
    shell:
        "etem --tag rule=gather_structures structures gather --config {input.config:q} --out {output.manifest:q}"
        " {input.shards:q} > {log:q} 2>&1"
