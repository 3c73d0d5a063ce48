#!/bin/sh
# The image's entry point: runs one of the three services (waiting-room, activator,
# reservation), `init` (the one-shot set-up every deployment runs before the services:
# migrations, then topics), or any other command as given. `exec` leaves the service as
# PID 1, so SIGTERM reaches it directly and the health check finds it.
set -eu

# Every client connection (each SSE stream) holds a descriptor, and the services size
# their connection cap from the soft limit; runtimes often start containers at 1024.
# shellcheck disable=SC3045 # dash, the image's /bin/sh, has ulimit -H and -n
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ $# -gt 0 ] || set -- waiting-room
if [ "$1" = init ]; then
  waiting-room migrate
  exec waiting-room create-topics
fi
exec "$@"
