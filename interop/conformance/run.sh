#!/usr/bin/env bash
# Runs the ConnectRPC conformance suite against an Axon server, in server
# mode, for the gRPC and gRPC-Web protocols (interop/conformance/README.md).
# Installs the pinned runner into $(go env GOBIN) (else GOPATH/bin) when it
# is missing, builds the server under test, and runs every case that
# config.yaml selects. The runner prints one line per failure and the
# summary; the exit status is non-zero when a case fails that
# known-failing.txt does not list, or a listed case passes.
# Usage: interop/conformance/run.sh [extra connectconformance flags, e.g. -v or --run PATTERN]
set -euo pipefail
cd "$(dirname "$0")/../.."
version=v1.0.7
bin=$(go env GOBIN)
[ -n "$bin" ] || bin=$(go env GOPATH)/bin
runner=$bin/connectconformance
if ! "$runner" --version 2>/dev/null | grep -qx "connectconformance $version"; then
	echo "run.sh: installing connectconformance $version into $bin" >&2
	go install "connectrpc.com/conformance/cmd/connectconformance@$version"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/axon-conformance-server" ./interop/conformance/cmd/axon-conformance-server
dir=interop/conformance
flaky=()
if grep -qv '^\s*\(#\|$\)' "$dir/known-flaky.txt" 2>/dev/null; then
	flaky=(--known-flaky "@$dir/known-flaky.txt")
fi
echo "run.sh: connectconformance --conf $dir/config.yaml --mode server --known-failing @$dir/known-failing.txt ${flaky[*]} $* -- axon-conformance-server" >&2
"$runner" --conf "$dir/config.yaml" --mode server \
	--known-failing "@$dir/known-failing.txt" "${flaky[@]}" "$@" \
	-- "$work/axon-conformance-server"
