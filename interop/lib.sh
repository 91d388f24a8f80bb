# Shared helpers for the interop scripts (sourced, not run).
# Tools go to bin/peers inside the repo, pinned; servers log to a temp dir.

peers_bin() {
  mkdir -p bin/peers
  echo "$PWD/bin/peers"
}

# install_go_tool NAME PACKAGE@VERSION: installs a pinned Go tool into
# bin/peers unless it is already there.
install_go_tool() {
  local name=$1 pkg=$2 dir
  dir=$(peers_bin)
  if [ ! -x "$dir/$name" ]; then
    echo "== installing $pkg"
    GOBIN="$dir" go install "$pkg"
  fi
}

# start_axon BINARY CONFIG LOG: starts an Axon server and sets AXON_PID and
# AXON_PORT from the address its log reports.
start_axon() {
  local bin=$1 config=$2 log=$3
  "$bin" serve --config "$config" >"$log" 2>&1 &
  AXON_PID=$!
  AXON_PORT=""
  for _ in $(seq 100); do
    AXON_PORT=$(sed -n 's/.*generation running.*listeners=tcp:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$AXON_PORT" ] && return 0
    if ! kill -0 "$AXON_PID" 2>/dev/null; then
      echo "interop: the Axon server exited:" >&2; cat "$log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "interop: the Axon server did not start listening:" >&2; cat "$log" >&2
  return 1
}

stop_axon() {
  if [ -n "${AXON_PID:-}" ]; then
    kill -TERM "$AXON_PID" 2>/dev/null || true
    wait "$AXON_PID" 2>/dev/null || true
    AXON_PID=""
  fi
}
