# Helpers shared by bench/wrk.sh and bench/proxy.sh (sourced, not run). Expects $DURATION, $WORK
# and the PIDS array; every process started with `& PIDS+=($!)` is stopped on exit.

wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done; echo "$1 never answered" >&2; exit 1; }

# Requests per second wrk reached on $1 (extra wrk arguments after it).
rate() {
  local url=$1; shift
  wrk -t2 -c64 -d"${DURATION}s" "$@" "$url" | awk '/Requests\/sec/ {printf "%d", $2}'
}

# The bare actix-web handler on port 7999: $CEILING, the figure every other one is divided by.
measure_ceiling() {
  "${BENCH_BIN:-target/release/rsvp-bench}" ceiling --bind 127.0.0.1:7999 2>/dev/null & PIDS+=($!)
  wait_up http://127.0.0.1:7999/
  CEILING=$(rate http://127.0.0.1:7999/)
}

report() { # $1 label, $2 req/s
  awk -v l="$1" -v r="$2" -v c="$CEILING" 'BEGIN { printf "| %-38s | %8d | %6.3f |\n", l, r, r / c }'
}

# Seeds the instance at $1 (a base URL): an organiser, 20 events, 10 registrations on the first.
# Sets $FIRST (the first event's id) and $TOKEN (the organiser's access token).
seed() {
  local base=$1 token event starts
  post() { curl -fs -X POST "$base$1" -H 'content-type: application/json' ${3:+-H "authorization: Bearer $3"} -d "$2"; }
  post /api/auth/register '{"email":"org@example.com","password":"password1","name":"Organiser"}' >/dev/null
  token=$(post /api/auth/login '{"email":"org@example.com","password":"password1"}' | jq -r .access_token)
  for i in $(seq 20); do
    starts=$(date -u -d "+$i day" +%Y-%m-%dT%H:%M:%SZ)
    event=$(post /api/events "{\"title\":\"Event $i\",\"location\":\"Berlin\",\"category\":\"Tech\",\"starts_at\":\"$starts\",\"ends_at\":\"$(date -u -d "+$i day 2 hour" +%Y-%m-%dT%H:%M:%SZ)\",\"capacity\":50}" "$token" | jq -r .id)
    [ "$i" = 1 ] && FIRST=$event
  done
  for i in $(seq 10); do
    post /api/auth/register "{\"email\":\"a$i@example.com\",\"password\":\"password1\",\"name\":\"A $i\"}" >/dev/null
    local t; t=$(post /api/auth/login "{\"email\":\"a$i@example.com\",\"password\":\"password1\"}" | jq -r .access_token)
    post "/api/events/$FIRST/registrations" '{}' "$t" >/dev/null
  done
  TOKEN=$token
}
