# Benchmark stage: denoising tables (PSNR/SSIM by dose, thickness, defocus, tilt, family,
# held-out family), column detection, likelihood-map calibration and uMSE validation.
# Outputs are under LAYOUT.benchmark_dir; likelihood_calibration.json feeds the apply stage.

import os

BENCH = LAYOUT.benchmark_dir


rule run_benchmark:
    input:
        config=config_of("benchmark"),
        index=str(LAYOUT.simulation_index),
        denoiser=str(LAYOUT.model("denoiser")),
        unsupervised=str(LAYOUT.model("unsupervised")),
        segmenter=str(LAYOUT.model("segmenter")),
        movie=str(LAYOUT.synthetic_movie),
    output:
        summary=str(BENCH / "summary.json"),
        calibration=str(BENCH / "likelihood_calibration.json"),
        per_image=str(BENCH / "per_image.parquet"),
        table=report(
            str(BENCH / "denoising_summary.csv"),
            caption="../report/denoising_summary.rst",
            category="Benchmark",
            subcategory="Tables",
        ),
        far=report(
            str(BENCH / "calibration_far.csv"),
            caption="../report/calibration_far.rst",
            category="Benchmark",
            subcategory="Likelihood calibration",
        ),
        psnr=report(
            str(BENCH / "figures" / "psnr_vs_dose.png"),
            caption="../report/psnr_vs_dose.rst",
            category="Benchmark",
            subcategory="Denoising",
        ),
        ssim=report(
            str(BENCH / "figures" / "ssim_vs_dose.png"),
            caption="../report/ssim_vs_dose.rst",
            category="Benchmark",
            subcategory="Denoising",
        ),
        examples=report(
            str(BENCH / "figures" / "examples.png"),
            caption="../report/examples.rst",
            category="Benchmark",
            subcategory="Denoising",
        ),
        calibration_fig=report(
            str(BENCH / "figures" / "calibration.png"),
            caption="../report/calibration.rst",
            category="Benchmark",
            subcategory="Likelihood calibration",
        ),
    log:
        f"{RESULTS}/logs/run_benchmark/run_benchmark.log",
    benchmark:
        f"{RESULTS}/runtime/run_benchmark/run_benchmark.tsv"
    params:
        out=lambda wildcards, output: os.path.dirname(output.summary),
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=run_benchmark benchmark --config {input.config:q} --index {input.index:q}"
        " --denoiser {input.denoiser:q} --unsupervised {input.unsupervised:q}"
        " --segmenter {input.segmenter:q} --movie {input.movie:q}"
        " --out {params.out:q} > {log:q} 2>&1"
