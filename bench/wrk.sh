#!/usr/bin/env bash
# The hot read path measured the way issue 9 states its targets: wrk -t2 -c64 against the
# release monolith on SQLite, every figure also as a ratio to a bare actix-web handler measured
# in the same run. Runs the monolith twice: caches on (the product's default) and off (every
# read from the database), so a cache hit is never mistaken for the database path.
#
#   bash bench/wrk.sh [seconds per scenario, default 5] [database url, default a SQLite file]
#
# Needs wrk, curl and jq. Builds the release binaries first; RSVP_BIN measures another build of
# `rsvp` instead (say, an earlier commit's, for a before/after figure).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
DATABASE=${2:-}
for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || { echo "bench/wrk.sh needs $tool" >&2; exit 1; }
done
cargo build --release -p rsvp --bin rsvp >&2
cargo build --release -p rsvp-bench >&2
BIN=$(realpath "${RSVP_BIN:-target/release/rsvp}")
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/common.sh
measure_ceiling

start_monolith() { # $1: port, $2: cache on/off
  local dir="$WORK/$1"
  mkdir -p "$dir"
  (cd "$dir" && RSVP__SERVER__BIND=127.0.0.1:$1 RSVP__AUTH__BCRYPT_COST=4 \
    RSVP__GATEWAY__AUTH_RATE_PER_MINUTE=0 RSVP__LOG__LEVEL=warn RSVP__CACHE__ENABLED=$2 \
    RSVP__DATABASE__URL=${DATABASE:-sqlite://$dir/rsvp.db} \
    exec "$BIN" >"$dir/log" 2>&1) & PIDS+=($!)
  wait_up "http://127.0.0.1:$1/healthz"
}

# Signs up $2 people on the instance on port $1 and writes their access tokens to $WORK/people,
# one per line; makes an event with half as many seats and sets $CROWDED to it.
seed_people() {
  local base="http://127.0.0.1:$1" starts
  starts=$(date -u -d "+30 day" +%Y-%m-%dT%H:%M:%SZ)
  CROWDED=$(curl -fs -X POST "$base/api/events" -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \
    -d "{\"title\":\"Crowded\",\"location\":\"Berlin\",\"starts_at\":\"$starts\",\"ends_at\":\"$(date -u -d "+30 day 2 hour" +%Y-%m-%dT%H:%M:%SZ)\",\"capacity\":$(($2 / 2))}" | jq -r .id)
  seq "$2" | xargs -P 8 -I{} sh -c "
    curl -fs -X POST '$base/api/auth/register' -H 'content-type: application/json' \
      -d '{\"email\":\"p{}@example.com\",\"password\":\"password1\",\"name\":\"P {}\"}' >/dev/null
    curl -fs -X POST '$base/api/auth/login' -H 'content-type: application/json' \
      -d '{\"email\":\"p{}@example.com\",\"password\":\"password1\"}' | jq -r .access_token" >"$WORK/people"
}

# Like rate, for writes: fails the run if more than 1% of the answers were not 2xx. A few are
# expected: a person's sign-up still in flight when their withdrawal is sent (under a burst of
# slow writes) is answered 404, the reverse 409 — each a full trip through the write path.
write_rate() {
  local out refused total
  out=$(wrk -t2 -c64 -d"${DURATION}s" "$@")
  refused=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ -n "$refused" ] && [ $((refused * 100)) -gt "$total" ]; then
    echo "$out" >&2; echo "writes were refused: $refused of $total" >&2; exit 1
  fi
  awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out"
}

echo "| scenario (wrk -t2 -c64, ${DURATION}s) | req/s | × bare |"
echo "|---|---:|---:|"
report "bare actix-web handler" "$CEILING"
for cache in true false; do
  port=$([ "$cache" = true ] && echo 7100 || echo 7200)
  start_monolith "$port" "$cache"
  seed "http://127.0.0.1:$port"
  base="http://127.0.0.1:$port"
  label=$([ "$cache" = true ] && echo "cached" || echo "uncached")
  [ "$cache" = true ] && report "/healthz" "$(rate "$base/healthz")"
  report "event detail ($label)" "$(rate "$base/api/events/$FIRST")"
  report "first list page of 20 ($label)" "$(rate "$base/api/events")"
  report "list, category filter ($label)" "$(rate "$base/api/events?category=tech&limit=10")"
  report "/api/users/me ($label)" "$(rate "$base/api/users/me" -H "authorization: Bearer $TOKEN")"
  report "attendee list ($label)" "$(rate "$base/api/events/$FIRST/registrations" -H "authorization: Bearer $TOKEN")"
  if [ "$cache" = true ]; then
    for encoding in br gzip; do
      report "event detail ($label, $encoding)" "$(rate "$base/api/events/$FIRST" -H "accept-encoding: $encoding")"
      report "first list page of 20 ($label, $encoding)" "$(rate "$base/api/events" -H "accept-encoding: $encoding")"
    done
    # 1,000 people, 500 seats: every request is a sign-up or a withdrawal, and about half the
    # withdrawals from a seat promote the first person waiting.
    seed_people "$port" 1000
    writes=$(write_rate -s bench/signups.lua "$base" -- "$WORK/people" "$CROWDED" 2) || exit 1
    report "sign-up / withdrawal, half waiting" "$writes"
  fi
done
