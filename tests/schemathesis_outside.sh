#!/usr/bin/env bash
# schemathesis from outside: start the service (`python app.py`, on the embedded defaults, in a
# temporary folder, on loopback), make a TV app's key and an admin app's key with the CLI, and
# run `schemathesis run` on its /openapi.json with each key: every check, valid and invalid
# requests, and the stateful phase. Exits non-zero on any failure (or when the service does
# not start). SCHEMATHESIS_MAX_EXAMPLES (default 25) bounds the examples per operation; the two
# runs take about two minutes on two cores. schemathesis.toml (beside this folder) is its
# configuration.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
port="${SCHEMATHESIS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
smpp_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
examples="${SCHEMATHESIS_MAX_EXAMPLES:-25}"

export VAR_DIR="$work/var" PORT="$port" SMPP_PORT="$smpp_port" PUBLIC_BASE_URL="$base"
export SECRET_KEY="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# The fuzzer orders again and again from the same phones and TVs: no rate limits.
export LIMIT_PHONE_INTERVAL_SECONDS=0 LIMIT_PHONE_CODES_PER_DAY=0 LIMIT_DEVICE_ORDERS_PER_HOUR=0
export SMS_BUDGET_APP_HOUR=0 SMS_BUDGET_APP_DAY=0 SMS_GUARD_MIN_SENT=0
export SSE_MAX_SECONDS=1
cd "$work"

service=""
stop() {
  if [ -n "$service" ] && kill -0 "$service" 2>/dev/null; then
    kill -TERM "$service"
    wait "$service" || true
  fi
  rm -rf "$work"
}
trap stop EXIT

python "$root/app.py" >"$work/service.log" 2>&1 &
service=$!
up() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$base/healthz" >/dev/null 2>&1
}
for _ in $(seq 300); do
  up && break
  kill -0 "$service" 2>/dev/null || { echo "the service exited"; cat "$work/service.log"; exit 1; }
  sleep 0.2
done
up || { echo "the service did not start"; tail -n 50 "$work/service.log"; exit 1; }

tv_key="$(flask --app "$root/app" apps create schemathesis-tv 2>/dev/null | tail -n1)"
admin_key="$(flask --app "$root/app" apps create schemathesis-admin --admin 2>/dev/null | tail -n1)"

status=0
for key in "$tv_key" "$admin_key"; do
  schemathesis --config-file "$root/schemathesis.toml" run "$base/openapi.json" \
    -H "Authorization: Bearer $key" \
    --checks all --mode all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" --seed 1 --no-color \
    --request-timeout 10 || status=1
done
if [ "$status" -ne 0 ]; then
  echo "== the service's log"
  tail -n 50 "$work/service.log"
fi
exit "$status"
