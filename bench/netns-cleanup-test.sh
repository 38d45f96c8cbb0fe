#!/usr/bin/env bash
# `rsvp-bench compare --network netns` leaves nothing behind: no namespace, no link, no process —
# after a run that succeeds, one interrupted with Ctrl-C (SIGINT), one stopped with SIGTERM and
# one that fails (its gateway killed under it). Needs root; run from the repository root after
# `cargo build --features split --bins && cargo build -p rsvp-bench`.
set -uo pipefail
bench=${BENCH:-target/debug/rsvp-bench}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failures=0

leftovers() { # what a run may have left: its namespaces, links, processes on its hosts
  ip netns list | grep '^rsvp-'
  ip -o link show | grep -E ': (h[0-9]+|br0)[@:]'
  ls -d "${TMPDIR:-/tmp}"/rsvp-*-postgres "${TMPDIR:-/tmp}"/rsvp-*-round-trips 2>/dev/null
  local root pid
  root=$(readlink /proc/self/ns/net)
  for pid in $(pgrep -f 'rsvp|nats-server'); do
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$root" ]] && continue
    local cmdline
    cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)
    [[ -n $cmdline ]] && echo "process in a namespace: $cmdline" # (empty: it just exited)
  done
}

check() { # name
  sleep 0.5
  local left
  left=$(leftovers)
  if [[ -n $left ]]; then
    echo "FAIL: $1 left behind:"; echo "$left"; failures=$((failures + 1))
    "$bench" netns-cleanup >/dev/null 2>&1
  else
    echo "ok: $1 left nothing behind"
  fi
}

wait_for() { # pattern: until a process matching it runs (30 s)
  for _ in $(seq 1 300); do pgrep -f "$1" >/dev/null && return 0; sleep 0.1; done
  echo "FAIL: $1 never started"; failures=$((failures + 1)); return 1
}

# Each run bounded: a run that hangs fails the test instead of the CI job (timeout passes the
# signals it receives on to the run).
args=(300 "$bench" compare --network netns --quick --delay 1ms --out "$out")

if [[ -n $(leftovers) ]]; then
  echo "error: leftovers before the test (run: $bench netns-cleanup)"; leftovers; exit 1
fi

timeout "${args[@]}" >/dev/null 2>&1 || { echo "FAIL: the plain run failed"; failures=$((failures + 1)); }
check "a run that succeeded"

for signal in INT TERM; do
  timeout "${args[@]}" >/dev/null 2>&1 &
  pid=$!
  wait_for 'rsvp-events' && sleep 1
  kill -"$signal" "$pid"
  wait "$pid"; status=$?
  [[ $status -ne 0 ]] || { echo "FAIL: SIG$signal: exit 0"; failures=$((failures + 1)); }
  check "a run stopped with SIG$signal"
done

timeout "${args[@]}" >/dev/null 2>&1 &
pid=$!
wait_for 'rsvp-gateway' && sleep 0.5
pkill -9 -f 'rsvp-gateway$'
wait "$pid"; status=$?
[[ $status -ne 0 ]] || { echo "FAIL: a run whose gateway died succeeded"; failures=$((failures + 1)); }
check "a run that failed"

[[ $failures -eq 0 ]] && echo "netns cleanup: all cases passed" || exit 1
