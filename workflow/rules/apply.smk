# Apply stage: every movie of the campaign (the rows of the movie sheet, movies.sheet, plus the
# synthetic movie as the row "synthetic" when movies.synthetic) streamed through drift
# correction, denoising (supervised or blind-spot), column finding and tracking, occupancy,
# calibrated per-column confidence and event detection. Three passes per movie ({movie}):
#   apply_prepare  geometry, drift, dose, fine-tuning          -> apply/<movie>/.work/prepare.h5
#   apply_shard    one job per apply.io.shard_frames frames (parallel, with the window's halo)
#                                                              -> apply/<movie>/.work/shards/
#                  (prepare.h5 and the shards are temporary: removed once the gather is done)
#   apply_gather   tracks, statistics, events over the whole series, outputs, the movie's
#                  MLflow run (tagged etem.movie)              -> apply/<movie>/summary.json (last)
# The sheet is validated while the rules are parsed (common.smk: MOVIES): a bad row fails
# before any job. A job opens its movie by the row's one source (file, folder or quoted glob
# pattern: params.movie); its inputs are every file of the movie (input.movie). Its models
# (common.smk: movie_models) reach it as params (a file or a pinned models:/NAME/VERSION);
# only model files are inputs. A movie that a classical filter denoises (denoiser raw,
# gaussian, wiener; auto among classical auto_candidates) gets no denoising network and no
# likelihood calibration (etem.movies.sheet.row_networks), so none is trained for it.

rule apply_prepare:
    input:
        models=model_files,
        config=config_of("apply"),
        movie=movie_files,
    output:
        prepared=temp(str(LAYOUT.apply_prepared("{movie}"))),
    params:
        models=model_arguments,
        movie=movie_source,
        row=movie_arguments,
        out=str(LAYOUT.apply_dir("{movie}")),
    wildcard_constraints:
        movie=MOVIE_NAMES,
    log:
        f"{RESULTS}/logs/apply_prepare/{{movie}}.log",
    benchmark:
        f"{RESULTS}/runtime/apply_prepare/{{movie}}.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=apply_prepare --tag wildcards=movie={wildcards.movie:q} apply-prepare"
        " --config {input.config:q} --movie {params.movie:q} {params.row:q}"
        " {params.models:q} --finetuned-dir {params.out:q} --out {output.prepared:q}"
        " > {log:q} 2>&1"


rule apply_shard:
    input:
        models=model_files,
        config=config_of("apply"),
        movie=movie_files,
        prepared=rules.apply_prepare.output.prepared,
    output:
        shard=temp(str(LAYOUT.apply_shard("{movie}", "{shard}"))),
    params:
        models=model_arguments,
        movie=movie_source,
        row=movie_arguments,
        frames=shard_range,
    wildcard_constraints:
        movie=MOVIE_NAMES,
    log:
        f"{RESULTS}/logs/apply_shard/{{movie}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/runtime/apply_shard/{{movie}}/{{shard}}.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=apply_shard --tag wildcards=movie={wildcards.movie:q},shard={wildcards.shard:q}"
        " apply-shard --config {input.config:q} --movie {params.movie:q} {params.row:q}"
        " --prepared {input.prepared:q} --frames {params.frames:q}"
        " {params.models:q} --out {output.shard:q} > {log:q} 2>&1"


rule apply_gather:
    input:
        models=model_files,
        config=config_of("apply"),
        movie=movie_files,
        prepared=rules.apply_prepare.output.prepared,
        shards=shard_files,
    output:
        summary=str(LAYOUT.apply_summary("{movie}")),
        results=str(LAYOUT.apply_dir("{movie}") / "results.h5"),
        columns=str(LAYOUT.apply_dir("{movie}") / "columns.parquet"),
        events=report(
            str(LAYOUT.apply_dir("{movie}") / "events.csv"),
            caption="../report/apply_events.rst",
            category="Movie",
            subcategory="{movie}",
        ),
        timeline=report(
            str(LAYOUT.apply_dir("{movie}") / "event_timeline.png"),
            caption="../report/apply_event_timeline.rst",
            category="Movie",
            subcategory="{movie}",
        ),
        frames=report(
            str(LAYOUT.apply_dir("{movie}") / "raw_vs_denoised.png"),
            caption="../report/apply_raw_vs_denoised.rst",
            category="Movie",
            subcategory="{movie}",
        ),
    params:
        models=model_arguments,
        movie=movie_source,
        row=movie_arguments,
        tags=movie_tags,
        out=lambda wildcards, output: os.path.dirname(output.summary),
    wildcard_constraints:
        movie=MOVIE_NAMES,
    log:
        f"{RESULTS}/logs/apply_gather/{{movie}}.log",
    benchmark:
        f"{RESULTS}/runtime/apply_gather/{{movie}}.tsv"
    threads: 1
    resources:
        mem_mb=gather_mem,
        runtime=gather_runtime,
    conda:
        ENV
    shell:
        "etem --tag rule=apply_gather --tag wildcards=movie={wildcards.movie:q} {params.tags:q}"
        " apply-gather --config {input.config:q} --movie {params.movie:q} {params.row:q}"
        " --prepared {input.prepared:q} --shards {input.shards:q} --name {wildcards.movie:q}"
        " {params.models:q} --out {params.out:q} > {log:q} 2>&1"
