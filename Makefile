# mpcfs - see README.md. Two commands do everything on a fresh machine:
#   make demo   sample HLS on the local-directory store, mounted, encrypted, checked
#   make test   every test: real MinIO on 127.0.0.1, real FUSE mounts, openssl, ffmpeg

GO          ?= go
BIN         ?= bin
# MinIO is built once from the Go module proxy and kept outside the clone,
# so fresh clones (CI) reuse it.
MPCFS_CACHE ?= $(HOME)/.cache/mpcfs
MINIO       ?= $(MPCFS_CACHE)/bin/minio
export MPCFS_MINIO_BIN = $(MINIO)
# An exact version: it resolves on the module proxy even where listing
# versions (@latest) is refused, and every machine tests the same server.
MINIO_VERSION ?= v0.0.0-20260212201848-7aac2a2c5b7c

.PHONY: all build test demo bench deps sysdeps sdkdeps minio clean fuzz

all: build

# VERSION is what `mpcfs version` prints.
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/mpcfs ./cmd/mpcfs

# deps installs what the tests run for real: sysdeps, a MinIO server, the
# Node SDK client and the browser harness.
deps: sysdeps minio sdkdeps browserdeps

# sysdeps installs fuse3 (fusermount3), ffmpeg, openssl and curl from
# Debian's packages when they are missing, and the editors the control/
# tests run for real (vim, nano; script and setpriv come with util-linux).
sysdeps:
	@missing=""; \
	command -v fusermount3 >/dev/null || missing="$$missing fuse3"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v vim >/dev/null || missing="$$missing vim"; \
	command -v nano >/dev/null || missing="$$missing nano"; \
	command -v script >/dev/null || missing="$$missing bsdutils"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# sdkdeps installs Node.js and npm (Debian's packages) and, when missing,
# test/sdk's npm packages exactly as locked (npm ci): Huawei Cloud's Node
# SDK core, the client the HTTP API is tested with.
SDK_DIR ?= test/sdk
.PHONY: sdkdeps
sdkdeps: nodedeps
	@if [ ! -f $(SDK_DIR)/node_modules/@huaweicloud/huaweicloud-sdk-core/auth/AKSKSigner.js ]; then \
		echo "npm ci in $(SDK_DIR)"; \
		cd $(SDK_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

# browserdeps installs what test/browser plays outputs with: Debian's
# chromium and nginx-light when missing, and the harness's npm packages
# (exact versions from its package-lock.json; puppeteer-core never
# downloads a browser) when node_modules is missing.
.PHONY: browserdeps
browserdeps: nodedeps
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -d test/browser/node_modules/shaka-player ] || (cd test/browser && npm ci --no-audit --no-fund --loglevel=error)

# nodedeps installs Node.js and npm from Debian's packages when missing.
.PHONY: nodedeps
nodedeps:
	@missing=""; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

minio: $(MINIO)
$(MINIO):
	mkdir -p $(dir $(MINIO))
	GOBIN=$(abspath $(dir $(MINIO))) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -race -timeout 25m ./...
	$(MAKE) fuzz

# fuzz runs every Fuzz* target of every package for FUZZTIME each, one
# target per go test run (go test takes one -fuzz at a time). Seed corpora
# and past failures live in each package's testdata/fuzz/.
#
# Both budgets are counts of executions, not durations. With a duration,
# Go 1.26's fuzzing coordinator can fail a target with "context deadline
# exceeded" and no failing input when the time runs out while a worker is
# busy (golang/go#75804, fixed in Go 1.27). FuzzScan's seeds are whole
# media segments, and minimizing one takes many seconds with the exec
# count frozen, so an 8 s budget hit that race in CI. FUZZMIN bounds each
# minimization (go test's default is 60 s).
FUZZTIME ?= 20000x
FUZZMIN ?= 20x
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) $$pkg; \
		done; \
	done

demo: sysdeps build
	$(BIN)/mpcfs demo --dir demo-work

# bench measures mpcfs against raw S3 GET and the peers (s3fs, rclone crypt,
# gocryptfs -reverse, openssl, ffmpeg) on the same media in one MinIO, plus the
# crypto benchmarks; the table goes to the screen and bench-out/bench-results.md.
# BENCH_MB=100 BENCH_RUNS=1 for a quick run. Needs root (drop_caches, FUSE).
# BENCH_LATENCY_MS=20 puts MinIO behind toxiproxy with that round trip for
# every client; BENCH_TASKS=100000 adds the catalogue rows (that many tasks
# in the task store); BENCH_ARGS passes other flags (mpcfsbench -h), e.g.
# BENCH_ARGS="-peers=false -gobench=false". docs/bench.md explains each row.
BENCH_MB   ?= 500
BENCH_RUNS ?= 3
BENCH_LATENCY_MS ?= 0
BENCH_TASKS ?= 0
BENCH_ARGS ?=
TOXIPROXY ?= $(MPCFS_CACHE)/bin/toxiproxy-server
TOXIPROXY_VERSION ?= v2.12.0
bench: build deps benchdeps $(if $(filter-out 0,$(BENCH_LATENCY_MS)),toxiproxy)
	$(GO) build -o $(BIN)/mpcfsbench ./cmd/mpcfsbench
	GO=$(GO) $(BIN)/mpcfsbench -mb $(BENCH_MB) -runs $(BENCH_RUNS) -mpcfs $(BIN)/mpcfs -minio $(MINIO) -out bench-out \
		-latency-ms $(BENCH_LATENCY_MS) -tasks $(BENCH_TASKS) -toxiproxy $(TOXIPROXY) $(BENCH_ARGS)

# toxiproxy (the latency mode's proxy) is built once from the Go module
# proxy, like MinIO, and kept outside the clone.
.PHONY: toxiproxy
toxiproxy: $(TOXIPROXY)
$(TOXIPROXY):
	mkdir -p $(dir $(TOXIPROXY))/.toxiproxy-build
	GOBIN=$(abspath $(dir $(TOXIPROXY)))/.toxiproxy-build $(GO) install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv $(dir $(TOXIPROXY))/.toxiproxy-build/server $(TOXIPROXY)
	rmdir $(dir $(TOXIPROXY))/.toxiproxy-build

# benchdeps installs the peers and the reader-style tools (nginx-light for
# the sendfile style and the HTTP origin rows, curl for the raw GET) from
# Debian when missing; a peer that still cannot be installed is skipped by
# the bench with a note.
.PHONY: benchdeps
benchdeps:
	@missing=""; \
	command -v s3fs >/dev/null || missing="$$missing s3fs"; \
	command -v rclone >/dev/null || missing="$$missing rclone"; \
	command -v gocryptfs >/dev/null || missing="$$missing gocryptfs"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || \
			echo "benchdeps: could not install$$missing; the bench skips those rows"; \
	fi

clean:
	rm -rf $(BIN) demo-work bench-out
