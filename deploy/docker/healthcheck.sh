#!/bin/sh
# Docker HEALTHCHECK: GET /healthz on the port of the service this container runs.
# /healthz stays on the service's own port when OPERATIONS_LISTEN is set.
set -eu
services='waiting-room|activator|reservation'
# The service is PID 1 (docker-entrypoint execs it), or a child of an init (--init).
service=$(grep -x -E "$services" /proc/1/comm || cat /proc/[0-9]*/comm 2>/dev/null | grep -m 1 -x -E "$services") ||
  { echo "no service runs in this container" >&2; exit 1; }
case "$service" in
  waiting-room) listen=${WAITING_ROOM_LISTEN:-0.0.0.0:8080} ;;
  reservation) listen=${RESERVATION_LISTEN:-0.0.0.0:8081} ;;
  activator) listen=${ACTIVATOR_LISTEN:-0.0.0.0:8082} ;;
esac
exec curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:${listen##*:}/healthz"
