#!/usr/bin/env bash
# Checks the units as systemd reads them: `systemd-analyze verify` (syntax, dependencies, and
# that every ExecStart names an executable: the binaries built in $1), then each unit's
# sandboxing with `systemd-analyze security`, failing above an exposure of 2.0 ("OK").
#   bash deploy/systemd/verify.sh target/debug
set -euo pipefail
bins=$(realpath "${1:?usage: verify.sh <folder with rsvp and the rsvp-<module> binaries>}")
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$here"/*.service; do
  sed "s|/usr/local/bin/|$bins/|" "$unit" >"$tmp/$(basename "$unit")"
done
systemd-analyze verify "$tmp"/*.service
for unit in "$tmp"/*.service; do
  systemd-analyze security --offline=yes --threshold=20 "$unit" | tail -1
done
