#!/usr/bin/env bash
# Runs the Node and browser interop tests against a real Axon server:
#   1. node-client.mjs: @grpc/grpc-js calls Echo over gRPC (HTTP/2 h2c);
#   2. browser-test.mjs: headless Chromium (Debian's chromium, driven by
#      playwright-core) loads a page bundled with esbuild that calls Echo over
#      gRPC-Web with @connectrpc/connect-web, from another origin that the
#      server's CORS config allows (and from one it does not).
# One Axon server (bin/axon, the example Echo service) serves axon, grpc and
# grpc-web on one TCP port on 127.0.0.1. Installs chromium and protoc from
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
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
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

cat >"$tmp/axon.yaml" <<YAML
service: echo
listen:
  - transport: tcp
    address: "127.0.0.1:0"
    protocols: [axon, grpc, grpc-web]
    protocol_options:
      grpc-web:
        cors:
          allowed_origins: ["http://127.0.0.1:$page_port"]
tls: { mode: "off" }
registry: { use: static }
server: { codecs: [proto, binary, json] }
log: { level: info }
YAML

echo "== starting the Axon server"
bin/axon serve --config "$tmp/axon.yaml" --watch=false >"$tmp/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 150); do
  port=$(sed -n 's/.*generation running.*listeners=tcp:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -1)
  [ -n "$port" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    echo "web interop: the Axon server exited:" >&2
    cat "$tmp/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "web interop: the Axon server did not report a listener in 15s:" >&2
  cat "$tmp/server.log" >&2
  exit 1
fi
echo "Axon listening on 127.0.0.1:$port (axon, grpc, grpc-web); page origin http://127.0.0.1:$page_port"

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

run "node @grpc/grpc-js over gRPC" node "$web/node-client.mjs" "127.0.0.1:$port"
run "chromium @connectrpc/connect-web over gRPC-Web" node "$web/browser-test.mjs" \
  --axon "http://127.0.0.1:$port" --page-port "$page_port" --www "$tmp/build/www" --chromium "$CHROMIUM"

kill -TERM "$server_pid" 2>/dev/null || true
server_rc=0
wait "$server_pid" 2>/dev/null || server_rc=$?
server_pid=""
if [ "$server_rc" -ne 0 ]; then
  failed=1
  summary+=("FAIL Axon server: exit $server_rc after SIGTERM")
fi
if [ "$failed" -ne 0 ]; then
  echo "== server log (last 30 lines)"
  tail -30 "$tmp/server.log"
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
