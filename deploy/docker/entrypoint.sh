#!/bin/sh
# The image's entry point: runs one of the three services (waiting-room, activator,
# reservation), `init` (the one-shot set-up every deployment runs before the services:
# migrations, then topics), or any other command as given. `exec` leaves the service as
# PID 1, so SIGTERM reaches it directly and the health check finds it. (The services
# raise their own open-file soft limit to the hard one at start.)
set -eu

[ $# -gt 0 ] || set -- waiting-room
if [ "$1" = init ]; then
  waiting-room migrate
  exec waiting-room create-topics
fi
exec "$@"
