# Once per run, before anything is published: the re-identification risk of the release as it
# will stand (published sessions plus this run's). Below target k it fails closed, unless the
# config accepts the release with a stated reason.


localrules:
    risk,


rule risk:
    input:
        results=pending_results,
        config=EFFECTIVE,
    output:
        risk=WORK / "runs" / "{run}.risk.json",
        age=report(
            WORK / "runs" / "{run}.risk" / "age_pyramid.png",
            caption="../report/risk_age_pyramid.rst",
            category="Re-identification risk",
        ),
        sites=report(
            WORK / "runs" / "{run}.risk" / "sites.png",
            caption="../report/risk_sites.rst",
            category="Re-identification risk",
        ),
        frequencies=report(
            WORK / "runs" / "{run}.risk" / "frequencies.png",
            caption="../report/risk_frequencies.rst",
            category="Re-identification risk",
        ),
        classes=report(
            WORK / "runs" / "{run}.risk" / "class_sizes.png",
            caption="../report/risk_class_sizes.rst",
            category="Re-identification risk",
        ),
    log:
        WORK / "logs" / "risk" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    params:
        pictures=lambda wildcards, output: Path(output.age).parent,
    shell:
        "python -m passerelle risk --config {input.config} --run-id {wildcards.run}"
        " --out {output.risk} --pictures {params.pictures} > {log} 2>&1"
        " || {{ tail -n 1 {log}; exit 1; }}"
