# The few commands a newcomer needs. Each sets up its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo hubert-demo quant-demo format

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(VENV)/bin/yamllint -s .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest -q

# The main job: BEST-RQ with Fastformer, CPU-sized (recipes/BEST-RQ/hparams/cpu.yaml), on the
# built-in corpus (generated on first use); 4-8 minutes on 2 cores.
DEMO_OUTPUT ?= results/cpu_fastformer

demo: $(STAMP)
	cd recipes/BEST-RQ && $(abspath $(PY)) train.py hparams/cpu.yaml --mixer=fastformer \
		--output_folder=$(DEMO_OUTPUT)

# HuBERT's two iterations with Study A's Conformer-S, CPU-sized (recipes/HuBERT/hparams/cpu.yaml),
# on the built-in corpus; recipes/HuBERT/README.md gives the results.
HUBERT_OUTPUT ?= results/cpu_conformer_s

hubert-demo: $(STAMP)
	cd recipes/HuBERT && $(abspath $(PY)) train.py hparams/cpu.yaml --encoder=conformer_s \
		--output_folder=$(HUBERT_OUTPUT)

# BiT's staged chain FP32 -> W1A4 -> W1A2 -> W1A1 on the main job's model (the teacher is
# `make demo`'s folder, trained first if missing; recipes/BEST-RQ/hparams/cpu_chain.yaml), then
# the MP3S runner on the teacher and its W1A1 student beside fbank and a random encoder.
quant-demo: $(STAMP)
	test -f recipes/BEST-RQ/$(DEMO_OUTPUT)/results.json || $(MAKE) demo
	cd recipes/BEST-RQ && $(abspath $(PY)) train.py hparams/cpu_chain.yaml \
		--teacher=$(DEMO_OUTPUT) --output_folder=$(DEMO_OUTPUT)_chain
	$(PY) -m speechbrain_ext.mp3s --encoder recipes/BEST-RQ/$(DEMO_OUTPUT) \
		recipes/BEST-RQ/$(DEMO_OUTPUT)_chain/stage3_w1a1 --name cpu_fastformer_w1a1 --tasks all
