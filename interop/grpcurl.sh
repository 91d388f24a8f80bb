#!/usr/bin/env bash
# Calls the example service with grpcurl (pinned) through server reflection,
# with no .proto files: list, describe, a unary call, a server-streaming call
# and a health check, against `axon serve` with the given config (default
# configs/dev.yaml, whose listener speaks axon, grpc and grpc-web on one port
# with mutual TLS from the development CA: grpcurl presents a certificate
# that `axon dev-cert` wrote). A plaintext grpcurl must be refused.
set -euo pipefail
cd "$(dirname "$0")/.."
. interop/lib.sh
config=${1:-configs/dev.yaml}

install_go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
mkdir -p bin
go build -o bin/axon ./cmd/axon

tmp=$(mktemp -d)
trap 'stop_axon; rm -rf "$tmp"' EXIT
# The same config on a free port, so that a developer's server on the
# configured one is left alone.
sed 's/address: "127.0.0.1:[0-9]*"/address: "127.0.0.1:0"/' "$config" >"$tmp/axon.yaml"
start_axon bin/axon "$tmp/axon.yaml" "$tmp/server.log"
tlsflags=(-plaintext)
if ! grep -Eq '^[[:space:]]*mode:[[:space:]]*"?off' "$tmp/axon.yaml"; then
  bin/axon dev-cert --config "$tmp/axon.yaml" --out "$tmp/certs" --name grpcurl >/dev/null
  tlsflags=(-cacert "$tmp/certs/ca.pem" -cert "$tmp/certs/cert.pem" -key "$tmp/certs/key.pem")
fi

fail() { echo "grpcurl: $*" >&2; echo "server log:" >&2; tail -20 "$tmp/server.log" >&2; exit 1; }
expect() { # expect WHAT PATTERN OUTPUT
  grep -q -- "$2" <<<"$3" || fail "$1: output lacks $2:"$'\n'"$3"
  echo "PASS $1"
}

out=$(bin/peers/grpcurl "${tlsflags[@]}" "127.0.0.1:$AXON_PORT" list) || fail "list failed"
expect "list" "axon.example.v1.Echo" "$out"
expect "list shows health" "grpc.health.v1.Health" "$out"
out=$(bin/peers/grpcurl "${tlsflags[@]}" "127.0.0.1:$AXON_PORT" describe axon.example.v1.Echo) || fail "describe failed"
expect "describe" "rpc Say" "$out"
out=$(bin/peers/grpcurl "${tlsflags[@]}" -d '{"text":"hello, grpcurl"}' "127.0.0.1:$AXON_PORT" axon.example.v1.Echo/Say) || fail "Say failed"
expect "unary Say" '"text": "hello, grpcurl"' "$out"
if grep -q "rpc Expand" <<<"$(bin/peers/grpcurl "${tlsflags[@]}" "127.0.0.1:$AXON_PORT" describe axon.example.v1.Echo)"; then
  out=$(bin/peers/grpcurl "${tlsflags[@]}" -d '{"text":"one two three"}' "127.0.0.1:$AXON_PORT" axon.example.v1.Echo/Expand) || fail "Expand failed"
  expect "server-streaming Expand" '"text"' "$out"
fi
out=$(bin/peers/grpcurl "${tlsflags[@]}" -d '{"service":"axon.example.v1.Echo"}' "127.0.0.1:$AXON_PORT" grpc.health.v1.Health/Check) || fail "health check failed"
expect "health Check" "SERVING" "$out"
if out=$(bin/peers/grpcurl "${tlsflags[@]}" -d '{}' "127.0.0.1:$AXON_PORT" axon.example.v1.Echo/NoSuch 2>&1); then
  fail "a call to an unknown method succeeded"
fi
echo "PASS unknown method fails: $(head -1 <<<"$out")"
if [ "${tlsflags[0]}" != -plaintext ]; then
  echo "PASS mutual TLS: grpcurl ${tlsflags[*]}"
  if out=$(timeout 20 bin/peers/grpcurl -plaintext "127.0.0.1:$AXON_PORT" list 2>&1); then
    fail "a plaintext grpcurl was served by a mutual-TLS listener"
  fi
  echo "PASS plaintext grpcurl refused: $(head -1 <<<"$out")"
  if out=$(timeout 20 bin/peers/grpcurl -cacert "$tmp/certs/ca.pem" "127.0.0.1:$AXON_PORT" list 2>&1); then
    fail "a grpcurl without a client certificate was served by a mutual-TLS listener"
  fi
  echo "PASS grpcurl without a client certificate refused: $(head -1 <<<"$out")"
fi
echo "grpcurl v1.9.4 against Axon: all checks passed"
