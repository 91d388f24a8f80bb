#!/usr/bin/env bash
# Builds axon, serves the example service from configs/dev.yaml, makes a
# call, and stops the server (README: `make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/dev.yaml}
mkdir -p bin
go build -o bin/axon ./cmd/axon
bin/axon serve --config "$config" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  bin/axon call --config "$config" --timeout 1s axon.example.v1.Echo/Say '{"text":"hello, axon"}' 2>/dev/null && exit 0
  sleep 0.1
done
echo "demo: the server did not answer" >&2
exit 1
