#!/usr/bin/env bash
# The project's test command (README: `make test`). Needs Go; protoc and
# protoc-gen-go are used, when installed, to check generated code is fresh.
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
  make -s generate
  if ! git diff --quiet -- '*.pb.go'; then
    git diff --stat -- '*.pb.go'; echo "generated files are stale: run make generate and commit"; exit 1
  fi
else
  echo "== skipping the generated-code check (protoc or protoc-gen-go not installed)"
fi

echo "== go test -race"
go test -race -count=1 ./...

echo "== bench module builds"
(cd bench && go build ./... && go test -count=1 ./...)
