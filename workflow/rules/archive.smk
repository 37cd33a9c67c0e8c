# Last step of a run: the published outputs become one archive version, then the run closes.


localrules:
    reintegrate,


rule reintegrate:
    input:
        reported=WORK / "runs" / "{run}.reported",
        validation=WORK / "runs" / "{run}.validation.json",
        config=EFFECTIVE,
    output:
        WORK / "runs" / "{run}.done",
    log:
        WORK / "logs" / "reintegrate" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "python -m passerelle archive --config {input.config} --run-id {wildcards.run}"
        " --done {output} > {log} 2>&1 && cat {log}"
