//! Many-queues benchmark: one activator process owning `MANY_QUEUES` live queues
//! (partitions), every queue ticking on its own schedule while tickets trickle into all
//! of them. Run through `k6/run.sh many-queues`, which records the result.
//!
//! The stack is private so that its figures are the activator's alone: a Tansu broker
//! and a Redis server of the tool's own (the shared ones serve other work), PostgreSQL
//! through a fresh test database. Every partition has an event of its own; every fourth
//! one is shared by a second event. The activator runs as its own process (the release
//! binary, `ACTIVATOR_BIN`), so its CPU is measured apart from this tool's.
//!
//! Once every queue has its serving counter, tickets are appended at
//! `MANY_QUEUES_JOIN_RATE` per second in total, round robin over the partitions, each
//! marked as read by its holder first (unread tickets would be deferred, not activated).
//! After `MANY_QUEUES_WARMUP` seconds the measurement window of `MANY_QUEUES_SECONDS`
//! starts: tick lateness and duration from the activator's Prometheus histograms (summed
//! over the queues, quantiles interpolated within buckets), Redis commands per second
//! from `INFO` (`total_commands_processed`, less this tool's own: it counts the commands
//! scripts run too) and the activator's requests (round trips) from `INFO commandstats`,
//! Redis's and the activator's CPU. Then the tickets
//! stop and the tool waits until every queue has activated all of its tickets.
//!
//! Prints one machine-readable line last.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use contract::kafka::{self, DurableProducer};
use contract::redis_schema::{QueueStats, TicketHash};
use contract::ticket_record::TicketRecord;
use testkit::broker::PrivateBroker;
use testkit::redis_server::PrivateRedis;
use testkit::service::free_port;
use testkit::TestEnv;
use uuid::Uuid;

/// The unit of `/proc/<pid>/stat`'s CPU times (USER_HZ: 100 on every Linux this runs on).
const USER_HZ: f64 = 100.0;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The event a ticket for `partition` belongs to: every fourth partition is shared by
/// two events, whose tickets alternate.
fn event_of(partition: i32, sequence: u64) -> String {
    if partition % 4 == 0 && sequence % 2 == 1 {
        format!("mq-{partition}-b")
    } else {
        format!("mq-{partition}")
    }
}

#[tokio::main]
async fn main() {
    let queues = i32::try_from(setting("MANY_QUEUES", 100)).expect("MANY_QUEUES fits an i32");
    let window = Duration::from_secs(setting("MANY_QUEUES_SECONDS", 30));
    let warmup = Duration::from_secs(setting("MANY_QUEUES_WARMUP", 10));
    let interval_ms = setting("MANY_QUEUES_INTERVAL_MS", 1000);
    let join_rate = setting("MANY_QUEUES_JOIN_RATE", 1000);
    let binary = std::env::var("ACTIVATOR_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/release/activator")
    });

    let broker = PrivateBroker::start().await;
    let private_redis = PrivateRedis::start().await;
    let mut common = TestEnv::environment();
    common.kafka = broker.connection();
    common.redis_url = private_redis.url();
    let env = TestEnv::on(common, queues).await;
    configure(&env, queues, interval_ms).await;

    let listen = format!("127.0.0.1:{}", free_port());
    let mut activator = env
        .service_command(&binary)
        .env("ACTIVATOR_LISTEN", &listen)
        .env(
            "ACTIVATOR_GROUP_ID",
            format!("{}.activators", env.common.redis_key_prefix),
        )
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {binary} ({error})"));
    let started = Instant::now();
    wait_for_counters(&env, queues).await;
    eprintln!(
        "{queues} queues owned and counted after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let marked = Arc::new(AtomicU64::new(0));
    let produced = Arc::new(Vec::from_iter((0..queues).map(|_| AtomicU64::new(0))));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(produce(
        env.common.clone(),
        env.redis.clone(),
        env.redis_keys(),
        join_rate,
        marked.clone(),
        produced.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(warmup).await;

    let metrics_url = format!("http://{listen}/metrics");
    let before = Snapshot::take(&env, &metrics_url, activator.id(), &marked).await;
    tokio::time::sleep(window).await;
    let after = Snapshot::take(&env, &metrics_url, activator.id(), &marked).await;
    stop.cancel();
    load.await.expect("load task");

    let total: u64 = produced
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .sum();
    let drained = wait_for_drain(&env, queues, &produced).await;
    let _ = activator.kill();
    let _ = activator.wait();

    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let lateness = after.histogram("activator_tick_lateness_seconds", &before);
    let duration = after.histogram("activator_tick_duration_seconds", &before);
    let ticks = lateness.last().map_or(0.0, |(_, count)| *count);
    let commands =
        after.redis("total_commands_processed") - before.redis("total_commands_processed");
    let own = (after.own_commands - before.own_commands) as f64;
    let redis_cpu = (after.redis("used_cpu_user") + after.redis("used_cpu_sys")
        - before.redis("used_cpu_user")
        - before.redis("used_cpu_sys"))
        / seconds;
    let activator_cpu = (after.activator_ticks - before.activator_ticks) as f64 / USER_HZ / seconds;
    let busiest = after.busiest_commands(&before, seconds);
    eprintln!("busiest Redis commands in the window (calls/s, this tool's HSETs included):");
    for (command, calls) in busiest.iter().take(8) {
        eprintln!("  {command}: {calls:.0}");
    }
    // The activator's requests (each one round trip, or one pipeline): its scripts, its
    // announcements (HSET and PUBLISH together) and its journal reads; the rest of the
    // commands run inside the scripts.
    let round_trips: f64 = busiest
        .iter()
        .filter(|(command, _)| ["evalsha", "eval", "publish", "lrange"].contains(&command.as_str()))
        .map(|(_, calls)| calls)
        .sum();
    println!(
        "queues={queues} interval_ms={interval_ms} joins_per_s={join_rate} ticks_per_s={:.0} \
         lateness_p50_ms={:.2} lateness_p99_ms={:.2} duration_p50_ms={:.2} duration_p99_ms={:.2} \
         redis_ops_per_s={:.0} redis_round_trips_per_s={round_trips:.0} redis_cpu={:.0}% activator_cpu={:.0}% tickets={total} drained={drained}",
        ticks / seconds,
        quantile(&lateness, 0.5) * 1000.0,
        quantile(&lateness, 0.99) * 1000.0,
        quantile(&duration, 0.5) * 1000.0,
        quantile(&duration, 0.99) * 1000.0,
        (commands - own) / seconds,
        redis_cpu * 100.0,
        activator_cpu * 100.0,
    );
    drop(env);
    drop(private_redis);
    drop(broker);
}

/// One queue per partition, ticking every `interval_ms` (batch 100, long sessions so
/// capacity never runs out), and the events on them.
async fn configure(env: &TestEnv, queues: i32, interval_ms: u64) {
    let interval = i32::try_from(interval_ms).expect("interval fits an i32");
    sqlx::query(
        "INSERT INTO queues (partition, mode, batch_size, interval_ms, active_ttl_seconds, grace_seconds)
         SELECT p, 'open', 100, $2, 3600, 3600 FROM generate_series(0, $1 - 1) AS p",
    )
    .bind(queues)
    .bind(interval)
    .execute(&env.postgres)
    .await
    .expect("queues");
    sqlx::query(
        "INSERT INTO events (event_id, name, state, partition)
         SELECT 'mq-' || p, 'many queues', 'open', p FROM generate_series(0, $1 - 1) AS p
         UNION ALL
         SELECT 'mq-' || p || '-b', 'many queues, shared', 'open', p
           FROM generate_series(0, $1 - 1, 4) AS p",
    )
    .bind(queues)
    .execute(&env.postgres)
    .await
    .expect("events");
}

/// Every queue's serving counter, in one round trip (`None`: not created yet).
async fn counters(env: &TestEnv, queues: i32) -> Vec<Option<i64>> {
    let keys = env.redis_keys();
    let mut pipe = redis::pipe();
    for partition in 0..queues {
        pipe.get(keys.serving(partition));
    }
    pipe.query_async(&mut env.redis.clone())
        .await
        .expect("GET serving counters")
}

/// Until the group assigned every partition and each worker created its counter.
async fn wait_for_counters(env: &TestEnv, queues: i32) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let created = counters(env, queues).await.iter().flatten().count();
        if created == usize::try_from(queues).unwrap_or(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {created} of {queues} queues started in 10 minutes"
        );
        eprintln!("{created} of {queues} queues started");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Appends `rate` tickets a second, round robin over the partitions, until `stop`.
async fn produce(
    common: contract::config::CommonConfig,
    mut redis: platform::redis_connection::RedisConnection,
    keys: contract::redis_schema::RedisKeys,
    rate: u64,
    marked: Arc<AtomicU64>,
    produced: Arc<Vec<AtomicU64>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let producer = DurableProducer::new(kafka::producer_config(
        &common.kafka,
        5,
        Duration::from_secs(30),
    ))
    .expect("producer");
    let partitions = produced.len() as u64;
    let per_round = (rate / 100).max(1);
    let mut rounds = tokio::time::interval(Duration::from_millis(10));
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence = 0_u64;
    while !stop.is_cancelled() {
        rounds.tick().await;
        let now_ms = Utc::now().timestamp_millis();
        let tickets: Vec<(i32, String, Uuid)> = (0..per_round)
            .map(|_| {
                sequence += 1;
                let partition = i32::try_from(sequence % partitions).unwrap_or(0);
                let event = event_of(partition, sequence / partitions);
                (partition, event, Uuid::now_v7())
            })
            .collect();
        let marks: Vec<redis::Cmd> = tickets
            .iter()
            .map(|(partition, _, ticket_id)| {
                redis::Cmd::hset(
                    keys.ticket(*partition, *ticket_id),
                    TicketHash::SEEN,
                    now_ms,
                )
            })
            .collect();
        redis
            .send_grouped(&marks)
            .await
            .and_then(platform::redis_connection::replies_or_refusal)
            .expect("mark tickets received");
        marked.fetch_add(tickets.len() as u64, Ordering::Relaxed);
        let sends = tickets.iter().map(|(partition, event, ticket_id)| {
            let record = TicketRecord::new(*ticket_id, event.clone(), None, Utc::now()).to_json();
            let (producer, topic) = (&producer, &common.tickets_topic);
            async move {
                producer
                    .send(
                        topic,
                        Some(*partition),
                        event,
                        &record,
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("produce");
            }
        });
        futures::future::join_all(sends).await;
        for (partition, _, _) in &tickets {
            produced[*partition as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Until every queue has activated each ticket appended to it; false after a minute.
async fn wait_for_drain(env: &TestEnv, queues: i32, produced: &[AtomicU64]) -> bool {
    let keys = env.redis_keys();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut pipe = redis::pipe();
        for partition in 0..queues {
            pipe.hget(keys.queue_stats(partition), QueueStats::ACTIVATED);
        }
        let activated: Vec<Option<u64>> = pipe
            .query_async(&mut env.redis.clone())
            .await
            .expect("HGET activated");
        let behind = activated
            .iter()
            .zip(produced)
            .filter(|(done, wanted)| done.unwrap_or(0) < wanted.load(Ordering::Relaxed))
            .count();
        if behind == 0 {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("{behind} queues still had tickets to activate after a minute");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the window is measured from: the activator's metrics, Redis's counters, CPU.
struct Snapshot {
    at: Instant,
    metrics: String,
    redis: BTreeMap<String, String>,
    activator_ticks: u64,
    own_commands: u64,
}

impl Snapshot {
    async fn take(env: &TestEnv, metrics_url: &str, pid: u32, marked: &AtomicU64) -> Self {
        let info: String = redis::cmd("INFO")
            .arg("all")
            .query_async(&mut env.redis.clone())
            .await
            .expect("INFO");
        let metrics = reqwest::get(metrics_url)
            .await
            .expect("scrape the activator")
            .text()
            .await
            .expect("metrics text");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // utime and stime: fields 14 and 15, counted after the command's parenthesis.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let field = |index: usize| fields.get(index - 3).and_then(|f| f.parse::<u64>().ok());
        Self {
            at: Instant::now(),
            metrics,
            redis: info
                .lines()
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
                .collect(),
            activator_ticks: field(14).unwrap_or(0) + field(15).unwrap_or(0),
            own_commands: marked.load(Ordering::Relaxed),
        }
    }

    fn redis(&self, name: &str) -> f64 {
        self.redis
            .get(name)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    /// Calls per second of each command between `before` and this snapshot, busiest
    /// first.
    fn busiest_commands(&self, before: &Snapshot, seconds: f64) -> Vec<(String, f64)> {
        let calls = |snapshot: &Snapshot, name: &str| -> f64 {
            snapshot
                .redis
                .get(name)
                .and_then(|value| value.split(',').next())
                .and_then(|calls| calls.strip_prefix("calls="))
                .and_then(|calls| calls.parse().ok())
                .unwrap_or(0.0)
        };
        let mut busiest: Vec<(String, f64)> = self
            .redis
            .keys()
            .filter_map(|name| name.strip_prefix("cmdstat_").map(|c| (name, c)))
            .map(|(name, command)| {
                let delta = calls(self, name) - calls(before, name);
                (command.to_owned(), delta / seconds)
            })
            .filter(|(_, rate)| *rate >= 1.0)
            .collect();
        busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
        busiest
    }

    /// The histogram's cumulative buckets (upper bound, count) summed over its series,
    /// less `before`'s.
    fn histogram(&self, name: &str, before: &Snapshot) -> Vec<(f64, f64)> {
        let mut buckets = bucket_sums(&self.metrics, name);
        let earlier = bucket_sums(&before.metrics, name);
        for (bound, count) in &mut buckets {
            *count -= earlier
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
        }
        buckets
    }
}

fn bucket_sums(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines().filter(|line| line.starts_with(&prefix)) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(bound) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let bound = if bound == "+Inf" {
            f64::INFINITY
        } else {
            bound.parse().unwrap_or(f64::INFINITY)
        };
        let count: f64 = value.parse().unwrap_or(0.0);
        match sums.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, sum)) => *sum += count,
            None => sums.push((bound, count)),
        }
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    sums
}

/// The `q` quantile of cumulative buckets, linearly within the bucket it falls in (as
/// Prometheus's `histogram_quantile`); NaN without observations.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |(_, count)| *count);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, count) in buckets {
        if *count >= rank {
            if bound.is_infinite() {
                return lower;
            }
            let inside = count - below;
            return lower + (bound - lower) * ((rank - below) / inside.max(1.0));
        }
        (lower, below) = (*bound, *count);
    }
    lower
}
