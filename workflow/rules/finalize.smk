# Dataset-level steps, once per run: publish, validate, report and close the run.


localrules:
    finalize,
    validate,
    report,


rule finalize:
    input:
        pending_results,
    output:
        summary=WORK / "runs" / "{run}.summary.json",
    log:
        WORK / "logs" / "finalize" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "{PASSERELLE} finalize --config {EFFECTIVE} --run-id {wildcards.run} > {log} 2>&1"
        " && cp {REPORTS}/summary.json {output.summary}"


rule validate:
    input:
        WORK / "runs" / "{run}.summary.json",
    output:
        WORK / "runs" / "{run}.validation.json",
    params:
        bids=SETTINGS.bids_dir,
        strict="--strict" if config.get("validate", True) else "",
    log:
        WORK / "logs" / "validate" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "{PASSERELLE} validate {params.bids} --out {output} {params.strict} > {log} 2>&1"
        " && cp {output} {REPORTS}/bids_validation.json"


rule report:
    input:
        summary=WORK / "runs" / "{run}.summary.json",
        validation=WORK / "runs" / "{run}.validation.json",
    output:
        WORK / "runs" / "{run}.done",
    log:
        WORK / "logs" / "report" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "{PASSERELLE} report --config {EFFECTIVE} --run-id {wildcards.run}"
        " --validation {input.validation} --done {output} > {log} 2>&1 && cat {log}"
