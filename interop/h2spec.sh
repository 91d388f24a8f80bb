#!/usr/bin/env bash
# Runs h2spec (HTTP/2 conformance, pinned) against Axon's gRPC listener and,
# for comparison, against a plain grpc-go server, and prints both scores.
# Fails if Axon passes fewer tests than grpc-go.
set -euo pipefail
cd "$(dirname "$0")/.."
. interop/lib.sh

install_go_tool h2spec github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
mkdir -p bin
go build -o bin/axon ./cmd/axon
(cd bench && go build -o ../bin/grpcserver ./cmd/grpcserver)

tmp=$(mktemp -d)
grpc_pid=""
trap 'stop_axon; [ -n "$grpc_pid" ] && kill "$grpc_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
cat >"$tmp/axon.yaml" <<YAML
service: echo
listen:
  - { transport: tcp, address: "127.0.0.1:0", protocols: [grpc] }
tls: { mode: "off" }
registry: { use: static }
log: { level: info }
YAML
start_axon bin/axon "$tmp/axon.yaml" "$tmp/server.log"

score() { # score PORT: prints "passed total"
  bin/peers/h2spec -h 127.0.0.1 -p "$1" -o 2 >"$tmp/h2spec.out" 2>&1 || true
  local line
  line=$(grep -E '^[0-9]+ tests, [0-9]+ passed' "$tmp/h2spec.out" | tail -1)
  [ -n "$line" ] || { echo "h2spec printed no summary:" >&2; tail -20 "$tmp/h2spec.out" >&2; exit 1; }
  echo "$line"
}
axon=$(score "$AXON_PORT")
grep -B2 -A3 -E '^\s+× ' "$tmp/h2spec.out" >"$tmp/axon-failures.txt" || true
stop_axon

bin/grpcserver >"$tmp/grpc.log" 2>&1 &
grpc_pid=$!
for _ in $(seq 50); do grep -q "listening on" "$tmp/grpc.log" && break; sleep 0.1; done
grpc=$(score "$(sed -n 's/listening on //p' "$tmp/grpc.log")")

echo "h2spec v2.2.1 against Axon's gRPC listener: $axon"
echo "h2spec v2.2.1 against grpc-go v1.85.0:        $grpc"
a=$(sed -E 's/^[0-9]+ tests, ([0-9]+) passed.*/\1/' <<<"$axon")
b=$(sed -E 's/^[0-9]+ tests, ([0-9]+) passed.*/\1/' <<<"$grpc")
if [ "$a" -lt "$b" ]; then
  echo "Axon passes fewer h2spec tests than grpc-go; its failures:"; cat "$tmp/axon-failures.txt"
  exit 1
fi
