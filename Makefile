# sgflow: `make run` starts the single-machine default, `make test` runs lint, types and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
# Portable CPU build: AVX2/FMA only. A native build on these Xeons enables AMX, whose
# matmul for the Q4_1 weights segfaults inside llama_decode (see NOTES in README).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
WHEEL_DIR ?= $(HOME)/.cache/sgflow/wheels/llama-cpp-python-$(LLAMA_VERSION)-avx2
STAMP := $(VENV)/.install-stamp

.PHONY: install run engine peers playground browser test check lint types unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	# torch first: 2.13.0 is a CPU build on this disk; anything newer pulls CUDA.
	$(BIN)/pip install -q torch==2.13.0
	@if ! ls $(WHEEL_DIR)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_VERSION) from source (5-15 minutes, once per machine)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-cache-dir --no-deps \
			-w $(WHEEL_DIR) llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(BIN)/pip install -q $(WHEEL_DIR)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

run: install
	$(BIN)/sgflow up

engine: install
	$(BIN)/sgflow engine

lint: install
	$(BIN)/ruff check sgflow tests
	$(BIN)/ruff format --check sgflow tests

types: install
	$(BIN)/mypy

check: lint types

# Peer engines for the tests (llama.cpp's llama-server, vLLM on CPU), built once per machine
# into ~/.cache/sgflow/peers ($SGFLOW_PEERS_CACHE); a no-op once they are there.
peers: install
	$(BIN)/sgflow peers install all

# The playground's bundle (sgflow/service/playground/static, committed: running sgflow needs
# no Node): the locked packages, a type check, then esbuild with fixed options.
playground:
	cd playground && npm ci --no-audit --no-fund && npx tsc --noEmit -p . && node build.mjs

# Debian's Chromium for the playground's browser tests (tests/playground), once per machine.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

test: check peers browser
	$(BIN)/pytest -q -ra

bench: install
	$(BIN)/sgflow bench all --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
