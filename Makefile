# chinwag: `make chat` to talk to a persona, `make test` to run the tests.
# Both create .venv and install what is needed the first time (llama-cpp-python compiles
# llama.cpp from source: several minutes on 2 cores, once; pip caches the wheel).

PYTHON ?= python3
# llama.cpp is built for this CPU (GGML_NATIVE), but without its AMX kernels: on a CPU that
# reports AMX under a kernel or VM that does not give processes the AMX state, they crash
# (SIGSEGV in ggml_backend_amx_mul_mat, seen on a Sapphire Rapids VM of this project's CI kind).
# (x86-64 flags: other CPUs have no AMX and their compilers no such options)
ifeq ($(shell uname -m),x86_64)
AMX_OFF := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CFLAGS += $(AMX_OFF)
export CXXFLAGS += $(AMX_OFF)
endif
VENV ?= .venv
PY := $(VENV)/bin/python
# llama-cpp-python is built once into a folder named for the version and the flags, and installed
# from there: pip's own wheel cache is keyed by the source only, so a wheel built earlier with other
# flags (the AMX kernels in) would otherwise be reused without a word. The wheel replaces any
# llama-cpp-python already in the venv (one built the old way); its dependencies come with chinwag.
LLAMA_VERSION := $(shell sed -n 's/^ *"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
LLAMA_WHEELS ?= $(HOME)/.cache/chinwag-wheels/llama-cpp-python-$(LLAMA_VERSION)$(if $(AMX_OFF),-noamx)
LLAMA_WHEEL := $(LLAMA_WHEELS)/.built
RUN_STAMP := $(VENV)/.chinwag-run
TEST_STAMP := $(VENV)/.chinwag-test
ARGS ?=
PYTEST_ARGS ?=

.PHONY: chat serve test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(LLAMA_WHEEL): | $(PY)
	@echo "Compiling llama-cpp-python $(LLAMA_VERSION) into $(LLAMA_WHEELS) (once: a few minutes)..."
	$(PY) -m pip wheel --progress-bar off --no-cache-dir --no-deps --no-binary llama-cpp-python \
		-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(RUN_STAMP): pyproject.toml $(LLAMA_WHEEL) | $(PY)
	@echo "Installing chinwag into $(VENV)..."
	$(PY) -m pip install --progress-bar off --force-reinstall --no-deps \
		$(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PY) -m pip install --progress-bar off -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(LLAMA_WHEEL) | $(PY)
	@echo "Installing chinwag and test tools into $(VENV)..."
	$(PY) -m pip install --progress-bar off --force-reinstall --no-deps \
		$(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PY) -m pip install --progress-bar off -e '.[test]'
	touch $@ $(RUN_STAMP)

chat: $(RUN_STAMP)
	$(VENV)/bin/chinwag chat $(ARGS)

serve: $(RUN_STAMP)
	$(VENV)/bin/chinwag serve $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(TEST_STAMP)
	$(PY) bench/decode.py
	$(PY) bench/server.py
	$(PY) bench/concurrency.py
	$(PY) bench/memory.py
	$(PY) bench/backends.py
	$(PY) bench/models.py
	$(PY) bench/batch.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
