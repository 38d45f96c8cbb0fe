#!/usr/bin/env bash
# Drives every operation of the OpenAPI document with schemathesis against a real deployment,
# seeded so that generated ids often name real events and users (not only 404s), once with a
# member's token and once with an admin's. Fails on any 5xx or any answer the document does
# not declare.
#
#   tests/schemathesis/run.sh monolith sqlite
#   tests/schemathesis/run.sh split postgres      # needs NATS and PostgreSQL, like the tests
#
# Environment: BIN (default target/debug, built if missing), MAX_EXAMPLES (default 40), SEED,
# POSTGRES_URL (default postgres://postgres@127.0.0.1:5432), NATS_URL.
set -euo pipefail
cd "$(dirname "$0")/../.."

topology=${1:-monolith}
backend=${2:-sqlite}
bin=${BIN:-target/debug}
max_examples=${MAX_EXAMPLES:-40}
postgres=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
command -v st >/dev/null || { echo "schemathesis is missing: pip install schemathesis" >&2; exit 2; }
if [ ! -x "$bin/rsvp" ] || { [ "$topology" = split ] && [ ! -x "$bin/rsvp-gateway" ]; }; then
  cargo build --features split --bins
fi

work=$(mktemp -d)
pids=()
databases=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for db in "${databases[@]}"; do psql -q "$postgres/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

database() { # name -> URL of a fresh database of the chosen backend
  if [ "$backend" = postgres ]; then
    local db="rsvp_fuzz_$1_$$"
    psql -q "$postgres/postgres" -c "CREATE DATABASE $db"
    databases+=("$db")
    echo "$postgres/$db"
  else
    echo "sqlite://$work/$1.db"
  fi
}

export RSVP__AUTH__BCRYPT_COST=4 RSVP__GATEWAY__AUTH_RATE_PER_MINUTE=0 RSVP__AUTH__PASSWORD_ATTEMPTS_PER_MINUTE=0 RSVP__LOG__LEVEL=${LOG_LEVEL:-warn}
export RSVP__AUTH__SIGNING_KEY_PATH="$work/signing_key.pem" RSVP__NOTIFICATIONS__MAIL_DIR="$work/mail"
port=18000
base="http://127.0.0.1:$port"
users_db=$(database users)
if [ "$topology" = monolith ]; then
  RSVP__SERVER__BIND="127.0.0.1:$port" RSVP__DATABASE__URL="$users_db" "$bin/rsvp" >"$work/rsvp.log" 2>&1 &
  pids+=($!)
else
  export RSVP__SERVICE__CREDENTIAL=fuzz RSVP__NATS__URL="${NATS_URL:-nats://127.0.0.1:4222}"
  export RSVP__NATS__STREAM="FUZZ$$" RSVP__NATS__SUBJECT_PREFIX="fuzz$$" RSVP__NATS__CONSUMER="fuzz$$"
  export RSVP__UPSTREAMS__USERS=http://127.0.0.1:18091 RSVP__UPSTREAMS__EVENTS=http://127.0.0.1:18090 \
    RSVP__UPSTREAMS__NOTIFICATIONS=http://127.0.0.1:18092
  RSVP__SERVER__BIND=127.0.0.1:18091 RSVP__DATABASE__URL="$users_db" "$bin/rsvp-users" >"$work/users.log" 2>&1 &
  pids+=($!)
  RSVP__SERVER__BIND=127.0.0.1:18090 RSVP__DATABASE__URL="$(database events)" "$bin/rsvp-events" >"$work/events.log" 2>&1 &
  pids+=($!)
  RSVP__SERVER__BIND=127.0.0.1:18092 RSVP__DATABASE__URL="$(database notifications)" "$bin/rsvp-notifications" >"$work/notifications.log" 2>&1 &
  pids+=($!)
  RSVP__SERVER__BIND="127.0.0.1:$port" "$bin/rsvp-gateway" >"$work/gateway.log" 2>&1 &
  pids+=($!)
fi
for _ in $(seq 1 100); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$base/readyz" >/dev/null

# The served document is valid OpenAPI (the validator client generators rely on).
if command -v openapi-spec-validator >/dev/null; then
  curl -fsS "$base/api/openapi.json" >"$work/openapi.json"
  openapi-spec-validator "$work/openapi.json"
fi

# Seed: two members, an admin, events (one cancelled), registrations.
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -fsS "$base$1" -H 'content-type: application/json' ${3:+-H "authorization: Bearer $3"} -d "$2"; }
account() { # email -> access token
  post /api/auth/register "{\"email\":\"$1\",\"password\":\"fuzzfuzz1\",\"name\":\"Fuzz\"}" >/dev/null
  post /api/auth/login "{\"email\":\"$1\",\"password\":\"fuzzfuzz1\"}" | json "['access_token']"
}
member=$(account member@example.com)
other=$(account other@example.com)
account admin@example.com >/dev/null
RSVP__DATABASE__URL="$users_db" "$bin/rsvp" make-admin admin@example.com
admin=$(post /api/auth/login '{"email":"admin@example.com","password":"fuzzfuzz1"}' | json "['access_token']")
ids=()
for i in 1 2 3; do
  event=$(post /api/events "{\"title\":\"Fuzz $i\",\"location\":\"Berlin\",\"category\":\"Tech\",\"starts_at\":\"2031-01-0${i}T18:00:00Z\",\"ends_at\":\"2031-01-0${i}T20:00:00Z\",\"capacity\":1}" "$member" | json "['id']")
  ids+=("$event")
  post "/api/events/$event/registrations" '{}' "$other" >/dev/null
  post "/api/events/$event/registrations" '{}' "$member" >/dev/null
done
curl -fsS -X DELETE "$base/api/events/${ids[2]}" -H "authorization: Bearer $member"
for who in member other; do # not the admin's: deleting itself would end the admin run early
  ids+=("$(curl -fsS "$base/api/users/me" -H "authorization: Bearer ${!who}" | json "['id']")")
done

{
  echo "[dictionaries.seeded]"
  printf 'values = ['; printf '"%s", ' "${ids[@]}"; echo ']'
  echo '[parameters]'
  echo '"path.id" = { dictionary = "seeded", probability = 0.7 }'
  echo '"query.organizer_id" = { dictionary = "seeded", probability = 0.5 }'
} >"$work/schemathesis.toml"

status=0
fuzz() { # token, description, extra options...
  local token=$1 what=$2; shift 2
  echo "== schemathesis, $topology on $backend, $what"
  st --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" --url "$base" \
    -H "Authorization: Bearer $token" --max-examples "$max_examples" ${SEED:+--seed "$SEED"} \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method \
    "$@" || status=1
}
fuzz "$member" "as a member"
# Deleting accounts last: the stateful phase would otherwise soon find the admin's own id and
# delete it, and every later request would only prove that its token is refused.
fuzz "$admin" "as an admin" --exclude-name "DELETE /api/users/{id}"
fuzz "$admin" "as an admin, deleting accounts" --include-name "DELETE /api/users/{id}"
if [ $status -ne 0 ] || [ -n "${SHOW_LOGS:-}" ]; then
  echo "== server logs" >&2
  grep -h -E '"level":"(WARN|ERROR)"|account deleted' "$work"/*.log | tail -n 40 >&2 || true
fi
exit $status
