# Per session, after conversion: defacing, built-in segmentation, outside models, then one job
# that checks them against each other, writes the session's provenance and its QC pictures.
rule deface_session:
    input:
        result=WORK / "results" / "sub-{sub}_ses-{ses}.json",
        staging=WORK / "staging" / "sub-{sub}_ses-{ses}",
        config=EFFECTIVE,
    output:
        out=directory(WORK / "derivatives" / "deface" / "sub-{sub}_ses-{ses}"),
        record=WORK / "derivatives" / "deface" / "sub-{sub}_ses-{ses}.json",
    log:
        WORK / "logs" / "deface" / "sub-{sub}_ses-{ses}.log",
    group:
        "session"
    conda:
        "../../envs/passerelle.yaml"
    threads: DERIV["deface"]["threads"]
    resources:
        **step_resources(DERIV["deface"]),
    shell:
        "python -m passerelle deface-session --config {input.config} --result {input.result}"
        " --staging {input.staging} --out {output.out} --record {output.record}"
        " --threads {threads} > {log} 2>&1"


rule segment_session:
    input:
        result=WORK / "results" / "sub-{sub}_ses-{ses}.json",
        staging=WORK / "staging" / "sub-{sub}_ses-{ses}",
        config=EFFECTIVE,
    output:
        out=directory(WORK / "derivatives" / "segment" / "sub-{sub}_ses-{ses}"),
        record=WORK / "derivatives" / "segment" / "sub-{sub}_ses-{ses}.json",
    log:
        WORK / "logs" / "segment" / "sub-{sub}_ses-{ses}.log",
    group:
        "session"
    conda:
        "../../envs/passerelle.yaml"
    threads: DERIV["segment"]["threads"]
    resources:
        **step_resources(DERIV["segment"]),
    shell:
        "python -m passerelle segment-session --config {input.config} --result {input.result}"
        " --staging {input.staging} --out {output.out} --record {output.record}"
        " --threads {threads} > {log} 2>&1"


# An outside segmenter: its own cluster job, asking for GPUs with the standard resource.
rule model_session:
    input:
        result=WORK / "results" / "sub-{sub}_ses-{ses}.json",
        staging=WORK / "staging" / "sub-{sub}_ses-{ses}",
        config=EFFECTIVE,
    output:
        out=directory(WORK / "derivatives" / "model-{model}" / "sub-{sub}_ses-{ses}"),
        record=WORK / "derivatives" / "model-{model}" / "sub-{sub}_ses-{ses}.json",
    log:
        WORK / "logs" / "model-{model}" / "sub-{sub}_ses-{ses}.log",
    group:
        "models"
    conda:
        "../../envs/passerelle.yaml"
    threads: lambda wildcards: MODEL_RESOURCES[wildcards.model].get("threads", 1)
    resources:
        **keyed_resources(MODEL_RESOURCES, "model", MODEL_DEFAULTS),
    shell:
        "python -m passerelle run-model --config {input.config} --model {wildcards.model}"
        " --result {input.result} --staging {input.staging} --out {output.out}"
        " --record {output.record} --threads {threads} > {log} 2>&1"


rule derivatives_session:
    input:
        result=WORK / "results" / "sub-{sub}_ses-{ses}.json",
        staging=WORK / "staging" / "sub-{sub}_ses-{ses}",
        deface=WORK / "derivatives" / "deface" / "sub-{sub}_ses-{ses}.json",
        segment=WORK / "derivatives" / "segment" / "sub-{sub}_ses-{ses}.json",
        models=session_models,
        config=EFFECTIVE,
    output:
        prov=WORK / "derivatives" / "prov" / "sub-{sub}_ses-{ses}.json",
        doc=WORK / "derivatives" / "prov" / "sub-{sub}_ses-{ses}.prov.json",
        timed=WORK / "derivatives" / "prov" / "sub-{sub}_ses-{ses}.timed.json",
        deface_qc=report(
            WORK / "qc" / "sub-{sub}_ses-{ses}_deface.png",
            caption="../report/deface.rst",
            category="Defacing",
        ),
        segment_qc=report(
            WORK / "qc" / "sub-{sub}_ses-{ses}_dseg.png",
            caption="../report/segment.rst",
            category="Segmentation",
        ),
    log:
        WORK / "logs" / "derivatives" / "sub-{sub}_ses-{ses}.log",
    # With outside models it waits for them, so it joins their group: a session-group job
    # depending on the models group that depends on the session group is a cycle.
    group:
        "models" if MODELS else "session"
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "python -m passerelle derivatives-session --config {input.config}"
        " --result {input.result} --staging {input.staging} --records {input.deface}"
        " {input.segment} {input.models} --prov {output.prov}"
        " --qc {output.deface_qc} {output.segment_qc} > {log} 2>&1"


localrules:
    tissue_volumes,
    qc_report,


rule tissue_volumes:
    input:
        summary=WORK / "runs" / "{run}.summary.json",
        config=EFFECTIVE,
    output:
        report(
            WORK / "qc" / "{run}.tissue_volumes.png",
            caption="../report/volumes.rst",
            category="Tissue volumes",
        ),
    log:
        WORK / "logs" / "tissue_volumes" / "{run}.log",
    conda:
        "../../envs/passerelle.yaml"
    shell:
        "python -m passerelle volume-plot --config {input.config} --out {output} > {log} 2>&1"


# Target for `snakemake --report`: the pictures of every session on record.
rule qc_report:
    input:
        qc_pictures(),
