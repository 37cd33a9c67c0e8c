# Dataset-level steps, once per run: publish, validate, report (archive.smk closes the run).


localrules:
    finalize,
    validate,
    report,


rule finalize:
    input:
        results=pending_results,
        risk=WORK / "runs" / "{run}.risk.json",
        config=EFFECTIVE,
    output:
        WORK / "runs" / "{run}.summary.json",
    log:
        WORK / "logs" / "finalize" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "python -m passerelle finalize --config {input.config} --run-id {wildcards.run}"
        " --risk {input.risk} --summary {output} > {log} 2>&1"


rule validate:
    input:
        summary=WORK / "runs" / "{run}.summary.json",
        config=EFFECTIVE,
    output:
        WORK / "runs" / "{run}.validation.json",
    log:
        WORK / "logs" / "validate" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "python -m passerelle validate --config {input.config} --out {output} > {log} 2>&1"


rule report:
    input:
        summary=WORK / "runs" / "{run}.summary.json",
        validation=WORK / "runs" / "{run}.validation.json",
        config=EFFECTIVE,
    output:
        WORK / "runs" / "{run}.reported",
    log:
        WORK / "logs" / "report" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "python -m passerelle report --config {input.config} --run-id {wildcards.run}"
        " --validation {input.validation} --reported {output} > {log} 2>&1 && cat {log}"
