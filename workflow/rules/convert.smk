# Per session: a pseudonymised DICOM copy proven clean, then NIfTI made from that copy only.
# Both jobs of a session run as one cluster job (group "session").


rule pseudonymise_session:
    input:
        spec=WORK / "specs" / "sub-{sub}" / "ses-{ses}.json",
        config=EFFECTIVE,
    output:
        pseudo=directory(WORK / "pseudo" / "sub-{sub}_ses-{ses}"),
        result=WORK / "pseudo" / "sub-{sub}_ses-{ses}.json",
    log:
        WORK / "logs" / "pseudonymise" / "sub-{sub}_ses-{ses}.log",
    group:
        "session"
    conda:
        "../../envs/passerelle.yaml"
    resources:
        **step_resources(config["convert"]),
    shell:
        "python -m passerelle pseudonymise-session --config {input.config}"
        " --spec {input.spec} --out {output.pseudo} --result {output.result} > {log} 2>&1"


rule convert_session:
    input:
        spec=WORK / "specs" / "sub-{sub}" / "ses-{ses}.json",
        pseudo=WORK / "pseudo" / "sub-{sub}_ses-{ses}.json",
        pseudo_dir=WORK / "pseudo" / "sub-{sub}_ses-{ses}",
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
        **step_resources(config["convert"]),
    shell:
        "python -m passerelle convert-session --spec {input.spec} --pseudo {input.pseudo}"
        " --staging {output.staging} --result {output.result} --threads {threads} > {log} 2>&1"
