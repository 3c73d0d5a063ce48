#!/usr/bin/env bash
# Checks the running services against their OpenAPI documents with schemathesis (PyPI):
# a waiting-room, an activator and a reservation on free ports, against the local
# dependencies (deploy/local.sh up or test starts them) with a database, Redis key
# prefix, topics and consumer group of their own; one event made with an admin call; then
# `schemathesis run` on docs/openapi/waiting-room.json and reservation.json with the
# admin token: no 5xx, responses match their schemas and statuses are documented.
#
#   deploy/api-fuzz.sh            (deploy/local.sh test runs it)
#   FUZZ_EXAMPLES=15              examples per operation
#   FUZZ_SECONDS=45               time budget of each service's run
#
# Not checked: the SSE streams (schemathesis reads a whole response, a stream never
# ends) and PUT /admin/partitions (it raises the broker's partition count for good).
# schemathesis is installed once, pinned, into a venv under the tools cache.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SCHEMATHESIS=schemathesis==4.32.5
EXAMPLES=${FUZZ_EXAMPLES:-15}
SECONDS_PER_SERVICE=${FUZZ_SECONDS:-45}
TOOLS=${API_FUZZ_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/waiting-room/api-fuzz}
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# The same configuration as the local stack (deploy/local.env; the environment wins).
eval "$(deploy/local.sh env)"

schemathesis_env() {
  local venv="$TOOLS/venv"
  if [ -x "$venv/bin/schemathesis" ] && [ "$(cat "$venv/requirements.txt" 2>/dev/null)" = "$SCHEMATHESIS" ]; then
    return
  fi
  say "installing $SCHEMATHESIS (PyPI) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$SCHEMATHESIS"
  echo "$SCHEMATHESIS" >"$venv/requirements.txt"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

RUN=apifuzz$(date +%s)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "$RUN*" 2>/dev/null |
    xargs -r -d '\n' redis-cli -h 127.0.0.1 -p "$REDIS_PORT" unlink >/dev/null 2>&1 || true
  psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS $RUN WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Everything of this run apart from the local stack's own.
export DATABASE_URL="${DATABASE_URL%/*}/$RUN" REDIS_KEY_PREFIX="$RUN"
export TICKETS_TOPIC="$RUN.tickets" TICKETS_DLQ_TOPIC="$RUN.tickets.dlq" TICKETS_PARTITIONS=2
export DECISIONS_TOPIC="$RUN.decisions" RESERVATIONS_TOPIC="$RUN.reservations"
export ACTIVATOR_GROUP_ID="$RUN" ADMIN_TOKEN=${ADMIN_TOKEN:-$(cat "$ADMIN_TOKEN_FILE")}
WAITING_ROOM_LISTEN="127.0.0.1:$(free_port)"
RESERVATION_LISTEN="127.0.0.1:$(free_port)"
ACTIVATOR_LISTEN="127.0.0.1:$(free_port)"
export WAITING_ROOM_LISTEN RESERVATION_LISTEN ACTIVATOR_LISTEN RUST_LOG=warn
export TICKET_JWKS_URL="http://$WAITING_ROOM_LISTEN/.well-known/jwks.json"
export WAITING_ROOM_BASE_URL="http://$WAITING_ROOM_LISTEN" RESERVATION_BASE_URL="http://$RESERVATION_LISTEN"

schemathesis_env
say "building the services (debug)"
cargo build -q -p waiting-room -p activator -p reservation
"$BIN_DIR/waiting-room" migrate >"$WORK/setup.log" 2>&1 || die "migrate failed: $(cat "$WORK/setup.log")"
"$BIN_DIR/waiting-room" create-topics >>"$WORK/setup.log" 2>&1 || die "create-topics failed: $(cat "$WORK/setup.log")"
start() { # service address
  "$BIN_DIR/$1" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  local deadline=$((SECONDS + 90))
  until curl -fsS -o /dev/null "http://$2/readyz" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] ||
      die "$1 is not ready: $(curl -sS "http://$2/readyz" 2>&1; tail -n 20 "$WORK/$1.log")"
    sleep 0.3
  done
}
# The waiting-room first: the reservation service reads the ticket keys from it.
start waiting-room "$WAITING_ROOM_LISTEN"
start activator "$ACTIVATOR_LISTEN"
start reservation "$RESERVATION_LISTEN"
curl -fsS -o /dev/null -X PUT "http://$WAITING_ROOM_LISTEN/admin/events/fuzz" \
  -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name": "API fuzz", "state": "open", "seats": {"rows": 2, "seats_per_row": 5}}'

fuzz() { # service address [schemathesis options...]
  local service=$1 address=$2 started=$SECONDS
  shift 2
  say "schemathesis: $service against docs/openapi/$service.json"
  "$TOOLS/venv/bin/schemathesis" run "docs/openapi/$service.json" --url "http://$address" \
    -H "Authorization: Bearer $ADMIN_TOKEN" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --phases examples,coverage,fuzzing --max-examples "$EXAMPLES" --max-time "$SECONDS_PER_SERVICE" \
    --workers 2 --seed 1 --no-color --suppress-health-check all \
    --exclude-path-regex '(\}|/me|/stats|/seats)/events$' "$@" ||
    { tail -n 40 "$WORK/$service.log" >&2; die "schemathesis found problems in $service"; }
  say "schemathesis: $service in $((SECONDS - started)) s"
}
fuzz waiting-room "$WAITING_ROOM_LISTEN" --exclude-operation-id raise_partitions
fuzz reservation "$RESERVATION_LISTEN"
