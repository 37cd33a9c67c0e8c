# One job per session: every series of the session converted, named and scrubbed.


rule convert_session:
    input:
        spec=WORK / "specs" / "sub-{sub}" / "ses-{ses}.json",
    output:
        staging=directory(WORK / "staging" / "sub-{sub}_ses-{ses}"),
        result=WORK / "results" / "sub-{sub}_ses-{ses}.json",
    log:
        WORK / "logs" / "convert" / "sub-{sub}_ses-{ses}.log",
    group:
        "session"
    conda:
        "../../envs/passerelle.yaml"
    threads: config["convert"]["threads"]
    resources:
        mem_mb=config["convert"]["mem_mb"],
        runtime=config["convert"]["runtime"],
    shell:
        "python -m passerelle convert-session --spec {input.spec} --staging {output.staging}"
        " --result {output.result} --threads {threads} > {log} 2>&1"
