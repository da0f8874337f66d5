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

.PHONY: all build test demo bench deps sysdeps minio clean fuzz

all: build

build:
	$(GO) build -o $(BIN)/mpcfs ./cmd/mpcfs

# deps installs what the tests run for real: sysdeps and a MinIO server.
deps: sysdeps minio

# sysdeps installs fuse3 (fusermount3), ffmpeg and openssl from Debian's
# packages when they are missing.
sysdeps:
	@missing=""; \
	command -v fusermount3 >/dev/null || missing="$$missing fuse3"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

minio: $(MINIO)
$(MINIO):
	mkdir -p $(dir $(MINIO))
	GOBIN=$(abspath $(dir $(MINIO))) $(GO) install github.com/minio/minio@latest

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -race -timeout 25m ./...
	$(MAKE) fuzz

# fuzz runs every Fuzz* target of every package for FUZZTIME each, one
# target per go test run (go test takes one -fuzz at a time). Seed corpora
# and past failures live in each package's testdata/fuzz/.
FUZZTIME ?= 8s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

demo: sysdeps build
	$(BIN)/mpcfs demo --dir demo-work

bench: build deps
	$(GO) test -run XXX -bench . -benchtime 1s ./crypto/

clean:
	rm -rf $(BIN) demo-work
