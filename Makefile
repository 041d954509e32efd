# The two entry points of the README: `make demo` and `make test`. Both set everything up
# themselves on a fresh machine (Python venv with the pinned stack; system tools for tests).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DEMO_OUT ?= edgepack-out

.PHONY: demo test setup system-deps clean benchmark peer-env benchmark-peer

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# one resolver run for the whole stack; torch==2.13.0 is the CPU build (never a CUDA one)
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/python -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

# Debian's adb client (device tests), flatc (TFLite Metadata read back against tflite-support's schema),
# the Kotlin compiler from npm (Android app logic tests);
# cmake, g++, the arm64 cross compiler and qemu-user for the native (C++) tests, which build ncnn
# from its PyPI source into ~/.cache/edgepack/native once and run the app's runner on x86_64 and
# (through qemu-aarch64) arm64.
KOTLIN_COMPILER := kotlin-compiler@2.4.20
SYSTEM_TOOLS := adb:adb flatc:flatbuffers-compiler cmake:cmake g++:g++ aarch64-linux-gnu-g++:g++-aarch64-linux-gnu qemu-aarch64:qemu-user
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@if [ ! -x "$$(npm root -g)/kotlin-compiler/bin/kotlinc" ]; then npm install -g --no-fund --no-audit $(KOTLIN_COMPILER) >/dev/null; fi

# the built-in example -> every format and precision, validated -> the Android project
demo: setup
	$(BIN)/edgepack build --target android --target ios --reconvert --precisions fp32,fp16,int8-weight,int8-dynamic,int8 -o $(DEMO_OUT)

test: setup system-deps
	$(BIN)/python -m pytest -q

benchmark: setup
	$(BIN)/python benchmarks/run.py

# the peer exporter of benchmarks/peer.py (issue 16) in its own venv outside the repository: its
# Core ML export pins numpy<=2.3.5 and its ncnn export another pnnx than edgepack's
PEER_VENV := $(HOME)/.cache/edgepack/peer/ultralytics-8.4.190
PEER_STAMP := $(PEER_VENV)/.installed-$(shell cat benchmarks/peer-requirements.txt | sha256sum | cut -c1-12)
$(PEER_STAMP): benchmarks/peer-requirements.txt
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet -r benchmarks/peer-requirements.txt
	@rm -f $(PEER_VENV)/.installed-* && touch $(PEER_STAMP)

peer-env: $(PEER_STAMP)

benchmark-peer: setup peer-env
	$(BIN)/python benchmarks/peer.py

clean:
	rm -rf $(VENV) $(DEMO_OUT)
