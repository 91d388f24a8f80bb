#!/usr/bin/env bash
# The project's test command (README: `make test`). Needs Go; protoc and
# protoc-gen-go are used, when installed, to check generated code is fresh.
# It also runs every fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi

echo "== go vet"
go vet ./...
(cd bench && go vet ./...)

if command -v protoc >/dev/null && command -v protoc-gen-go >/dev/null; then
  echo "== generated code is fresh"
  # Generate into a scratch directory and compare, so a stale or missing
  # file fails without touching the working tree.
  gen=$(mktemp -d)
  trap 'rm -rf "$gen"' EXIT
  make -s generate GEN_OUT="$gen" >/dev/null
  stale=""
  for f in $(cd "$gen" && find . -name '*.pb.go' | sort); do
    cmp -s "$gen/$f" "$f" || stale="$stale ${f#./}"
  done
  if [ -n "$stale" ]; then
    echo "generated files are stale or missing:$stale"; echo "run make generate and commit"; exit 1
  fi
else
  echo "== skipping the generated-code check (protoc or protoc-gen-go not installed)"
fi

echo "== go test -race"
go test -race -count=1 ./...

# Each fuzz target runs briefly; an input that fails is written to the
# package's testdata/fuzz and fails the run. The budget is a count of
# executions, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report its own deadline as a failure at the end of the run
# (golang/go#75804), which a loaded CI machine hits now and then. FUZZTIME
# overrides every budget (e.g. FUZZTIME=60s for a longer local run).
# Minimizing is off: it would eat the short run (golang/go#52569).
for spec in ./plugins/codec-binary:FuzzDecode:150000x \
            ./plugins/protocol-axon:FuzzFrameDecoder:300000x \
            ./plugins/protocol-axon:FuzzServeConn:100000x \
            ./plugins/protocol-grpc:FuzzRecv:50000x \
            ./plugins/protocol-grpc:FuzzGunzip:20000x \
            ./plugins/protocol-grpc:FuzzParseTimeout:60000x \
            ./plugins/protocol-grpc:FuzzIncomingMD:50000x \
            ./plugins/protocol-grpc:FuzzBase64Reader:40000x \
            ./plugins/protocol-grpc:FuzzServeHTTP:40000x \
            ./kernel:FuzzLoad:100000x \
            ./kernel/config:FuzzLoadDecode:250000x; do
  IFS=: read -r pkg target budget <<<"$spec"
  budget=${FUZZTIME:-$budget}
  echo "== fuzz $target for $budget"
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" -fuzzminimizetime 0 "$pkg"
done

echo "== bench module builds"
(cd bench && go build ./... && go test -count=1 ./...)

# The codec comparison harness runs (one short round: its figures here mean
# nothing, only that it still works).
echo "== codecbench smoke run"
go run ./plugins/codec-binary/internal/codecbench -rounds 1 -benchtime 20ms
