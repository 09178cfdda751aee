# Evaluation stage: denoising tables (PSNR/SSIM by dose, thickness, defocus, tilt, family,
# held-out family), column detection, likelihood-map calibration and uMSE validation.
# Outputs are under LAYOUT.evaluation_dir; likelihood_calibration.json feeds the apply stage.
# The networks benchmarked are the campaign's own of EVALUATED_NETWORKS (common.smk): all three
# when a network may denoise a movie; a campaign that classical filters denoise trains no
# denoising network for its benchmark (the classical baselines are scored all the same).

import os

EVALUATION = LAYOUT.evaluation_dir
# The code paths' image indexes (rules simulate_code_path, index_code_path) and their
# --code-path NAME=INDEX arguments; none configured: the rule is as without them.
CODE_PATH_INPUTS = {"code_paths": [str(LAYOUT.code_path_index(name)) for name in CODE_PATHS]}
CODE_PATH_PARAMS = {
    "code_paths": lambda wildcards, input: [
        f"--code-path={name}={index}" for name, index in zip(CODE_PATHS, input.code_paths)
    ]
}
if not CODE_PATHS:
    CODE_PATH_INPUTS, CODE_PATH_PARAMS = {}, {}


rule evaluate:
    input:
        config=config_of("evaluation"),
        index=str(LAYOUT.simulation_index),
        **{kind: str(LAYOUT.model(kind)) for kind in EVALUATED_NETWORKS},
        movie=str(LAYOUT.synthetic_movie),
        **CODE_PATH_INPUTS,
    output:
        summary=str(EVALUATION / "summary.json"),
        calibration=str(EVALUATION / "likelihood_calibration.json"),
        per_image=str(EVALUATION / "per_image.parquet"),
        table=report(
            str(EVALUATION / "denoising_summary.csv"),
            caption="../report/denoising_summary.rst",
            category="Benchmark",
            subcategory="Tables",
        ),
        far=report(
            str(EVALUATION / "calibration_far.csv"),
            caption="../report/calibration_far.rst",
            category="Benchmark",
            subcategory="Likelihood calibration",
        ),
        psnr=report(
            str(EVALUATION / "figures" / "psnr_vs_dose.png"),
            caption="../report/psnr_vs_dose.rst",
            category="Benchmark",
            subcategory="Denoising",
        ),
        ssim=report(
            str(EVALUATION / "figures" / "ssim_vs_dose.png"),
            caption="../report/ssim_vs_dose.rst",
            category="Benchmark",
            subcategory="Denoising",
        ),
        examples=report(
            str(EVALUATION / "figures" / "examples.png"),
            caption="../report/examples.rst",
            category="Benchmark",
            subcategory="Denoising",
        ),
        calibration_fig=report(
            str(EVALUATION / "figures" / "calibration.png"),
            caption="../report/calibration.rst",
            category="Benchmark",
            subcategory="Likelihood calibration",
        ),
    log:
        f"{RESULTS}/logs/evaluate/evaluate.log",
    benchmark:
        f"{RESULTS}/runtime/evaluate/evaluate.tsv"
    params:
        out=lambda wildcards, output: os.path.dirname(output.summary),
        networks=lambda wildcards, input: [
            w for kind in EVALUATED_NETWORKS for w in (f"--{kind}", input[kind])
        ],
        **CODE_PATH_PARAMS,
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(60),
    conda:
        ENV
    shell:
        "etem --tag rule=evaluate evaluate --config {input.config:q} --index {input.index:q}"
        " {params.networks:q} --movie {input.movie:q}"
        + (" {params.code_paths:q}" if CODE_PATHS else "")
        + " --out {params.out:q} > {log:q} 2>&1"
