#!/usr/bin/env bash
# Runs the Node and browser interop tests against real Axon servers:
#   1. node-client.mjs: @grpc/grpc-js calls Echo over gRPC, in cleartext
#      (HTTP/2 h2c) and over mutual TLS (grpc.credentials.createSsl with a
#      client certificate from `axon dev-cert`); over TLS it also checks that
#      a client without a certificate is refused;
#   2. browser-test.mjs: headless Chromium (Debian's chromium, driven by
#      playwright-core) loads a page bundled with esbuild that calls Echo over
#      gRPC-Web with @connectrpc/connect-web, from another origin that the
#      server's CORS config allows (and from one it does not), over HTTP and
#      over HTTPS. For HTTPS, Chromium trusts the dev CA through an NSS
#      database in a temporary HOME, as a user trusts a local CA; a second
#      Chromium without it must refuse the server.
# Three Axon servers (bin/axon, the example Echo service) each serve axon,
# grpc and grpc-web on one TCP port on 127.0.0.1: one in cleartext
# (tls.mode off), one with mutual TLS, one in tls.mode server (browsers
# present no client certificate). Both TLS servers use the dev credentials
# with a CA in the temp dir. Installs chromium, protoc and certutil from
# Debian if missing, and the npm packages from package-lock.json (npm ci).
# Prints one summary line per test; exits non-zero if anything fails.
set -euo pipefail

web=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$web/../.." && pwd)
cd "$root"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

# Debian packages, only when missing.
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "== apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== npm ci (interop/web)"
(cd "$web" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)

echo "== go build -o bin/axon ./cmd/axon"
go build -o bin/axon ./cmd/axon

tmp=$(mktemp -d "${TMPDIR:-/tmp}/axon-web.XXXXXX")
servers=()      # the pids of the Axon servers started
server_names=() # and their names, in the same order
cleanup() {
  local pid
  for pid in "${servers[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${servers[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== protoc-gen-es + esbuild: the browser page"
node "$web/build.mjs" "$tmp/build"

# The page's origin must be in the server's CORS config before the server
# starts, so its port is chosen here (a free port the kernel hands out, then
# released for browser-test.mjs to bind).
page_port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')

# write_config FILE TLS writes the Echo server's config: one TCP listener
# on a port the kernel picks, serving the three protocols, with the tls
# block TLS. Each TLS mode gets its own server and log, as a deployment
# with one mode would have.
# The CORS block is grpc-web's; with grpc and grpc-web on one listener,
# grpc-web serves every connection, so it holds over HTTPS, where Chromium
# negotiates h2, as well as over HTTP/1.1.
write_config() {
  local cors="cors: { allowed_origins: [\"http://127.0.0.1:$page_port\"] }"
  cat >"$1" <<YAML
service: echo
listen:
  - transport: tcp
    address: "127.0.0.1:0"
    protocols: [axon, grpc, grpc-web]
    protocol_options:
      grpc-web: { $cors }
tls: $2
registry: { use: static }
server: { codecs: [proto, binary, json] }
log: { level: info }
YAML
}
# The dev credentials keep their CA in state_dir; one in the temp dir keeps
# the user's own dev CA out of the test, and is thrown away with it.
dev="credentials: dev, options: { state_dir: \"$tmp/state\" }"
write_config "$tmp/plain.yaml" '{ mode: "off" }'
write_config "$tmp/mutual.yaml" "{ mode: mutual, $dev }"
write_config "$tmp/https.yaml" "{ mode: server, $dev }"

# grpc-js's client certificate, from the same dev CA (created here, before
# the servers start), with the CA certificate that both TLS clients trust.
echo "== axon dev-cert: the client certificate of grpc-js"
bin/axon dev-cert --config "$tmp/mutual.yaml" --out "$tmp/client" --name grpc-js
ca=$tmp/client/ca.pem

# start_server NAME starts the server configured by $tmp/NAME.yaml, logging
# to $tmp/NAME.log, and sets port to the port it reports in its
# `generation running ... listeners=tcp://127.0.0.1:PORT` line.
start_server() {
  local name=$1 pid
  bin/axon serve --config "$tmp/$name.yaml" --watch=false >"$tmp/$name.log" 2>&1 &
  pid=$!
  servers+=("$pid")
  server_names+=("$name")
  port=""
  for _ in $(seq 150); do
    port=$(sed -n 's/.*generation running.*listeners=tcp:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log" | head -1)
    [ -n "$port" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "web interop: the Axon server $name exited:" >&2
      cat "$tmp/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "web interop: the Axon server $name did not report a listener in 15s:" >&2
  cat "$tmp/$name.log" >&2
  exit 1
}

echo "== starting the Axon servers"
start_server plain
plain_port=$port
start_server mutual
mutual_port=$port
start_server https
https_port=$port
echo "Axon (axon, grpc, grpc-web) on 127.0.0.1: port $plain_port cleartext, $mutual_port mutual TLS," \
  "$https_port TLS mode server; page origin http://127.0.0.1:$page_port"

# run NAME CMD...: runs one test with a time limit, shows its output and
# records a summary line from its last line.
summary=()
failed=0
run() {
  local name=$1 rc=0
  shift
  echo "== $name"
  timeout --foreground -k 10 180 "$@" >"$tmp/out" 2>&1 || rc=$?
  cat "$tmp/out"
  local last
  last=$(tail -1 "$tmp/out")
  if [ "$rc" -eq 0 ]; then
    summary+=("PASS $name: $last")
  else
    failed=1
    summary+=("FAIL $name (exit $rc): $last")
  fi
}

run "node @grpc/grpc-js over gRPC" node "$web/node-client.mjs" "127.0.0.1:$plain_port"
# grpc-js dials 127.0.0.1 and so sets the TLS server name to an IP address,
# which Node warns about (DEP0123); the certificate names 127.0.0.1, and
# grpc-js checks it.
run "node @grpc/grpc-js over gRPC, mutual TLS" node --disable-warning=DEP0123 "$web/node-client.mjs" \
  --ca "$ca" --cert "$tmp/client/cert.pem" --key "$tmp/client/key.pem" "127.0.0.1:$mutual_port"
run "chromium @connectrpc/connect-web over gRPC-Web" node "$web/browser-test.mjs" \
  --axon "http://127.0.0.1:$plain_port" --page-port "$page_port" --www "$tmp/build/www" --chromium "$CHROMIUM"
run "chromium @connectrpc/connect-web over gRPC-Web, HTTPS" node "$web/browser-test.mjs" \
  --axon "https://127.0.0.1:$https_port" --trust-ca "$ca" \
  --page-port "$page_port" --www "$tmp/build/www" --chromium "$CHROMIUM"

# Each server must stop cleanly on SIGTERM.
for i in "${!servers[@]}"; do
  kill -TERM "${servers[$i]}" 2>/dev/null || true
  server_rc=0
  wait "${servers[$i]}" 2>/dev/null || server_rc=$?
  if [ "$server_rc" -ne 0 ]; then
    failed=1
    summary+=("FAIL Axon server ${server_names[$i]}: exit $server_rc after SIGTERM")
  fi
done
servers=()
if [ "$failed" -ne 0 ]; then
  for name in "${server_names[@]}"; do
    echo "== server log of $name (last 30 lines)"
    tail -30 "$tmp/$name.log"
  done
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
