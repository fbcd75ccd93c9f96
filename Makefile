# The few commands a newcomer needs. Each sets up its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo format

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

# The main job: BEST-RQ with Fastformer, CPU-sized, on the built-in corpus (generated on first
# use); about 10 minutes on 2 cores. recipes/BEST-RQ/README.md explains every override.
DEMO_OUTPUT ?= results/cpu_fastformer
DEMO_ARGS := --num_encoder_layers=4 --d_model=144 --nhead=4 --d_ffn=576 \
	--codebook_size=1024 --front_end=stack --dropout=0.0 \
	--max_batch_len=30 --grad_accumulation_factor=1 --lr=0.002 --warmup_steps=100 \
	--optimizer_step_limit=1500 --log_interval=50 --ckpt_interval_steps=100

demo: $(STAMP)
	cd recipes/BEST-RQ && $(abspath $(PY)) train.py hparams/bestrq_fastformer.yaml \
		--output_folder=$(DEMO_OUTPUT) $(DEMO_ARGS)
