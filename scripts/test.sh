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

# Each fuzz target runs briefly (FUZZTIME, default 10s); an input that
# fails is written to the package's testdata/fuzz and fails the run.
# Minimizing is off: it would eat the short run, and a minimization cut
# short by -fuzztime is reported as a failure (golang/go#52569).
fuzztime=${FUZZTIME:-10s}
for target in ./plugins/codec-binary:FuzzDecode ./plugins/protocol-axon:FuzzFrameDecoder ./plugins/protocol-axon:FuzzServeConn; do
  echo "== fuzz ${target#*:} for $fuzztime"
  go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "$fuzztime" -fuzzminimizetime 0 "${target%%:*}"
done

echo "== bench module builds"
(cd bench && go build ./... && go test -count=1 ./...)
