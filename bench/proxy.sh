#!/usr/bin/env bash
# The split's price, measured the way issue 22 states its goals (wrk -t2 -c64, release builds,
# SQLite, 20 events; every figure also × a bare actix-web handler measured in the same run):
#
# - one events service answered directly, through nginx (2 workers, keep-alive upstream: what a
#   proxy costs when it only proxies), through rsvp-gateway as it runs (answering the public
#   reads it keeps from its own cache) and through rsvp-gateway proxying only (its cache off);
#   each gateway / nginx;
# - event detail, the first list page and the attendee list on the monolith and on the split;
#   split / monolith.
#
#   bash bench/proxy.sh [seconds per scenario, default 5]   (ROUNDS=3: proxy scenarios repeated)
#
# Needs wrk, nginx, curl and jq, and NATS on 127.0.0.1:4222 (the split's broker). Builds the
# release binaries first; RSVP_BINS=<dir> measures the binaries of another build instead (and
# BENCH_BIN=<rsvp-bench> names the bare handler's binary; CI smoke-runs debug builds so);
# RSVP_PERF=<file> records a perf profile of rsvp-gateway while it serves event detail.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
ROUNDS=${ROUNDS:-3}
for tool in wrk nginx curl jq; do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh needs $tool" >&2; exit 1; }
done
[ -n "${RSVP_BINS:-}" ] || cargo build --release --features split --bins >&2
[ -n "${BENCH_BIN:-}" ] || cargo build --release -p rsvp-bench >&2
BINS=$(realpath "${RSVP_BINS:-target/release}")
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; [ -f "$WORK/perf.log" ] && cat "$WORK/perf.log" >&2; rm -rf "$WORK"; }
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
run rsvp-gateway 7300 ${GATEWAY_ENV:-} RSVP__UPSTREAMS__USERS=$USERS RSVP__UPSTREAMS__NOTIFICATIONS=$USERS \
  RSVP__UPSTREAMS__EVENTS=$EVENTS
GATEWAY_PID=${PIDS[-1]}
run rsvp-gateway 7304 ${GATEWAY_ENV:-} RSVP__UPSTREAMS__USERS=$USERS RSVP__UPSTREAMS__NOTIFICATIONS=$USERS \
  RSVP__UPSTREAMS__EVENTS=$EVENTS RSVP__CACHE__ENABLED=false
PROXYING_PID=${PIDS[-1]}
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

# CPU ticks used so far by the processes named $1 (pgrep -f; or pid:<pid>), summed.
ticks() {
  local t=0 pids
  if [[ $1 == pid:* ]]; then pids=${1#pid:}; else pids=$(pgrep -f "$1" || true); fi
  for pid in $pids; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
# Like rate; sets $CPU to the share of a core each side took meanwhile: "proxy% / events%".
rate_with_cpu() {
  local url=$1 proxy=$2 before_p before_e r
  before_p=$(ticks "$proxy"); before_e=$(ticks "$BINS/rsvp-events")
  r=$(rate "$url")
  CPU="$(( ($(ticks "$proxy") - before_p) * 100 / (DURATION * $(getconf CLK_TCK)) ))% / $(( ($(ticks "$BINS/rsvp-events") - before_e) * 100 / (DURATION * $(getconf CLK_TCK)) ))%"
  echo "$r"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "| scenario (wrk -t2 -c64, ${DURATION}s; proxies: median of $ROUNDS) | req/s | × bare | CPU: proxy / events service, each round |"
echo "|---|---:|---:|---:|"
report "bare actix-web handler" "$CEILING"
declare -A R
# Each proxy scenario ROUNDS times, interleaved (direct, nginx, gateway, direct, ...): the median
# of each, so a noisy neighbour slows all three alike instead of one.
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for what in detail list; do
  path=$([ "$what" = detail ] && echo "/api/events/$FIRST" || echo "/api/events")
  declare -A RUNS=() CPUS=()
  for round in $(seq "$ROUNDS"); do
    for via in direct:7302 nginx:7303 rsvp-gateway:7300 rsvp-gateway-proxying:7304; do
      name=${via%%:*}
      case $name in
        nginx) proxy="nginx: worker";;
        rsvp-gateway) proxy="pid:$GATEWAY_PID";;
        rsvp-gateway-proxying) proxy="pid:$PROXYING_PID";;
        *) proxy=none-at-all;;
      esac
      if [ -n "${RSVP_PERF:-}" ] && [ "$round,$what,$name" = 1,detail,rsvp-gateway-proxying ]; then
        perf record -F 999 --call-graph dwarf,16384 -o "$RSVP_PERF" -p "$PROXYING_PID" -- sleep "$DURATION" >"$WORK/perf.log" 2>&1 &
      fi
      rate_with_cpu "http://127.0.0.1:${via##*:}$path" "$proxy" >"$WORK/rate"
      RUNS[$name]+="$(cat "$WORK/rate") "
      CPUS[$name]+="$CPU; "
    done
  done
  for name in direct nginx rsvp-gateway rsvp-gateway-proxying; do
    R[$what,$name]=$(median "${RUNS[$name]}")
    echo "$(report "$what, $name" "${R[$what,$name]}") ${CPUS[$name]%; } |"
  done
done
R[detail,monolith]=$(rate "http://127.0.0.1:7100/api/events/$MONOLITH_FIRST")
report "detail, monolith" "${R[detail,monolith]}"
R[list,monolith]=$(rate "http://127.0.0.1:7100/api/events")
report "list, monolith" "${R[list,monolith]}"
R[attendees,monolith]=$(rate "http://127.0.0.1:7100/api/events/$MONOLITH_FIRST/registrations" -H "authorization: Bearer $MONOLITH_TOKEN")
report "attendee list, monolith" "${R[attendees,monolith]}"
R[attendees,split]=$(rate "http://127.0.0.1:7300/api/events/$FIRST/registrations" -H "authorization: Bearer $TOKEN")
report "attendee list, split" "${R[attendees,split]}"
echo
echo "| ratio | detail | list | attendee list |"
echo "|---|---:|---:|---:|"
echo "| rsvp-gateway / nginx | $(ratio "${R[detail,rsvp-gateway]}" "${R[detail,nginx]}") | $(ratio "${R[list,rsvp-gateway]}" "${R[list,nginx]}") | |"
echo "| rsvp-gateway proxying only / nginx | $(ratio "${R[detail,rsvp-gateway-proxying]}" "${R[detail,nginx]}") | $(ratio "${R[list,rsvp-gateway-proxying]}" "${R[list,nginx]}") | |"
echo "| nginx / direct | $(ratio "${R[detail,nginx]}" "${R[detail,direct]}") | $(ratio "${R[list,nginx]}" "${R[list,direct]}") | |"
echo "| split / monolith | $(ratio "${R[detail,rsvp-gateway]}" "${R[detail,monolith]}") | $(ratio "${R[list,rsvp-gateway]}" "${R[list,monolith]}") | $(ratio "${R[attendees,split]}" "${R[attendees,monolith]}") |"
echo "| split, gateway proxying only / monolith | $(ratio "${R[detail,rsvp-gateway-proxying]}" "${R[detail,monolith]}") | $(ratio "${R[list,rsvp-gateway-proxying]}" "${R[list,monolith]}") | |"
