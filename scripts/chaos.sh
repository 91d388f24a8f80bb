#!/usr/bin/env bash
# Runs the chaos scenarios (chaos/): each attack against a real `axon serve`
# child process for 20 s under legitimate load, then prints one summary line
# per attack. Takes about 7 minutes. Extra arguments go to `go test`, e.g.
#   scripts/chaos.sh -run 'TestChaos/h2-rapid-reset'
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/axon-chaos.XXXXXX")
trap 'rm -f "$log"' EXIT
CHAOS=1 go test -count=1 -timeout 15m -v "$@" ./chaos/ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo
echo "== chaos summary (p99 ratio is reported, target <= 3x; PASS/FAIL is the issue's acceptance) =="
grep -o 'CHAOS .*' "$log" | awk '!seen[$0]++' | grep . || echo "(no scenario finished)"
exit "$status"
