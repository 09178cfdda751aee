# Apply stage: the synthetic movie (stand-in for an experimental K3 movie) streamed through
# drift correction, denoising (supervised + blind-spot models), column finding and tracking,
# occupancy (segmenter), calibrated per-column confidence and event detection.
# Outputs in LAYOUT.apply_dir("synthetic"); summary.json (written last) feeds the report.

import os

APPLY = LAYOUT.apply_dir("synthetic")


rule apply_movie:
    input:
        config=CONFIG_FILE,
        movie=str(LAYOUT.synthetic_movie),
        denoiser=str(LAYOUT.model("denoiser")),
        unsupervised=str(LAYOUT.model("unsupervised")),
        segmenter=str(LAYOUT.model("segmenter")),
        calibration=str(LAYOUT.benchmark_dir / "likelihood_calibration.json"),
    output:
        summary=str(APPLY / "summary.json"),
        results=str(APPLY / "results.h5"),
        columns=str(APPLY / "columns.parquet"),
        events=report(
            str(APPLY / "events.csv"),
            caption="../report/apply_events.rst",
            category="Movie",
        ),
        timeline=report(
            str(APPLY / "event_timeline.png"),
            caption="../report/apply_event_timeline.rst",
            category="Movie",
        ),
        frames=report(
            str(APPLY / "raw_vs_denoised.png"),
            caption="../report/apply_raw_vs_denoised.rst",
            category="Movie",
        ),
    log:
        f"{RESULTS}/logs/apply_movie/synthetic.log",
    benchmark:
        f"{RESULTS}/benchmarks/apply_movie/synthetic.tsv"
    params:
        out=lambda wildcards, output: os.path.dirname(output.summary),
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=apply_movie apply --config {input.config} --movie {input.movie} --name synthetic"
        " --denoiser {input.denoiser} --unsupervised {input.unsupervised}"
        " --segmenter {input.segmenter} --calibration {input.calibration}"
        " --out {params.out} > {log} 2>&1"
