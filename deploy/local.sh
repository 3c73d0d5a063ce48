#!/usr/bin/env bash
# The local stack: PostgreSQL, Redis, Tansu (Kafka API) and the three services on
# loopback, without Docker.
#
#   deploy/local.sh up           install what is missing, start what is not running
#   deploy/local.sh down         stop what `up` started (by pid file)
#   deploy/local.sh status       show what runs
#   deploy/local.sh logs [name]  tail logs (waiting-room, activator, reservation, tansu, ...)
#   deploy/local.sh restart [service ...]  rebuild and restart services (default: all three)
#   deploy/local.sh env          print the resolved configuration as export lines
#   deploy/local.sh test         bring dependencies up, run every test suite
#   deploy/local.sh forget-keys PATTERN  delete the local Redis's keys matching PATTERN
#
# INSTANCES=N deploy/local.sh up  runs N instances of each service (default 1): instance
# i > 1 listens on the service's port + 100 * (i - 1) (waiting-room 8180, reservation
# 8181, activator 8182 for the second) with its own pid and log file (waiting-room-2),
# and HAProxy fronts the waiting-room and reservation instances on 8090 and 8091.
#
# Configuration: deploy/local.env (variables already in the environment win).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TANSU_VERSION=0.6.0
SERVICES=(waiting-room activator reservation)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

load_env() {
  local line key value
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    # The environment wins; ${OTHER} references expand against what is set so far.
    if [ -z "${!key+x}" ]; then
      eval "export $key=\"$value\""
    else
      export "${key?}"
    fi
  done <"$ROOT/deploy/local.env"
  case "$LOCAL_DIR" in /*) ;; *) LOCAL_DIR="$ROOT/$LOCAL_DIR" ;; esac
  export LOCAL_DIR
  RUN_DIR="$LOCAL_DIR/run"
  LOG_DIR="$LOCAL_DIR/logs"
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$LOCAL_DIR/secrets"
  if redis_cluster_on; then
    local port urls=()
    for port in $(redis_cluster_ports); do urls+=("redis://127.0.0.1:$port/"); done
    REDIS_URL=$(IFS=,; echo "${urls[*]}")
    export REDIS_URL
  fi
}

redis_cluster_on() { [ "${REDIS_CLUSTER:-0}" = 1 ]; }
redis_cluster_ports() { seq "$REDIS_CLUSTER_PORT" $((REDIS_CLUSTER_PORT + 5)); }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # port name seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    [ $SECONDS -lt $deadline ] || die "$2 did not start listening on 127.0.0.1:$1 (see $LOG_DIR)"
    sleep 0.2
  done
}

# Alive means running or sleeping: a killed child that nobody reaped yet is a zombie
# and still answers `kill -0`.
pid_alive() {
  local pid state
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* (no apt-get); install it and retry"
  say "installing $* from the OS packages"
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# --- PostgreSQL ---------------------------------------------------------------
postgres_up() {
  if port_open "$POSTGRES_PORT"; then
    say "postgresql: using the server on 127.0.0.1:$POSTGRES_PORT"
    return
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  local data="$LOCAL_DIR/postgres"
  if [ ! -f "$data/PG_VERSION" ]; then
    say "postgresql: initialising $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres: "$data"
    as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust >"$LOG_DIR/postgres-init.log"
  fi
  say "postgresql: starting on 127.0.0.1:$POSTGRES_PORT"
  touch "$LOG_DIR/postgres.log"
  [ "$(id -u)" = 0 ] && chown postgres: "$LOG_DIR/postgres.log"
  as_postgres "$bin/pg_ctl" -D "$data" -l "$LOG_DIR/postgres.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -k /tmp -c max_connections=300" >/dev/null
  echo "$bin" >"$RUN_DIR/postgres.bin"
}

postgres_down() {
  [ -f "$RUN_DIR/postgres.bin" ] || return 0
  say "postgresql: stopping"
  as_postgres "$(cat "$RUN_DIR/postgres.bin")/pg_ctl" -D "$LOCAL_DIR/postgres" -m fast -w stop >/dev/null || true
  rm -f "$RUN_DIR/postgres.bin"
}

# --- Redis ----------------------------------------------------------------------
redis_up() {
  if redis_cluster_on; then
    redis_cluster_up
    return
  fi
  if port_open "$REDIS_PORT"; then
    say "redis: using the server on 127.0.0.1:$REDIS_PORT"
    return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$LOCAL_DIR/redis"
  say "redis: starting on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$LOCAL_DIR/redis" --pidfile "$RUN_DIR/redis.pid" \
    --logfile "$LOG_DIR/redis.log" --save "" --appendonly no >/dev/null
  wait_for_port "$REDIS_PORT" redis 20
}

# Six cluster-mode servers (data in memory only, like the single one; membership in each
# node's nodes.conf), joined into three primaries with a replica each the first time.
redis_cluster_up() {
  command -v redis-server >/dev/null || apt_install redis-server
  local port nodes=()
  for port in $(redis_cluster_ports); do
    nodes+=("127.0.0.1:$port")
    port_open "$port" && continue
    mkdir -p "$LOCAL_DIR/redis-cluster/$port"
    say "redis: starting cluster node on 127.0.0.1:$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --dir "$LOCAL_DIR/redis-cluster/$port" --pidfile "$RUN_DIR/redis-$port.pid" \
      --logfile "$LOG_DIR/redis-$port.log" --save "" --appendonly no >/dev/null
    wait_for_port "$port" "redis $port" 20
  done
  if ! redis-cli -p "$REDIS_CLUSTER_PORT" cluster info | grep -q '^cluster_known_nodes:6'; then
    say "redis: joining the nodes into a cluster (3 primaries, 3 replicas)"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
      >"$LOG_DIR/redis-cluster-create.log" 2>&1 ||
      die "cannot create the Redis cluster (see $LOG_DIR/redis-cluster-create.log)"
  fi
  local deadline=$((SECONDS + 30))
  for port in $(redis_cluster_ports); do
    until redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok'; do
      [ $SECONDS -lt $deadline ] || die "the Redis cluster is not ok on port $port"
      sleep 0.2
    done
  done
  say "redis: cluster ok on 127.0.0.1:$REDIS_CLUSTER_PORT-$((REDIS_CLUSTER_PORT + 5))"
}

# --- Tansu (Kafka API) ----------------------------------------------------------
tansu_install() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return
  fi
  command -v cc >/dev/null || apt_install build-essential
  say "tansu: building $TANSU_VERSION with cargo install (about 10 minutes on 2 cores, once)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore
}

tansu_up() {
  if port_open "$KAFKA_PORT"; then
    say "tansu: a broker already listens on 127.0.0.1:$KAFKA_PORT"
    return
  fi
  tansu_install
  say "tansu: starting on 127.0.0.1:$KAFKA_PORT (memory storage)"
  # setsid: the broker outlives this script and is stopped by pid, never by name.
  # Tansu logs every request at info; warnings are what an operator needs.
  RUST_LOG=warn setsid tansu broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "memory://tansu/" \
    >>"$LOG_DIR/tansu.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/tansu.pid"
  wait_for_port "$KAFKA_PORT" tansu 30
  forget_queue_state
}

# A fresh memory-engine broker starts every queue at offset 0 again: the deployment's
# Redis state (serving counters, ticket states, user claims) describes tickets that no
# longer exist and would mark the new ones as long passed. Start it over too.
forget_queue_state() {
  say "redis: clearing $REDIS_KEY_PREFIX:* (the broker started empty)"
  forget_keys "$REDIS_KEY_PREFIX:*"
}

# Deletes the local Redis's keys matching a pattern, in steps (never KEYS: the instance
# may hold millions). A failure is reported, not fatal.
forget_keys() {
  command -v redis-cli >/dev/null || { say "redis-cli missing: clear $1 in Redis by hand"; return; }
  if ! redis_cluster_on; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "$1" |
      xargs -r -d '\n' -n 10000 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" unlink >/dev/null ||
      say "could not clear $1 in Redis; clear it by hand"
    return
  fi
  # Each primary holds its own slots' keys; one key per UNLINK (keys of several slots
  # may not share a command).
  local port
  for port in $(redis_cluster_ports); do
    redis-cli -p "$port" role 2>/dev/null | head -n 1 | grep -q master || continue
    redis-cli -p "$port" --scan --pattern "$1" |
      xargs -r -d '\n' -n 1 redis-cli -p "$port" unlink >/dev/null ||
      say "could not clear $1 on Redis node $port; clear it by hand"
  done
}

# --- Secrets ----------------------------------------------------------------------
secrets_up() {
  if [ -z "${ADMIN_TOKEN:-}" ]; then
    if [ ! -s "$ADMIN_TOKEN_FILE" ]; then
      (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$ADMIN_TOKEN_FILE")
      say "generated a local admin token in $ADMIN_TOKEN_FILE"
    fi
    ADMIN_TOKEN=$(cat "$ADMIN_TOKEN_FILE")
    export ADMIN_TOKEN
  fi
  if [ ! -s "$SIGNING_KEY_FILE" ]; then
    command -v openssl >/dev/null || apt_install openssl
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$SIGNING_KEY_FILE")
    say "generated a local ticket signing key in $SIGNING_KEY_FILE"
  fi
  if [ ! -s "$TICKET_PUBLIC_KEY_FILE" ] || [ "$SIGNING_KEY_FILE" -nt "$TICKET_PUBLIC_KEY_FILE" ]; then
    openssl pkey -in "$SIGNING_KEY_FILE" -pubout -out "$TICKET_PUBLIC_KEY_FILE"
  fi
}

deps_up() {
  command -v curl >/dev/null || apt_install curl
  postgres_up
  redis_up
  tansu_up
  secrets_up
}

# --- Services ---------------------------------------------------------------------
# Where cargo puts the release binaries (a shared CARGO_TARGET_DIR too).
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

build_services() {
  say "building the services (release)"
  cargo build --release -p waiting-room -p activator -p reservation
}

# Instance 1 of a service is plain `waiting-room` on the configured port; instance i > 1
# is `waiting-room-i` (its pid file, log file and proxy server name) on that port plus
# 100 * (i - 1), so the hundreds say which instance a port belongs to.
instance_name() { # service instance
  if [ "$2" -eq 1 ]; then echo "$1"; else echo "$1-$2"; fi
}

listen_variable() {
  case "$1" in
    waiting-room) echo WAITING_ROOM_LISTEN ;;
    reservation) echo RESERVATION_LISTEN ;;
    activator) echo ACTIVATOR_LISTEN ;;
  esac
}

service_address() { # service [instance]
  local variable base
  variable=$(listen_variable "$1")
  base=${!variable}
  echo "${base%:*}:$((${base##*:} + 100 * (${2:-1} - 1)))"
}

service_port() { # service [instance]
  local address
  address=$(service_address "$@")
  echo "${address##*:}"
}

# The pid files of every instance `up` started, whatever INSTANCES says now.
instance_pidfiles() { # service
  local pidfile
  for pidfile in "$RUN_DIR/$1.pid" "$RUN_DIR/$1"-[0-9]*.pid; do
    [ ! -e "$pidfile" ] || echo "$pidfile"
  done
}

service_up() { # service instance
  local service=$1 name address pidfile
  name=$(instance_name "$1" "$2")
  address=$(service_address "$1" "$2")
  pidfile="$RUN_DIR/$name.pid"
  if pid_alive "$pidfile"; then
    say "$name: already running (pid $(cat "$pidfile"))"
    return
  fi
  port_open "${address##*:}" && die "$name: port ${address##*:} is taken by another process"
  say "$name: starting on $address"
  # Thousands of SSE streams need file descriptors.
  # Each live ticket stream holds a socket: 20,000 streams need more than the usual
  # 1,024 descriptors. Raising the hard limit needs root; otherwise take what is allowed.
  ulimit -n "${SERVICE_NOFILE:-65536}" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  env "$(listen_variable "$service")=$address" \
    setsid "$BIN_DIR/$service" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

wait_ready() { # name url pidfile
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$2" 2>/dev/null; do
    pid_alive "$3" || die "$1 exited; see $LOG_DIR/$1.log"
    [ $SECONDS -lt $deadline ] || die "$1 is not ready: $(curl -sS "$2" 2>&1 || true)"
    sleep 0.3
  done
  say "$1: ready"
}

wait_service_ready() { # service instance
  local name
  name=$(instance_name "$1" "$2")
  wait_ready "$name" "http://$(service_address "$1" "$2")/readyz" "$RUN_DIR/$name.pid"
}

stop_pidfile() { # name pidfile
  local pidfile=$2 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  say "$1: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    pid_alive "$pidfile" || break
    sleep 0.1
  done
  pid_alive "$pidfile" && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop_service() { # service: every instance
  local pidfile
  while IFS= read -r pidfile; do
    stop_pidfile "$(basename "$pidfile" .pid)" "$pidfile"
  done < <(instance_pidfiles "$1")
}

# Instances beyond INSTANCES (a previous `up` ran more), and at 1 the proxy with the
# instances that reach each other through it (they start again with direct URLs).
stop_surplus() {
  local service pidfile number
  for service in "${SERVICES[@]}"; do
    while IFS= read -r pidfile; do
      number=$(basename "$pidfile" .pid)
      number=${number##*-}
      case "$number" in *[!0-9]*) continue ;; esac
      [ "$number" -le "$INSTANCES" ] || stop_pidfile "$(basename "$pidfile" .pid)" "$pidfile"
    done < <(instance_pidfiles "$service")
  done
  if [ "$INSTANCES" -eq 1 ] && pid_alive "$RUN_DIR/haproxy.pid"; then
    stop_pidfile haproxy "$RUN_DIR/haproxy.pid"
    for service in "${SERVICES[@]}"; do stop_service "$service"; done
  fi
  return 0
}

# --- Proxy (INSTANCES > 1) ----------------------------------------------------------
# HAProxy from the OS packages in front of the waiting-room and reservation instances.
# Its settings (timeouts that suit SSE, health checks, X-Forwarded-For) are
# deploy/proxy/haproxy.cfg, shared with the Compose stack and the e2e suite; the
# backends (with their servers, taking the shared `proxy` defaults) and the admin
# socket (for k6/run.sh instances) are generated into $LOCAL_DIR/haproxy-servers.cfg.
proxy_servers_config() {
  local service instance
  printf 'global\n    stats socket "%s" mode 600 level admin\n' "$RUN_DIR/haproxy.sock"
  for service in waiting-room reservation; do
    printf '\nbackend %s from proxy\n' "${service//-/_}"
    for instance in $(seq 1 "$INSTANCES"); do
      printf '    server %s %s\n' "$(instance_name "$service" "$instance")" \
        "$(service_address "$service" "$instance")"
    done
  done
}

proxy_up() {
  command -v haproxy >/dev/null || apt_install haproxy
  local servers="$LOCAL_DIR/haproxy-servers.cfg" wanted
  wanted=$(proxy_servers_config)
  if pid_alive "$RUN_DIR/haproxy.pid" && [ "$wanted" = "$(cat "$servers" 2>/dev/null)" ]; then
    say "haproxy: already running (pid $(cat "$RUN_DIR/haproxy.pid"))"
    return
  fi
  # Another set of instances: the proxy starts over with the new servers.
  stop_pidfile haproxy "$RUN_DIR/haproxy.pid"
  printf '%s\n' "$wanted" >"$servers"
  haproxy -c -q -f "$ROOT/deploy/proxy/haproxy.cfg" -f "$servers" ||
    die "haproxy: deploy/proxy/haproxy.cfg with $servers is not a valid configuration"
  local address
  for address in "$WAITING_ROOM_PROXY_LISTEN" "$RESERVATION_PROXY_LISTEN"; do
    port_open "${address##*:}" && die "haproxy: port ${address##*:} is taken by another process"
  done
  say "haproxy: starting on $WAITING_ROOM_PROXY_LISTEN (waiting-room) and $RESERVATION_PROXY_LISTEN (reservation)"
  # -db: in the foreground, so its pid is the one to stop; setsid as for the services.
  setsid haproxy -db -f "$ROOT/deploy/proxy/haproxy.cfg" -f "$servers" \
    >>"$LOG_DIR/haproxy.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/haproxy.pid"
  wait_for_port "${WAITING_ROOM_PROXY_LISTEN##*:}" haproxy 20
}

# Where fans and services find each other: the configured ports (not the binaries'
# defaults, which a stack on other ports does not use), or with several instances the
# proxy, so any instance may serve them. Settings already in the environment win.
service_urls() {
  local waiting_room="http://$WAITING_ROOM_LISTEN" reservation="http://$RESERVATION_LISTEN"
  if [ "$INSTANCES" -gt 1 ]; then
    waiting_room="http://$WAITING_ROOM_PROXY_LISTEN"
    reservation="http://$RESERVATION_PROXY_LISTEN"
  fi
  export RESERVATION_BASE_URL=${RESERVATION_BASE_URL:-$reservation}
  export WAITING_ROOM_BASE_URL=${WAITING_ROOM_BASE_URL:-$waiting_room}
  export TICKET_JWKS_URL=${TICKET_JWKS_URL:-$waiting_room/.well-known/jwks.json}
}

start_services() {
  local service instance
  service_urls
  for service in "${SERVICES[@]}"; do
    for instance in $(seq 1 "$INSTANCES"); do service_up "$service" "$instance"; done
  done
  for instance in $(seq 1 "$INSTANCES"); do wait_service_ready waiting-room "$instance"; done
  # The reservation instances fetch the ticket keys through the proxy: it starts once
  # the waiting-rooms can answer.
  [ "$INSTANCES" -eq 1 ] || proxy_up
  for service in activator reservation; do
    for instance in $(seq 1 "$INSTANCES"); do wait_service_ready "$service" "$instance"; done
  done
  if [ "$INSTANCES" -gt 1 ]; then
    wait_ready "haproxy (waiting-room)" "http://$WAITING_ROOM_PROXY_LISTEN/readyz" "$RUN_DIR/haproxy.pid"
    wait_ready "haproxy (reservation)" "http://$RESERVATION_PROXY_LISTEN/readyz" "$RUN_DIR/haproxy.pid"
  fi
}

cmd_up() {
  deps_up
  build_services
  say "applying database migrations"
  "$BIN_DIR/waiting-room" migrate
  say "creating Kafka topics"
  "$BIN_DIR/waiting-room" create-topics
  stop_surplus
  start_services
  cat <<EOF

The waiting room is up.
  waiting-room  http://$WAITING_ROOM_LISTEN    (fans, admin API; console at /admin)
  reservation   http://$RESERVATION_LISTEN    (seats, reservations)
  activator     http://$ACTIVATOR_LISTEN    (health and metrics)
EOF
  if [ "$INSTANCES" -gt 1 ]; then
    cat <<EOF
  instances     $INSTANCES of each, instance i on the port above + 100 * (i - 1)
  haproxy       http://$WAITING_ROOM_PROXY_LISTEN (waiting-room), http://$RESERVATION_PROXY_LISTEN (reservation)
EOF
  fi
  cat <<EOF
  postgresql    $DATABASE_URL
  redis         $REDIS_URL
  kafka         $KAFKA_BROKERS (tansu; topic $TICKETS_TOPIC, $TICKETS_PARTITIONS partitions)
  admin token   ${ADMIN_TOKEN_FILE}  (curl -H "Authorization: Bearer \$(cat $ADMIN_TOKEN_FILE)" ...)
  signing key   $SIGNING_KEY_FILE
  logs          $LOG_DIR/  (deploy/local.sh logs [service])
EOF
}

cmd_down() {
  local service
  # The proxy first: no request goes to an instance on its way out.
  stop_pidfile haproxy "$RUN_DIR/haproxy.pid"
  for service in "${SERVICES[@]}"; do stop_service "$service"; done
  stop_pidfile tansu "$RUN_DIR/tansu.pid"
  if pid_alive "$RUN_DIR/redis.pid"; then stop_pidfile redis "$RUN_DIR/redis.pid"; fi
  local pidfile
  for pidfile in "$RUN_DIR"/redis-*.pid; do
    if pid_alive "$pidfile"; then stop_pidfile "$(basename "$pidfile" .pid)" "$pidfile"; fi
  done
  postgres_down
}

cmd_restart() {
  local service names=("$@")
  [ ${#names[@]} -gt 0 ] || names=("${SERVICES[@]}")
  for service in "${names[@]}"; do stop_service "$service"; done
  cmd_up
}

cmd_env() {
  secrets_up >/dev/null
  local key
  for key in $(sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' "$ROOT/deploy/local.env") ADMIN_TOKEN; do
    printf 'export %s=%q\n' "$key" "${!key}"
  done
}

cmd_status() {
  local name state service instance entry names=() ports=()
  for service in "${SERVICES[@]}"; do
    for instance in $(seq 1 "$INSTANCES"); do
      names+=("$(instance_name "$service" "$instance")")
      ports+=("$(instance_name "$service" "$instance"):$(service_port "$service" "$instance")")
    done
  done
  if [ "$INSTANCES" -gt 1 ] || [ -f "$RUN_DIR/haproxy.pid" ]; then
    names+=(haproxy)
    ports+=("haproxy:${WAITING_ROOM_PROXY_LISTEN##*:}" "haproxy:${RESERVATION_PROXY_LISTEN##*:}")
  fi
  for name in "${names[@]}" tansu redis; do
    if pid_alive "$RUN_DIR/$name.pid"; then state="running (pid $(cat "$RUN_DIR/$name.pid"), started here)"
    else state="not started here"; fi
    printf '%-15s %s\n' "$name" "$state"
  done
  [ -f "$RUN_DIR/postgres.bin" ] && printf '%-15s %s\n' postgres "started here, data $LOCAL_DIR/postgres"
  for entry in "postgres:$POSTGRES_PORT" "redis:$REDIS_PORT" "kafka:$KAFKA_PORT" "${ports[@]}"; do
    if port_open "${entry##*:}"; then state=listening; else state=closed; fi
    printf '%-15s 127.0.0.1:%s %s\n' "${entry%:*}" "${entry##*:}" "$state"
  done
}

cmd_logs() {
  if [ $# -gt 0 ]; then tail -n 100 -F "$LOG_DIR/$1.log"; else tail -n 20 -F "$LOG_DIR"/*.log; fi
}

# Headless Chromium and its WebDriver for the browser tests (Debian packages).
ensure_browser() {
  # Korean pages need CJK glyphs in the screenshots.
  [ "$(fc-list 2>/dev/null | grep -ci 'Noto Sans CJK')" -gt 0 ] ||
    apt_install fonts-noto-cjk fontconfig
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
  say "installing chromium and chromium-driver (browser tests)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=$(command -v sudo) || die "chromium and chromedriver are missing; install Debian's chromium and chromium-driver"
  $sudo apt-get install -y -q chromium chromium-driver >/dev/null ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null; } ||
    die "cannot install chromium and chromium-driver"
}

# A cargo subcommand from crates.io, built once and then reused.
ensure_cargo_tool() { # binary crate version
  command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -q "$3" && return 0
  say "installing $2 $3 with cargo install (once)"
  cargo install "$2" --locked --version "$3"
}

# The services' normal builds never compile the test kit (a dev-dependency only).
check_no_test_code_in_services() {
  local tree
  tree=$(cargo tree -e normal,build,features --prefix none \
    -p waiting-room -p activator -p reservation) || die "cargo tree failed"
  if grep -q '^testkit ' <<<"$tree"; then
    die "a service's normal build depends on the test kit: cargo tree -e normal -i testkit"
  fi
}

# The fans' and operators' flows end to end, the join and status paths and the activator
# again with every service in cluster mode, on six local cluster nodes (the whole suite
# passes there too: `REDIS_CLUSTER=1 deploy/local.sh test`; CI runs this share of it).
test_on_redis_cluster() {
  (
    export REDIS_CLUSTER=1
    load_env
    redis_up
    cargo test -p e2e --test activation --test reservations --test live_position \
      --test post_sale_report --test event_lifecycle
    cargo test -p waiting-room --test join --test admin
    cargo test -p activator --test activation --test received
  )
}

cmd_test() {
  local started=$SECONDS
  deps_up
  ensure_browser
  # The vanished-client test loses packets on loopback with an nftables rule.
  command -v nft >/dev/null || apt_install nftables
  # The TLS test starts a PostgreSQL server of its own, whatever serves POSTGRES_PORT.
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  # The many-instances suite puts HAProxy in front of its instances.
  command -v haproxy >/dev/null || apt_install haproxy
  # The integration guide's examples run in the e2e suite: nginx, Java, Node (jose).
  command -v nginx >/dev/null || apt_install nginx-light
  command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
  command -v npm >/dev/null || apt_install nodejs npm
  (cd docs/integration/node && npm ci --no-audit --no-fund --loglevel=error)
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
  say "cargo machete (every dependency is used)"
  ensure_cargo_tool cargo-machete cargo-machete 0.9.2
  cargo machete
  say "Prometheus configuration and alert rules (promtool check, promtool test rules)"
  command -v promtool >/dev/null || apt_install prometheus
  promtool check config deploy/prometheus/prometheus.yml
  promtool test rules deploy/prometheus/alerts_test.yml
  say "deployment files: compose, Helm chart, Dockerfile, proxy (deploy/validate.sh)"
  if [ "$(uname -sm)" = "Linux x86_64" ]; then
    deploy/validate.sh
  else
    # Its pinned validators (compose, helm, hadolint) are linux-amd64 binaries.
    warn "deploy/validate.sh skipped: it runs on Linux x86-64 only (this is $(uname -sm))"
  fi
  say "the services' builds contain no test code"
  check_no_test_code_in_services
  say "cargo test (unit and integration, against the real services)"
  cargo test --workspace
  say "the acceptance flows again, against a local Redis Cluster (REDIS_CLUSTER=1)"
  test_on_redis_cluster
  say "the services against their OpenAPI documents (deploy/api-fuzz.sh, schemathesis)"
  deploy/api-fuzz.sh
  say "all test suites passed in $((SECONDS - started)) s"
}

load_env
case "$INSTANCES" in '' | *[!0-9]* | 0*) die "INSTANCES must be a whole number from 1, not '$INSTANCES'" ;; esac
# Sourced (k6/run.sh chaos stops and starts its stack's parts with these functions):
# the configuration and the functions, no command.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  env) cmd_env ;;
  test) cmd_test ;;
  forget-keys) [ $# -eq 2 ] || die "usage: deploy/local.sh forget-keys PATTERN"; forget_keys "$2" ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
