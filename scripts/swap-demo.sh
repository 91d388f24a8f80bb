#!/usr/bin/env bash
# Hot swap under load: serves the example service, keeps calling it with
# `axon load`, and meanwhile rewrites the server's config file so that it
# moves TCP -> QUIC -> UDS -> TCP. Prints the load's summary (zero failed
# calls expected) and the server's generations. Usage: scripts/swap-demo.sh [SECONDS_PER_STEP]
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-3}
mkdir -p bin
go build -o bin/axon ./cmd/axon
work=$(mktemp -d /tmp/axon-swap.XXXXXX)   # short: socket paths are limited to 107 bytes
export XDG_STATE_HOME=$work/state          # QUIC's development CA, shared by server and client
cfg=$work/axon.yaml

write_config() { # transport address: written to a temporary file and renamed, as editors do
  cat > "$cfg.tmp" <<YAML
service: echo
listen: [{transport: $1, address: "$2"}]
tls: {mode: "off"}
codec: binary
registry: {use: local, options: {dir: "$work/registry"}}
server: {codecs: [binary, proto, json], drain_timeout: 10s}
YAML
  mv "$cfg.tmp" "$cfg"
}

write_config tcp 127.0.0.1:0
bin/axon serve --config "$cfg" 2> "$work/server.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q msg=listening "$work/server.log" && break; sleep 0.1; done

bin/axon load --config "$cfg" --duration $((4 * step))s --concurrency 8 \
  axon.example.v1.Echo/Say '{"text":"swap"}' > "$work/load.log" &
load=$!
sleep "$step"; echo "-> quic"; write_config quic 127.0.0.1:0
sleep "$step"; echo "-> uds";  write_config uds "$work/echo.sock"
sleep "$step"; echo "-> tcp";  write_config tcp 127.0.0.1:0
status=0
wait $load || status=$?
cat "$work/load.log"
echo "server generations:"
grep -E 'msg="generation running"|reload rejected' "$work/server.log" | sed 's/^/  /'
exit $status
