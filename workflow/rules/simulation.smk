# Rules of the simulation stage: HRTEM image shards (etem simulate), their index, and the
# synthetic movie. One job per shard; each job simulates all images of its structures with
# one potential per structure and one multislice pass per tilt (docs/simulation.md).
# threads: 1 per job (FFTW single-threaded); Snakemake runs one job per core.


wildcard_constraints:
    shard=r"\d{3}",


rule simulate_images:
    input:
        config=config_of("simulation"),
        manifest=str(LAYOUT.structures_manifest),
    output:
        shard=f"{RESULTS}/simulation/shard_{{shard}}.h5",
    params:
        shard=lambda wildcards: f"{int(wildcards.shard)}/{len(SIMULATION_SHARDS)}",
    log:
        f"{RESULTS}/logs/simulate_images/{{shard}}.log",
    benchmark:
        f"{RESULTS}/runtime/simulate_images/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(3000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=simulate_images --tag wildcards=shard={wildcards.shard:q} simulate --config {input.config:q} --manifest {input.manifest:q}"
        " --shard {params.shard:q} --out {output.shard:q} > {log:q} 2>&1"


rule index_images:
    input:
        shards=expand(f"{RESULTS}/simulation/shard_{{shard}}.h5", shard=SIMULATION_SHARDS),
    output:
        index=str(LAYOUT.simulation_index),
    log:
        f"{RESULTS}/logs/index_images.log",
    benchmark:
        f"{RESULTS}/runtime/index_images.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime_min(10),
    conda:
        ENV
    shell:
        "etem --tag rule=index_images simulate-index --out {output.index:q} {input.shards:q} > {log:q} 2>&1"


rule simulate_movie:
    input:
        config=config_of("simulate-movie"),
        manifest=str(LAYOUT.structures_manifest),
    output:
        movie=str(LAYOUT.synthetic_movie),
    log:
        f"{RESULTS}/logs/simulate_movie.log",
    benchmark:
        f"{RESULTS}/runtime/simulate_movie.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(30),
    conda:
        ENV
    shell:
        "etem --tag rule=simulate_movie simulate-movie --config {input.config:q} --manifest {input.manifest:q}"
        " --out {output.movie:q} > {log:q} 2>&1"


# Code paths (evaluation.code_paths): the evaluated structures simulated again through another
# abTEM code path (parametrisation, projection, frozen phonons, slice thickness), one job per
# shard of the set, gathered into <results>/simulation/code_paths/<name>/index.csv for the
# cross-condition table. No code path configured: no such jobs.
# (CODE_PATHS, code_path_shards: common.smk)


rule simulate_code_path:
    input:
        config=config_of("simulate-code-path"),
        manifest=str(LAYOUT.structures_manifest),
    output:
        shard=f"{RESULTS}/simulation/code_paths/{{code_path}}/shard_{{shard}}.h5",
    params:
        shard=lambda wildcards: f"{int(wildcards.shard)}/{CODE_PATHS[wildcards.code_path]}",
    wildcard_constraints:
        code_path="|".join(re.escape(name) for name in CODE_PATHS) or "(?!)",
    log:
        f"{RESULTS}/logs/simulate_code_path/{{code_path}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/runtime/simulate_code_path/{{code_path}}/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(3000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=simulate_code_path --tag wildcards=code_path={wildcards.code_path:q},shard={wildcards.shard:q}"
        " simulate-code-path --config {input.config:q} --manifest {input.manifest:q}"
        " --code-path {wildcards.code_path:q} --shard {params.shard:q} --out {output.shard:q} > {log:q} 2>&1"


rule index_code_path:
    input:
        shards=lambda wildcards: code_path_shards(wildcards.code_path),
    output:
        index=f"{RESULTS}/simulation/code_paths/{{code_path}}/index.csv",
    wildcard_constraints:
        code_path="|".join(re.escape(name) for name in CODE_PATHS) or "(?!)",
    log:
        f"{RESULTS}/logs/index_code_path/{{code_path}}.log",
    benchmark:
        f"{RESULTS}/runtime/index_code_path/{{code_path}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime_min(10),
    conda:
        ENV
    shell:
        "etem --tag rule=index_code_path simulate-index --out {output.index:q} {input.shards:q} > {log:q} 2>&1"
