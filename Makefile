# Thin wrapper over uv. `make test` sets up a fresh Debian machine (as root) and runs all tests.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
ASAN_DIR := build/asan
UV_RUN := uv run --all-packages

.PHONY: deps sync test test-py test-asan test-bad-inputs fuzz demo bench parity lint format docs wheels test-wheels

deps:
	@bash tools/install_deps.sh

sync: deps
	uv sync --all-packages --locked

test: sync lint docs test-py test-bad-inputs test-asan fuzz test-wheels

test-py:
	$(UV_RUN) pytest -q

# The documentation site (mkdocs.yml): every page of docs/ and the API reference of every
# package, generated from the docstrings, into build/site. Offline; strict, so a broken
# internal link or anchor, a page left out of the nav or a malformed docstring fails the build
# (make test runs it). External links are not fetched: CI has no network beyond PyPI.
docs: sync
	NO_MKDOCS_2_WARNING=1 $(UV_RUN) --group docs mkdocs build

# Self-contained wheels in dist/wheels (docs/wheels.md): the C libraries built from Debian's
# pinned sources as static PIC archives (FFmpeg reduced to audio, LAME, libvorbis, Opus,
# libmpg123, libsoxr, libFLAC; tools/wheels/build_static_libs.sh, ~2.5 min the first time)
# and linked into the extensions, mlx-audio-io once per Python of WHEEL_PYTHONS found here,
# the wheels repaired to a manylinux tag (libmlx comes from the mlx wheel), then each
# installed alone in a fresh venv of every Python it accepts, every format round-tripped, and
# no system audio library loaded (tools/wheels/check_wheels.py). `make test` runs the same
# into build/test-wheels (test-wheels), about 1.5 min once the archives exist.
WHEEL_PYTHONS ?= 3.10 3.11 3.12 3.13
wheels: sync
	bash tools/wheels/build_wheels.sh dist/wheels $(WHEEL_PYTHONS)

test-wheels: sync
	bash tools/wheels/build_wheels.sh build/test-wheels $(WHEEL_PYTHONS)

# Hundreds of bad inputs (corrupt and lying files of every format, extreme parameters, failing
# writes, threads on one path, kills mid-save), each judged in a worker process that a crash or
# hang cannot take down with it; prints a summary line and fails on any crash, hang or wrong
# answer (tests/bad_inputs/, docs/reliability.md).
test-bad-inputs: sync
	$(UV_RUN) python tests/bad_inputs/runner.py

# The native layer again, built with AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: sync
	rm -rf $(ASAN_DIR)
	MLX_AUDIO_IO_SANITIZE=1 $(UV_RUN) python packages/mlx-audio-io/build_native.py $(ASAN_DIR)
	# libstdc++ preloaded too: ASan intercepts C++ throws, and finds no real __cxa_throw in a
	# python that does not link libstdc++ (mlx_audio_io._prim's kernel errors are throws)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	MLX_AUDIO_IO_NATIVE=$$(find $(CURDIR)/$(ASAN_DIR) -name '_native*.so') \
	$(UV_RUN) pytest -q -p no:cacheprovider tests/mlx_audio_io -k "not test_process"
	FMA_SANITIZE=1 $(UV_RUN) python packages/fast-mp3-augment/build_native.py $(ASAN_DIR)/mp3
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	FMA_NATIVE=$$(find $(CURDIR)/$(ASAN_DIR)/mp3 -name '_native*.so') \
	$(UV_RUN) pytest -q -p no:cacheprovider tests/fast_mp3_augment

# A fixed-length libFuzzer pass over the shim (ASan + UBSan, leak checks), seeded with short
# files of every format made at run time. FUZZ_RUNS=0 runs until stopped.
FUZZ_RUNS ?= 30000
FUZZ_LIBS := libavformat libavcodec libavutil libmpg123 soxr vorbisfile vorbis ogg flac
fuzz: sync
	mkdir -p build/fuzz/corpus
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Inative/io native/fuzz/fuzz_io.c native/io/aio_*.c \
	  $$(pkg-config --cflags --libs $(FUZZ_LIBS)) -o build/fuzz/fuzz_io
	$(UV_RUN) python native/fuzz/make_corpus.py build/fuzz/seeds
	LSAN_OPTIONS=suppressions=native/fuzz/lsan.supp build/fuzz/fuzz_io -runs=$(FUZZ_RUNS) \
	  -seed=1 -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/ build/fuzz/corpus build/fuzz/seeds > build/fuzz/log 2>&1 \
	  || { tail -60 build/fuzz/log; exit 1; }
	tail -7 build/fuzz/log

# Parity with the official PyTorch implementations, in a venv of its own (torch never enters
# the workspace's environment): pip takes torch 2.13.0's CPU build; our packages come from src.
# Every script runs and is reported in PARITY_OUT, with its time; the target fails if any
# script failed. PARITY_DEPS= skips `sync` (tests/test_make_parity.py runs it on stubs).
PARITY_VENV ?= .parity-venv
PARITY_OUT ?= docs/parity.md
PARITY_DEPS ?= sync
PARITY_PY = $(PARITY_VENV)/bin/python
parity: $(PARITY_DEPS)
	test -x $(PARITY_PY) || python3 -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/pip install -q torch==2.13.0 "mlx[cpu]" numpy cffi demucs==4.1.0 \
	  kokoro==0.9.4 snac==1.2.1 mlx-lm==0.32.2 huggingface_hub pyyaml
	# SAM-Audio's reference is GitHub-only: its sources at pinned commits, and what it imports
	$(if $(PARITY_DEPS),PARITY_PY=$(PARITY_PY) bash tools/parity/get_sam_audio_ref.sh)
	# mlx-audio's own loader writes the layout of mlx-community's SAM-Audio conversions
	$(PARITY_VENV)/bin/pip install -q --no-deps mlx-audio==0.6.2
	for p in packages/*/src; do echo "$(CURDIR)/$$p"; done > \
	  $$($(PARITY_PY) -c 'import site; print(site.getsitepackages()[0])')/workspace.pth
	set -eo pipefail; failed=""; \
	run() { local t=$$SECONDS rc=0; echo; echo "## $$1"; echo; $(PARITY_PY) "$$2" || rc=$$?; \
	  if [ $$rc -ne 0 ]; then failed="$$failed $$2"; echo; echo "**$$2 failed (exit $$rc).**"; fi; \
	  echo; echo "($$2: $$((SECONDS - t)) s)"; }; \
	{ echo "# Parity with PyTorch"; echo; echo '`make parity` (tools/parity/), on random inputs.'; \
	  run "Layers (tools/parity/layers.py)" tools/parity/layers.py; \
	  run "HTDemucs (tools/parity/htdemucs.py, against demucs 4.1.0)" tools/parity/htdemucs.py; \
	  run "Kokoro-82M (tools/parity/kokoro.py, against kokoro 0.9.4)" tools/parity/kokoro.py; \
	  run "SNAC 24 kHz (tools/parity/snac.py, against snac 1.2.1)" tools/parity/snac.py; \
	  run "Orpheus' Llama (tools/parity/orpheus_lm.py, against transformers' LlamaForCausalLM)" tools/parity/orpheus_lm.py; \
	  run "Orpheus end to end (tools/parity/orpheus.py, against transformers + snac)" tools/parity/orpheus.py; \
	  run "CSM-1B (tools/parity/csm.py, against transformers' CsmForConditionalGeneration)" tools/parity/csm.py; \
	  run "Mimi (tools/parity/mimi.py, against transformers' MimiModel)" tools/parity/mimi.py; \
	  run "SAM-Audio (tools/parity/sam_audio.py, against facebookresearch/sam-audio 68b48d4)" tools/parity/sam_audio.py; \
	} > $(PARITY_OUT); \
	cat $(PARITY_OUT); \
	if [ -n "$$failed" ]; then echo "parity failed:$$failed" >&2; exit 1; fi

lint:
	$(UV_RUN) ruff check packages tests tools
	$(UV_RUN) ruff format --check packages tests tools

format:
	$(UV_RUN) ruff format packages tests tools
	$(UV_RUN) ruff check --fix packages tests tools

demo: sync
	$(UV_RUN) python tools/demo.py

# bench_sts.py makes .bench/demucs-venv (torch 2.13.0 CPU, demucs 4.1.0) on first use; ~20 min.
# bench_tts.py makes .bench/kokoro-venv (torch 2.13.0 CPU, kokoro 0.9.4) on first use; ~10 min.
# bench_snac.py makes .bench/snac-venv (torch 2.13.0 CPU, snac 1.2.1) on first use.
# bench_sam.py runs the official SAM-Audio in the parity venv (`make parity` makes it); ~15 min.
bench: deps
	uv sync --all-packages --locked --group bench
	$(UV_RUN) --group bench python tools/bench/bench_io.py
	$(UV_RUN) --group bench python tools/bench/bench_streaming.py
	$(UV_RUN) --group bench python tools/bench/bench_nn.py
	if [ -f tools/bench/bench_mp3.py ]; then $(UV_RUN) --group bench python tools/bench/bench_mp3.py; fi
	$(UV_RUN) --group bench python tools/bench/bench_sts.py
	$(UV_RUN) --group bench python tools/bench/bench_tts.py
	$(UV_RUN) --group bench python tools/bench/bench_snac.py
	$(UV_RUN) --group bench python tools/bench/bench_orpheus_lm.py
	$(UV_RUN) --group bench python tools/bench/bench_orpheus_stream.py
	$(UV_RUN) --group bench python tools/bench/bench_mimi.py
	$(UV_RUN) --group bench python tools/bench/bench_csm.py
	$(UV_RUN) --group bench python tools/bench/bench_server.py
	$(UV_RUN) --group bench python tools/bench/bench_sam.py
