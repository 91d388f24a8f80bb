#!/usr/bin/env bash
# Runs grpc-go's interop client (google.golang.org/grpc/interop/client,
# pinned) against an Axon server that serves grpc.testing.TestService over
# the gRPC protocol plugin, one test case at a time, and fails if any fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. interop/lib.sh

GRPC_VERSION=v1.85.0
CASES="empty_unary large_unary client_streaming server_streaming ping_pong empty_stream
timeout_on_sleeping_server cancel_after_begin cancel_after_first_response custom_metadata
status_code_and_message special_status_message unimplemented_method unimplemented_service"

install_go_tool client google.golang.org/grpc/interop/client@$GRPC_VERSION
go build -o bin/axon-interop-server ./interop/cmd/axon-interop-server

tmp=$(mktemp -d)
trap 'stop_axon; rm -rf "$tmp"' EXIT
cat >"$tmp/interop.yaml" <<YAML
service: grpc.testing.TestService
listen:
  - { transport: tcp, address: "127.0.0.1:0", protocols: [grpc] }
tls: { mode: "off" }
registry: { use: static }
server: { codecs: [proto] }
log: { level: info }
YAML
start_axon bin/axon-interop-server "$tmp/interop.yaml" "$tmp/server.log"

pass=0; failed=""
for c in $CASES; do
  if out=$(bin/peers/client -server_host 127.0.0.1 -server_port "$AXON_PORT" -test_case "$c" 2>&1); then
    pass=$((pass + 1)); echo "PASS $c"
  else
    failed="$failed $c"; echo "FAIL $c"; echo "$out" | tail -5 | sed 's/^/    /'
  fi
done
total=$(echo $CASES | wc -w)
echo "grpc-go interop client $GRPC_VERSION against Axon: $pass/$total passed"
[ -z "$failed" ] || { echo "failed:$failed"; echo "server log:"; tail -20 "$tmp/server.log"; exit 1; }
