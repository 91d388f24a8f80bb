#!/usr/bin/env bash
# Regenerates the Go code of the ConnectRPC conformance protos (config,
# service, server_compat) under internal/gen/conformancev1, from the .proto
# files that ship in the pinned conformance module. Needs protoc (Debian:
# protobuf-compiler) and protoc-gen-go v1.36.12
# (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
# Usage: interop/conformance/generate.sh [OUT_ROOT] (default: the repository root).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-.}
version=v1.0.7
dir=$(go mod download -json "connectrpc.com/conformance@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir/proto" ] || { echo "generate.sh: conformance module $version not found" >&2; exit 1; }
pkg=github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1
files=(config.proto service.proto server_compat.proto)
opts=(--go_opt=module=github.com/axonrpc/axon)
for f in "${files[@]}"; do
	opts+=("--go_opt=Mconnectrpc/conformance/v1/$f=$pkg")
done
protoc -I "$dir/proto" --go_out="$out" "${opts[@]}" "${files[@]/#/connectrpc/conformance/v1/}"
