# Report stage: one self-contained HTML report of the campaign (figures embedded), built from
# the benchmark outputs, the movie results and the MLflow store. `snakemake --report` also
# collects the report() outputs of the rules, with the captions in workflow/report/.


rule make_report:
    input:
        config=CONFIG_FILE,
        benchmark=rules.run_benchmark.output.summary,
        calibration=rules.run_benchmark.output.calibration,
        apply=f"{RESULTS}/apply/synthetic/summary.json",
    output:
        report(
            str(LAYOUT.report),
            caption="../report/campaign_report.rst",
            category="Report",
        ),
    log:
        f"{RESULTS}/logs/make_report/make_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/make_report/make_report.tsv"
    params:
        results=lambda wildcards, input: os.path.dirname(input.config),
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(15),
    conda:
        ENV
    shell:
        "etem --tag rule=make_report report --config {input.config} --results {params.results}"
        " --out {output} > {log} 2>&1"
