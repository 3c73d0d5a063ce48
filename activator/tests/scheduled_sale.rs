//! Scheduled sales against the real Kafka, Redis and PostgreSQL: the queue is held
//! until the start and opens by itself; a shuffled pre-queue is drawn once, from the
//! seed, and served in drawn order even when the activator is SIGKILLed at the opening
//! instant and again during the draw's activation.

mod process;
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use contract::draw::{Draw, DrawRange, DrawSeed};
use process::{assert_activated_once_in_order, ActivatorProcess};
use support::{policy, set_queue};
use testkit::TestEnv;
use uuid::Uuid;

const SEED: [u8; 32] = [42; 32];

/// An event on `partition` whose sale starts at `starts` (the pre-queue is open).
async fn schedule_event(
    env: &TestEnv,
    event_id: &str,
    partition: i32,
    order: &str,
    starts: DateTime<Utc>,
) {
    sqlx::query(
        "INSERT INTO events (event_id, name, state, partition, prequeue_opens_at, sale_starts_at,
                             queue_order, draw_seed)
         VALUES ($1, $1, 'open', $2, now() - interval '1 hour', $3, $4, $5)",
    )
    .bind(event_id)
    .bind(partition)
    .bind(starts)
    .bind(order)
    .bind((order == "shuffle_prequeue").then_some(SEED.to_vec()))
    .execute(&env.postgres)
    .await
    .expect("schedule the event");
}

async fn move_start(env: &TestEnv, event_id: &str, starts: DateTime<Utc>) {
    sqlx::query("UPDATE events SET sale_starts_at = $2, updated_at = now() WHERE event_id = $1")
        .bind(event_id)
        .bind(starts)
        .execute(&env.postgres)
        .await
        .expect("move the start");
}

async fn recorded_range(env: &TestEnv, event_id: &str) -> Option<(i32, i64, i64)> {
    let row: (Option<i32>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT draw_partition, draw_first_offset, draw_end_offset FROM events WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&env.postgres)
    .await
    .expect("read the draw");
    match row {
        (Some(partition), Some(first), Some(end)) => Some((partition, first, end)),
        _ => None,
    }
}

async fn active_count(env: &TestEnv, tickets: &[(i64, Uuid)]) -> usize {
    let mut active = 0;
    for (_, ticket_id) in tickets {
        if support::ticket_state(env, 0, *ticket_id).await.0.as_deref() == Some("active") {
            active += 1;
        }
    }
    active
}

/// Sleeps until `instant` (wall clock).
async fn sleep_until(instant: DateTime<Utc>) {
    if let Ok(wait) = (instant - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn a_fifo_sale_is_held_until_its_start_and_opens_by_itself() {
    let env = TestEnv::new().await;
    set_queue(&env, 0, policy("open", 100, 100, None, 3600, 3600)).await;
    let far = Utc::now() + chrono::Duration::hours(1);
    schedule_event(&env, "fifo-sale", 0, "fifo", far).await;
    let tickets = support::produce_tickets(&env, 0, "fifo-sale", 50).await;
    let activator = support::start_activator(&env).await;

    // Running, owning the queue, with every ticket received: still nobody is served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        active_count(&env, &tickets).await,
        0,
        "served before the start"
    );
    assert_eq!(support::serving(&env, 0).await, 0);

    let starts = Utc::now() + chrono::Duration::seconds(2);
    move_start(&env, "fifo-sale", starts).await;
    support::wait_for_serving(&env, 0, 50, Duration::from_secs(60)).await;
    assert_activated_once_in_order(&env, 0, &tickets).await;
    // Nobody before the start: active_until = activation + the session (3600 s).
    for (_, ticket_id) in &tickets {
        let (_, until) = support::ticket_state(&env, 0, *ticket_id).await;
        let activated_ms = until.expect("active_until") - 3_600_000;
        assert!(
            activated_ms >= starts.timestamp_millis(),
            "activated {} ms before the start",
            starts.timestamp_millis() - activated_ms
        );
    }
    activator.stop().await.expect("activator stops");
}

#[tokio::test]
async fn a_shuffled_pre_queue_is_drawn_once_and_served_in_drawn_order_across_sigkills() {
    const TICKETS: usize = 2_000;
    let env = TestEnv::new().await;
    // 50 every 100 ms: four seconds of drain, long enough to kill in the middle.
    set_queue(&env, 0, policy("open", 50, 100, None, 3600, 3600)).await;
    schedule_event(
        &env,
        "drawn-sale",
        0,
        "shuffle_prequeue",
        Utc::now() + chrono::Duration::hours(1),
    )
    .await;
    let tickets = support::produce_tickets(&env, 0, "drawn-sale", TICKETS).await;
    let mut activator = ActivatorProcess::spawn(&env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        recorded_range(&env, "drawn-sale").await,
        None,
        "drawn before the start"
    );

    // Killed at the opening instant, then started again.
    let starts = Utc::now() + chrono::Duration::seconds(3);
    move_start(&env, "drawn-sale", starts).await;
    sleep_until(starts).await;
    activator.kill();
    activator = ActivatorProcess::spawn(&env);

    // Killed again in the middle of serving the pre-queue.
    support::wait_for_serving(&env, 0, 500, Duration::from_secs(60)).await;
    activator.kill();
    let killed_at = support::serving(&env, 0).await;
    eprintln!("killed during the draw's activation at place {killed_at}");
    assert!(
        killed_at < TICKETS as i64,
        "the drain finished before the kill; slow it down"
    );
    activator = ActivatorProcess::spawn(&env);
    support::wait_for_serving(&env, 0, TICKETS as i64, Duration::from_secs(120)).await;

    let (partition, first, end) = recorded_range(&env, "drawn-sale")
        .await
        .expect("the draw is recorded");
    assert_eq!((partition, first, end), (0, 0, TICKETS as i64));
    let draw = Draw {
        seed: DrawSeed::from_bytes(SEED),
        range: DrawRange {
            partition,
            first,
            end,
        },
    };
    let mut drawn: Vec<(i64, Uuid)> = tickets
        .iter()
        .map(|(offset, ticket_id)| (draw.queue_number(*offset), *ticket_id))
        .collect();
    drawn.sort_by_key(|(place, _)| *place);
    assert_activated_once_in_order(&env, 0, &drawn).await;
    activator.kill();
}
