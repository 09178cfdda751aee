# Report stage: one self-contained HTML report of the campaign (figures embedded), built from
# the benchmark outputs, every movie's results (apply/<movie>/summary.json) and the MLflow
# store. `snakemake --report` also collects the report() outputs of the rules, with the
# captions in workflow/report/. The report reads the whole config (it shows it).


# detection-power banks measured offline (benchmarks/detection_power.py), shown when present
DETECTION_BANKS = [
    p
    for p in (
        os.path.join(workflow.basedir, "benchmarks", f)
        for f in ("detection_power.json", "detection_power_heldout.json")
    )
    if os.path.exists(p)
]


rule make_report:
    input:
        config=config_of("report"),
        benchmark=rules.evaluate.output.summary,
        calibration=rules.evaluate.output.calibration,
        apply=[str(LAYOUT.apply_summary(name)) for name in MOVIES],
        detection=DETECTION_BANKS,
    output:
        report(
            str(LAYOUT.report),
            caption="../report/campaign_report.rst",
            category="Report",
        ),
    log:
        f"{RESULTS}/logs/make_report/make_report.log",
    benchmark:
        f"{RESULTS}/runtime/make_report/make_report.tsv"
    params:
        # <results>/config/report.yaml -> <results>
        results=lambda wildcards, input: os.path.dirname(os.path.dirname(input.config)),
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(15),
    conda:
        ENV
    shell:
        "etem --tag rule=make_report report --config {input.config:q} --results {params.results:q}"
        " --out {output:q} --detection-power {input.detection:q} > {log:q} 2>&1"
