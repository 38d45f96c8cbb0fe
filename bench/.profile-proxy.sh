#!/usr/bin/env bash
# The split's price, measured the way issue 22 states its goals (wrk -t2 -c64, release builds,
# SQLite, 20 events; every figure also × a bare actix-web handler measured in the same run):
#
# - one events service answered directly, through nginx (2 workers, keep-alive upstream: what a
#   proxy costs when it only proxies) and through rsvp-gateway; the gateway / nginx ratio;
# - event detail and the attendee list on the monolith and on the split; split / monolith.
#
#   bash bench/proxy.sh [seconds per scenario, default 5]
#
# Needs wrk, nginx, curl and jq, and NATS on 127.0.0.1:4222 (the split's broker). Builds the
# release binaries first; RSVP_BINS=<dir> measures the binaries of another build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
for tool in wrk nginx curl jq; do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh needs $tool" >&2; exit 1; }
done
cargo build --release --features split --bins >&2
cargo build --release -p rsvp-bench >&2
BINS=$(realpath "${RSVP_BINS:-target/release}")
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/common.sh
measure_ceiling

# Runs binary $1 on port $2 with the environment after them, logging to $WORK/<binary>.log.
run() {
  local binary=$1 port=$2; shift 2
  env RSVP__SERVER__BIND="127.0.0.1:$port" RSVP__AUTH__BCRYPT_COST=4 \
    RSVP__AUTH__SIGNING_KEY_PATH="$WORK/signing_key.pem" RSVP__SERVICE__CREDENTIAL=bench-secret \
    RSVP__GATEWAY__AUTH_RATE_PER_MINUTE=0 RSVP__AUTH__PASSWORD_ATTEMPTS_PER_MINUTE=0 \
    RSVP__LOG__LEVEL=warn RSVP__NATS__STREAM="PROXYBENCH_$$" RSVP__NATS__SUBJECT_PREFIX="proxybench_$$" \
    RSVP__NOTIFICATIONS__MAIL_DIR="$WORK/mail" "$@" "$BINS/$binary" >"$WORK/$binary.log" 2>&1 & PIDS+=($!)
  wait_up "http://127.0.0.1:$port/readyz"
}

run rsvp 7100 RSVP__DATABASE__URL="sqlite://$WORK/monolith.db"
seed http://127.0.0.1:7100
MONOLITH_FIRST=$FIRST MONOLITH_TOKEN=$TOKEN

USERS=http://127.0.0.1:7301 EVENTS=http://127.0.0.1:7302
run rsvp-users 7301 RSVP__DATABASE__URL="sqlite://$WORK/users.db" \
  RSVP__TOPOLOGY__LOCAL_MODULES=users,notifications RSVP__UPSTREAMS__EVENTS=$EVENTS
run rsvp-events 7302 RSVP__DATABASE__URL="sqlite://$WORK/events.db" \
  RSVP__UPSTREAMS__USERS=$USERS RSVP__UPSTREAMS__NOTIFICATIONS=$USERS
run rsvp-gateway 7300 RSVP__UPSTREAMS__USERS=$USERS RSVP__UPSTREAMS__NOTIFICATIONS=$USERS \
  RSVP__UPSTREAMS__EVENTS=$EVENTS
seed http://127.0.0.1:7300

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream events { server 127.0.0.1:7302; keepalive 64; }
  server {
    listen 127.0.0.1:7303;
    location / {
      proxy_pass http://events;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' & PIDS+=($!)
wait_up http://127.0.0.1:7303/readyz

GW=$(pgrep -f release/rsvp-gateway | head -1); perf record -F 1999 --call-graph dwarf,16384 -o /tmp/gw.perf -p $GW -- sleep 6 >/dev/null 2>&1 & sleep 0.5; wrk -t2 -c64 -d5s http://127.0.0.1:7300/api/events/$FIRST; wait; exit 0
