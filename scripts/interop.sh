#!/usr/bin/env bash
# Runs every interop suite against real Axon servers, with peers nobody here
# wrote (README: `make interop`; CI runs it after `make test`). Each suite
# installs its pinned peer; see interop/*/README.md and interop/*.sh.
# Prints a summary line per suite and fails if any suite fails.
set -uo pipefail
cd "$(dirname "$0")/.."
suites=(
  "grpc-go interop cases (plaintext, TLS, mutual TLS):interop/grpc-interop.sh"
  "grpcurl via reflection:interop/grpcurl.sh"
  "Python grpcio (C-core) over mutual TLS:interop/python/run.sh"
  "h2spec vs grpc-go:interop/h2spec.sh"
  "Node grpc-js and Chromium gRPC-Web:interop/web/run.sh"
  "ConnectRPC conformance (gRPC, gRPC-Web):interop/conformance/run.sh"
)
summary=(); failed=0
for s in "${suites[@]}"; do
  name=${s%%:*}; script=${s#*:}
  echo "== interop: $name ($script)"
  start=$(date +%s)
  if bash "$script"; then r=PASS; else r=FAIL; failed=1; fi
  summary+=("$r $name ($(( $(date +%s) - start ))s)")
done
echo "== interop summary"
printf '%s\n' "${summary[@]}"
exit $failed
