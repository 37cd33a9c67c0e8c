# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
DEMO   := results/demo
KEY    := .secrets/demo.key
LINT   := .cache/lint
SMK_SOURCES := Snakefile $(wildcard workflow/rules/*.smk)

.PHONY: run test lint demo-inbox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(KEY): | $(STAMP)
	$(BIN)/passerelle keygen $(KEY)

demo-inbox: $(STAMP)
	$(BIN)/passerelle demo-inbox $(DEMO)/inbox

run: $(STAMP) $(KEY) demo-inbox
	$(BIN)/snakemake --cores $(CORES)
	# The HTML report of the last run (its risk pictures) and the QC pictures of every session
	# on record (qc_report), even when nothing was to do.
	last=$$(ls -t $(CURDIR)/$(DEMO)/output.work/runs/*.done 2>/dev/null | head -n 1); \
	$(BIN)/snakemake --report $(DEMO)/output/reports/snakemake_report.html $$last qc_report
	# Research-facing: the inbox, work area, key and checkout paths become placeholders.
	$(BIN)/passerelle redact-paths $(DEMO)/output/reports/snakemake_report.html
	@echo "BIDS dataset: $(DEMO)/output/bids"
	@echo "run report:   $(DEMO)/output/reports/run_report.html"
	@echo "HTML report:  $(DEMO)/output/reports/snakemake_report.html"
	@echo "archive:      $(DEMO)/archive"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check $(SMK_SOURCES)
	mkdir -p $(LINT)/inbox
	test -f $(LINT)/key || $(BIN)/passerelle keygen $(LINT)/key
	$(BIN)/snakemake --lint --config inbox=$(LINT)/inbox output=$(LINT)/output key_file=$(LINT)/key

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf results .cache/lint .snakemake
