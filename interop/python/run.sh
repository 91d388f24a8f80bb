#!/usr/bin/env bash
# Calls the example Echo service from Python grpcio (Debian python3-grpcio,
# gRPC's C-core, an implementation nobody here wrote) over mutual TLS:
# `axon serve` with the dev credentials (CA in a temp state directory),
# grpcio presenting a certificate from `axon dev-cert` (client.py says what is
# checked). Installs python3-grpcio when missing; uses /usr/bin/python3, the
# interpreter Debian's package is for.
set -euo pipefail
cd "$(dirname "$0")/../.."
. interop/lib.sh

PY=/usr/bin/python3
if ! "$PY" -c 'import grpc' 2>/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "== apt-get install python3-grpcio"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-grpcio >/dev/null
fi
mkdir -p bin
go build -o bin/axon ./cmd/axon

tmp=$(mktemp -d)
trap 'stop_axon; rm -rf "$tmp"' EXIT
cat >"$tmp/axon.yaml" <<YAML
service: echo
listen:
  - { transport: tcp, address: "127.0.0.1:0", protocols: [axon, grpc, grpc-web] }
tls: { mode: mutual, credentials: dev, options: { state_dir: "$tmp/state" } }
registry: { use: static }
server: { codecs: [proto] }
log: { level: info }
YAML
start_axon bin/axon "$tmp/axon.yaml" "$tmp/server.log"
bin/axon dev-cert --config "$tmp/axon.yaml" --out "$tmp/certs" --name python >/dev/null
if ! "$PY" interop/python/client.py "127.0.0.1:$AXON_PORT" "$tmp/certs/ca.pem" "$tmp/certs/cert.pem" "$tmp/certs/key.pem"; then
  echo "server log:"; tail -20 "$tmp/server.log"
  exit 1
fi
