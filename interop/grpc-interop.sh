#!/usr/bin/env bash
# Runs grpc-go's interop test cases (pinned) against an Axon server that
# serves grpc.testing.TestService over the gRPC protocol plugin, one test case
# at a time, in three setups, and fails if any case fails:
#   1. plaintext (h2c): grpc-go's interop client binary;
#   2. TLS, tls.mode server: the same binary with -use_tls, trusting the
#      development CA (-use_test_ca -ca_file);
#   3. mutual TLS (the default mode): interop/grpc-tls-client, which runs
#      grpc-go's own test case code (google.golang.org/grpc/interop) over a
#      grpc-go channel that presents a client certificate from
#      `axon dev-cert` (the interop binary has no client certificate flag).
# Against the mutual-TLS server, the interop binary without a client
# certificate must be refused.
set -euo pipefail
cd "$(dirname "$0")/.."
. interop/lib.sh

GRPC_VERSION=v1.85.0
CASES="empty_unary large_unary client_streaming server_streaming ping_pong empty_stream
timeout_on_sleeping_server cancel_after_begin cancel_after_first_response custom_metadata
status_code_and_message special_status_message unimplemented_method unimplemented_service"

install_go_tool client google.golang.org/grpc/interop/client@$GRPC_VERSION
go build -o bin/axon-interop-server ./interop/cmd/axon-interop-server
(cd interop/grpc-tls-client && go build -o ../../bin/peers/grpc-tls-client .)

tmp=$(mktemp -d)
trap 'stop_axon; rm -rf "$tmp"' EXIT

# serve MODE: starts the interop server with tls.mode MODE (dev credentials
# with their CA in $tmp/state) and sets AXON_PORT.
serve() {
  local tls='{ mode: "off" }'
  [ "$1" = off ] || tls="{ mode: $1, credentials: dev, options: { state_dir: \"$tmp/state\" } }"
  cat >"$tmp/interop-$1.yaml" <<YAML
service: grpc.testing.TestService
listen:
  - { transport: tcp, address: "127.0.0.1:0", protocols: [grpc] }
tls: $tls
registry: { use: static }
server: { codecs: [proto] }
log: { level: info }
YAML
  start_axon bin/axon-interop-server "$tmp/interop-$1.yaml" "$tmp/server-$1.log"
}

total=0; pass=0; failed=""
# cases LABEL CLIENT-COMMAND...: runs every case with the client command.
cases() {
  local label=$1 c out; shift
  for c in $CASES; do
    total=$((total + 1))
    if out=$("$@" -server_host 127.0.0.1 -server_port "$AXON_PORT" -test_case "$c" 2>&1); then
      pass=$((pass + 1)); echo "PASS $label $c"
    else
      failed="$failed $label/$c"; echo "FAIL $label $c"; echo "$out" | tail -5 | sed 's/^/    /'
    fi
  done
}

serve off
cases plaintext bin/peers/client
stop_axon

serve server
cases tls-server bin/peers/client -use_tls -use_test_ca -ca_file "$tmp/state/dev-ca/ca.pem"
stop_axon

serve mutual
bin/axon-interop-server dev-cert --config "$tmp/interop-mutual.yaml" --out "$tmp/certs" --name grpc-interop >/dev/null
cases mutual-tls bin/peers/grpc-tls-client -ca_file "$tmp/certs/ca.pem" -cert_file "$tmp/certs/cert.pem" -key_file "$tmp/certs/key.pem"
total=$((total + 1))
if out=$(timeout 30 bin/peers/client -use_tls -use_test_ca -ca_file "$tmp/certs/ca.pem" \
  -server_host 127.0.0.1 -server_port "$AXON_PORT" -test_case empty_unary 2>&1); then
  failed="$failed mutual-tls/no-client-certificate"
  echo "FAIL mutual-tls: the interop client without a client certificate was served"
else
  pass=$((pass + 1))
  echo "PASS mutual-tls: the interop client without a client certificate was refused: $(grep -o 'code = .*' <<<"$out" | head -1)"
fi
stop_axon

echo "grpc-go interop $GRPC_VERSION against Axon (plaintext, TLS server mode, mutual TLS): $pass/$total passed"
if [ -n "$failed" ]; then
  echo "failed:$failed"
  for f in "$tmp"/server-*.log; do echo "== $f"; tail -20 "$f"; done
  exit 1
fi
