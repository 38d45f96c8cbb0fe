#!/usr/bin/env bash
# Starts the whole split topology on this machine: users (:9091), events (:9000) and the
# gateway (:8000), each with its own SQLite file under data/split/ (set USERS_DATABASE_URL /
# EVENTS_DATABASE_URL to postgres:// URLs to use PostgreSQL), domain events through the NATS
# JetStream server at $NATS_URL (default nats://127.0.0.1:4222). Ctrl-C stops all three.
#
#   deploy/run-split.sh            # build (release) and run
#   EVENTS_INSTANCES=2 deploy/run-split.sh   # two events instances behind the gateway
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --features split --bins
bin="${CARGO_TARGET_DIR:-target}/release"
mkdir -p data/split

# One shared secret for internal calls, kept across runs.
secret_file=data/split/service-credential
[ -s "$secret_file" ] || { head -c 32 /dev/urandom | base64 | tr -d '/+=' > "$secret_file"; chmod 600 "$secret_file"; }
export RSVP__SERVICE__CREDENTIAL="$(cat "$secret_file")"
export RSVP__NATS__URL="${NATS_URL:-nats://127.0.0.1:4222}"
export RSVP__UPSTREAMS__USERS="http://127.0.0.1:9091"
# The services believe the gateway's X-Forwarded-For, so their logs name the real client.
service_env=(RSVP__GATEWAY__TRUSTED_PROXIES=127.0.0.1)

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

env "${service_env[@]}" \
  RSVP__DATABASE__URL="${USERS_DATABASE_URL:-sqlite://data/split/users.db}" \
  RSVP__AUTH__SIGNING_KEY_PATH=data/split/signing_key.pem \
  "$bin/rsvp-users" & pids+=($!)

events_urls=()
for i in $(seq 1 "${EVENTS_INSTANCES:-1}"); do
  port=$((9000 + i - 1))
  env "${service_env[@]}" RSVP__SERVER__BIND="127.0.0.1:$port" \
    RSVP__DATABASE__URL="${EVENTS_DATABASE_URL:-sqlite://data/split/events.db}" \
    "$bin/rsvp-events" & pids+=($!)
  events_urls+=("http://127.0.0.1:$port")
done

# Mail goes to data/split/mail as .eml files unless RSVP__SMTP__URL names a server.
env "${service_env[@]}" \
  RSVP__DATABASE__URL="${NOTIFICATIONS_DATABASE_URL:-sqlite://data/split/notifications.db}" \
  RSVP__NOTIFICATIONS__MAIL_DIR=data/split/mail \
  "$bin/rsvp-notifications" & pids+=($!)

RSVP__UPSTREAMS__EVENTS="$(IFS=,; echo "${events_urls[*]}")" "$bin/rsvp-gateway" & pids+=($!)

for _ in $(seq 1 50); do
  curl -fsS http://127.0.0.1:8000/readyz >/dev/null 2>&1 && { echo "rsvp split topology ready on http://127.0.0.1:8000"; break; }
  sleep 0.2
done
wait -n "${pids[@]}"
