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
