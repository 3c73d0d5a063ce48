//! Crash safety: SIGKILL at random moments, Redis data loss, failover between two
//! activators and a Redis Cluster primary killed, against the real Kafka, Redis and
//! PostgreSQL. The activator runs as its
//! own process here so that it can be killed.

mod process;
mod support;

use std::time::{Duration, Instant};

use contract::redis_schema::{EventStats, TicketHash};
use process::{assert_activated_once_in_order, ActivatorProcess};
use rand::Rng;
use support::{policy, set_queue};
use testkit::redis_cluster::PrivateRedisCluster;
use testkit::wait::until;
use testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    const TICKETS: usize = 10_000;
    const KILLS: usize = 10;
    let env = TestEnv::new().await;
    // 150 every 50 ms: the drain takes longer than the kills need.
    set_queue(&env, 0, policy("open", 150, 50, None, 3600, 3600)).await;
    let tickets = support::produce_tickets(&env, 0, "drain", TICKETS).await;
    let mut activator = ActivatorProcess::spawn(&env);
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < KILLS {
        // Wait for progress after each restart, then kill at a random instant.
        let before = support::serving(&env, 0).await;
        while support::serving(&env, 0).await == before {
            assert!(
                Instant::now() < deadline,
                "no progress after restart {kills}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..250))).await;
        let at = support::serving(&env, 0).await;
        if at >= TICKETS as i64 {
            break;
        }
        activator.kill();
        kills += 1;
        eprintln!("kill {kills} at serving {at}");
        activator = ActivatorProcess::spawn(&env);
    }
    assert!(
        kills >= KILLS,
        "only {kills} kills happened during the drain; slow the drain down"
    );
    support::wait_for_serving(&env, 0, TICKETS as i64, Duration::from_secs(240)).await;
    assert_activated_once_in_order(&env, 0, &tickets).await;
    activator.kill();
}

#[tokio::test]
async fn redis_data_loss_is_rebuilt_from_kafka_and_nobody_loses_a_place_or_a_session() {
    let env = TestEnv::new().await;
    // 200 a second: the loss comes mid-drain.
    set_queue(&env, 1, policy("open", 10, 50, None, 3600, 3600)).await;
    let tickets = support::produce_tickets(&env, 1, "flush", 3_000).await;
    let activator = support::start_activator(&env).await;
    support::wait_for_serving(&env, 1, 1_000, Duration::from_secs(60)).await;
    // Sessions running before the loss, as their holders were told; their decisions are
    // published within milliseconds of each tick.
    let mut sessions = Vec::new();
    for (_, ticket_id) in &tickets {
        if let (Some(state), Some(until)) = support::ticket_state(&env, 1, *ticket_id).await {
            assert_eq!(state, "active");
            sessions.push((*ticket_id, until));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The fans still in line read their status again at once (here: at the instant of
    // the loss, in the same transaction).
    lose_redis_keys(&env, &tickets, true).await;
    support::wait_for_serving(&env, 1, 3_000, Duration::from_secs(120)).await;
    assert_rebuilt(&env, &tickets, &sessions).await;

    // A drained queue nobody joins any more: the idle check notices the next loss.
    lose_redis_keys(&env, &tickets, false).await;
    wait_rebuilt(&env, &tickets, &sessions).await;
    activator.stop().await.expect("clean shutdown");

    // Lost while no activator ran: a new one knows nothing of the counter and starts from
    // the group's committed offset; what Kafka says was decided is restored all the same.
    lose_redis_keys(&env, &tickets, false).await;
    let activator = support::start_activator(&env).await;
    wait_rebuilt(&env, &tickets, &sessions).await;
    activator.stop().await.expect("clean shutdown");
}

/// Waits until the drained queue is back (its counter and its first ticket's state),
/// then checks all of it.
async fn wait_rebuilt(
    env: &TestEnv,
    tickets: &[(i64, uuid::Uuid)],
    sessions: &[(uuid::Uuid, i64)],
) {
    until("the drained queue rebuilt", WAIT, || async {
        let rebuilt = support::ticket_state(env, 1, tickets[0].1)
            .await
            .0
            .is_some()
            && support::serving(env, 1).await == 3_000;
        rebuilt.then_some(())
    })
    .await;
    assert_rebuilt(env, tickets, sessions).await;
}

/// Deletes every key the deployment has for the queue and its tickets in one
/// transaction (the Redis is shared: the loss happens at one instant; KEYS or SCAN would
/// crawl it), optionally with the fans' next reads.
async fn lose_redis_keys(env: &TestEnv, tickets: &[(i64, uuid::Uuid)], fans_read: bool) {
    let redis_keys = env.redis_keys();
    let mut keys = vec![
        redis_keys.serving(1),
        redis_keys.issued_max(1),
        redis_keys.active_set(1),
        redis_keys.deferred(1),
        redis_keys.decisions(1),
        redis_keys.queue_stats(1),
        redis_keys.event_stats(1, "flush"),
    ];
    keys.extend(tickets.iter().flat_map(|(_, ticket_id)| {
        [
            redis_keys.ticket(1, *ticket_id),
            redis_keys.registered(1, *ticket_id),
        ]
    }));
    let mut loss = redis::pipe();
    loss.atomic().del(&keys).ignore();
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (_, ticket_id) in tickets.iter().filter(|_| fans_read) {
        loss.hset(redis_keys.ticket(1, *ticket_id), TicketHash::SEEN, now_ms)
            .ignore();
    }
    let _: () = loss.query_async(&mut env.redis.clone()).await.expect("DEL");
}

/// Every ticket active once, in order, counted once; the sessions that ran before the
/// loss end when they ended before it; the event's counters come back from Kafka.
async fn assert_rebuilt(
    env: &TestEnv,
    tickets: &[(i64, uuid::Uuid)],
    sessions: &[(uuid::Uuid, i64)],
) {
    assert_activated_once_in_order(env, 1, tickets).await;
    for (ticket_id, until) in sessions {
        assert_eq!(
            support::ticket_state(env, 1, *ticket_id).await,
            (Some("active".to_owned()), Some(*until)),
            "a session running before the loss"
        );
    }
    let stats: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(env.redis_keys().event_stats(1, "flush"))
        .query_async(&mut env.redis.clone())
        .await
        .expect("HGETALL");
    assert_eq!(stats.get(EventStats::ACTIVATED), Some(&3_000));
    assert_eq!(
        stats.get(EventStats::JOINED),
        Some(&3_000),
        "joins from Kafka"
    );
    let waits: i64 = stats
        .iter()
        .filter(|(field, _)| field.starts_with(EventStats::WAIT_FIELD_PREFIX))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(waits, 3_000, "every activation's wait in the histogram");
}

#[tokio::test]
async fn a_second_activator_takes_over_when_the_first_dies() {
    let env = TestEnv::new().await;
    for partition in 0..4 {
        set_queue(&env, partition, policy("open", 50, 100, None, 3600, 3600)).await;
    }
    let mut first = ActivatorProcess::spawn(&env);
    for partition in 0..4 {
        support::produce_tickets(&env, partition, "failover", 10).await;
    }
    for partition in 0..4 {
        support::wait_for_serving(&env, partition, 10, Duration::from_secs(60)).await;
    }
    let second = support::start_activator(&env).await;
    // The group rebalances across both members: the second owns some queues, not all.
    let owned_before = until(
        "the second activator owns a share of the queues",
        WAIT,
        || async {
            second
                .metric("activator_owned_queues")
                .await
                .filter(|owned| (1.0..4.0).contains(owned))
        },
    )
    .await;
    eprintln!("failover: the second activator owns {owned_before} of 4 queues before the kill");
    first.kill();
    let killed_at = Instant::now();
    let mut last = Vec::new();
    for partition in 0..4 {
        last.push(support::produce_tickets(&env, partition, "failover", 10).await);
    }
    for partition in 0..4 {
        support::wait_for_serving(&env, partition, 20, Duration::from_secs(60)).await;
    }
    eprintln!(
        "failover: every queue moving again {:?} after the kill",
        killed_at.elapsed()
    );
    assert_eq!(
        second.metric("activator_owned_queues").await,
        Some(4.0),
        "the survivor owns every queue"
    );
    for (partition, tickets) in last.iter().enumerate() {
        for (queue_number, ticket_id) in tickets {
            let (state, _) = support::ticket_state(&env, partition as i32, *ticket_id).await;
            assert_eq!(
                state.as_deref(),
                Some("active"),
                "partition {partition} ticket {queue_number}"
            );
        }
    }
    second.stop().await.expect("clean shutdown");
}

/// Redis Cluster: the primary that holds a draining queue is SIGKILLed mid-drain. Its
/// replica takes over, the activator follows it, and every ticket is still activated
/// exactly once, in order, its decision published once: each step waits for the
/// replica (`REDIS_WAIT_REPLICAS=1`) before anyone hears of it, so the failover cannot
/// take back a step that was announced.
#[tokio::test]
async fn a_redis_cluster_primary_killed_mid_drain_fails_over_and_loses_and_duplicates_nothing() {
    let mut cluster = PrivateRedisCluster::start().await;
    let mut common = TestEnv::environment();
    common.redis_url = cluster.url();
    common.redis_cluster = true;
    let env = TestEnv::on(common, 4).await;
    // 200 a second: the kill comes mid-drain.
    set_queue(&env, 1, policy("open", 10, 50, None, 3600, 3600)).await;
    let tickets = support::produce_tickets(&env, 1, "primary-killed", 3_000).await;
    let mut activator = ActivatorProcess::spawn_with(&env, &[("REDIS_WAIT_REPLICAS", "1")]);
    let serving_key = env.redis_keys().serving(1);
    let primary = cluster.primary_of(&serving_key).expect("a primary");
    wait_serving_through_failover(&env, 1_000).await;
    cluster.kill(primary);
    until("the replica serving the queue's slot", WAIT, || async {
        let now = cluster.primary_of(&serving_key);
        now.filter(|now| *now != primary).map(drop)
    })
    .await;
    wait_serving_through_failover(&env, 3_000).await;
    assert_activated_once_in_order(&env, 1, &tickets).await;
    activator.kill();
    // Back as a replica: the cluster is whole again for the clean-up.
    cluster.restart(primary).await;
}

/// Waits for queue 1's serving counter to reach `target`, reading through the failover
/// (a read may fail while the slot has no primary).
async fn wait_serving_through_failover(env: &TestEnv, target: i64) {
    until(&format!("serving counter at {target}"), WAIT, || async {
        let serving: Option<i64> = redis::cmd("GET")
            .arg(env.redis_keys().serving(1))
            .query_async(&mut env.redis.clone())
            .await
            .ok()
            .flatten();
        (serving.unwrap_or(0) >= target).then_some(())
    })
    .await;
}
