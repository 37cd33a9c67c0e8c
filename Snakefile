# Passerelle: hospital DICOM deliveries -> BIDS dataset. See README.md.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/risk.smk"
include: "workflow/rules/finalize.smk"
include: "workflow/rules/archive.smk"


rule all:
    default_target: True
    input:
        run_targets(),
