//! Activation policy against the real Kafka, Redis and PostgreSQL: N every M in queue
//! order, capacity, modes, live changes, unread tickets, abandonment and dead letters.

mod support;

use std::time::Duration;

use chrono::Utc;
use contract::ticket_state::{MarkUsed, TicketStore};
use contract::token::TicketClaims;
use rdkafka::Message;
use serde_json::Value;
use support::{policy, set_queue, Announcements};
use testkit::kafka::read_record;
use testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exactly_n_per_tick_in_queue_order() {
    let env = TestEnv::new().await;
    set_queue(&env, 0, policy("open", 3, 300, None, 600, 600)).await;
    let tickets = support::produce_tickets(&env, 0, "concert", 9).await;
    let mut announcements = Announcements::subscribe(&env).await;
    let activator = support::start_activator(&env).await;

    let mut expected_from = 0;
    for _ in 0..3 {
        let announcement = announcements.next(WAIT).await;
        assert_eq!(announcement.partition, 0);
        assert_eq!(announcement.reached_from, expected_from);
        assert_eq!(
            announcement.serving,
            expected_from + 3,
            "exactly 3 per tick"
        );
        assert!(announcement.abandoned.is_empty());
        expected_from += 3;
    }
    let mut previous_until = 0;
    for (queue_number, ticket_id) in &tickets {
        let (state, active_until) = support::ticket_state(&env, 0, *ticket_id).await;
        assert_eq!(state.as_deref(), Some("active"), "ticket {queue_number}");
        let active_until = active_until.expect("active_until");
        assert!(active_until >= previous_until, "activated in queue order");
        previous_until = active_until;
    }
    activator.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn capacity_is_never_exceeded_and_freed_slots_are_refilled() {
    let env = TestEnv::new().await;
    set_queue(&env, 1, policy("open", 10, 200, Some(3), 3, 600)).await;
    let tickets = support::produce_tickets(&env, 1, "concert", 8).await;
    let activator = support::start_activator(&env).await;
    let keys = env.redis_keys();

    support::wait_for_serving(&env, 1, 3, WAIT).await;
    // "Mark used" frees a slot at once; the next tick refills it.
    let store = TicketStore::new(env.redis.clone(), keys.clone());
    let (first_number, first_id) = tickets[0];
    let claims = TicketClaims {
        ticket_id: first_id,
        event_id: "concert".into(),
        partition: 1,
        queue_number: first_number,
        iat: 0,
        exp: Utc::now().timestamp() + 3600,
        subject: None,
    };
    assert_eq!(
        store
            .mark_used(&claims, Utc::now().timestamp_millis())
            .await
            .expect("mark used"),
        MarkUsed::Marked
    );
    assert_eq!(
        store
            .mark_used(&claims, Utc::now().timestamp_millis())
            .await
            .expect("mark used"),
        MarkUsed::AlreadyEnded
    );
    support::wait_for_serving(&env, 1, 4, WAIT).await;

    // Expiry (3 s sessions) frees the rest; the line drains while never exceeding 3 active.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while support::serving(&env, 1).await < 8 {
        let now = Utc::now().timestamp_millis();
        let active: i64 = redis::cmd("ZCOUNT")
            .arg(keys.active_set(1))
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut env.redis.clone())
            .await
            .expect("ZCOUNT");
        assert!(active <= 3, "{active} active tickets exceed max_active 3");
        assert!(
            std::time::Instant::now() < deadline,
            "the line did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (state, _) = support::ticket_state(&env, 1, first_id).await;
    assert_eq!(state.as_deref(), Some("used"));
    activator.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn paused_activates_nothing_and_passthrough_activates_on_arrival() {
    let env = TestEnv::new().await;
    set_queue(&env, 2, policy("paused", 100, 100, None, 600, 600)).await;
    support::produce_tickets(&env, 2, "concert", 5).await;
    let activator = support::start_activator(&env).await;
    // Several intervals pass; a paused queue does not move.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(support::serving(&env, 2).await, 0);

    set_queue(&env, 2, policy("passthrough", 1, 60_000, None, 600, 600)).await;
    // A one-minute interval and a batch of one: only passthrough explains a fast drain.
    support::wait_for_serving(&env, 2, 5, WAIT).await;
    support::produce_tickets(&env, 2, "concert", 3).await;
    support::wait_for_serving(&env, 2, 8, WAIT).await;
    activator.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unread_ticket_takes_no_slot_and_is_activated_once_read_with_nothing_new_arriving() {
    let env = TestEnv::new().await;
    set_queue(&env, 1, policy("open", 10, 200, Some(1), 600, 600)).await;
    let (unread_number, unread_id) =
        support::produce_unread_tickets(&env, 1, "concert", 1).await[0];
    let (_, fan_id) = support::produce_tickets(&env, 1, "concert", 1).await[0];
    let activator = support::start_activator(&env).await;

    // The one slot goes to the fan behind the unread ticket.
    support::wait_for_serving(&env, 1, unread_number + 2, WAIT).await;
    assert_eq!(
        support::ticket_state(&env, 1, unread_id).await.0.as_deref(),
        Some("deferred")
    );
    assert_eq!(
        support::ticket_state(&env, 1, fan_id).await.0.as_deref(),
        Some("active")
    );

    // Its holder reads it at last, and the fan's slot frees: the next tick activates it
    // although no record arrives.
    let mut announcements = Announcements::subscribe(&env).await;
    let store = TicketStore::new(env.redis.clone(), env.redis_keys());
    let claims = |ticket_id, queue_number| TicketClaims {
        ticket_id,
        event_id: "concert".into(),
        partition: 1,
        queue_number,
        iat: 0,
        exp: Utc::now().timestamp() + 3600,
        subject: None,
    };
    let now = Utc::now().timestamp_millis();
    store
        .status(&claims(unread_id, unread_number), now, Some(1_000))
        .await
        .expect("status read");
    assert_eq!(
        store
            .mark_used(&claims(fan_id, unread_number + 1), now)
            .await
            .expect("mark used"),
        MarkUsed::Marked
    );
    let announcement = loop {
        let announcement = announcements.next(WAIT).await;
        if !announcement.activated_deferred.is_empty() {
            break announcement;
        }
    };
    assert_eq!(announcement.activated_deferred, vec![unread_number]);
    assert_eq!(announcement.serving, unread_number + 2, "the counter stays");
    assert_eq!(
        support::ticket_state(&env, 1, unread_id).await.0.as_deref(),
        Some("active")
    );
    activator.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn policy_changes_take_effect_without_restart() {
    let env = TestEnv::new().await;
    set_queue(&env, 3, policy("open", 1, 300, None, 600, 600)).await;
    support::produce_tickets(&env, 3, "concert", 40).await;
    let mut announcements = Announcements::subscribe(&env).await;
    let activator = support::start_activator(&env).await;
    let first = announcements.next(WAIT).await;
    assert_eq!(first.serving - first.reached_from, 1);

    set_queue(&env, 3, policy("open", 5, 300, None, 600, 600)).await;
    // Within a tick or two of the change, ticks activate 5.
    let mut saw_five = false;
    for _ in 0..4 {
        let announcement = announcements.next(WAIT).await;
        if announcement.serving - announcement.reached_from == 5 {
            saw_five = true;
            break;
        }
    }
    assert!(saw_five, "the new batch size was not applied");
    activator.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_the_line_behind_it_moves() {
    let env = TestEnv::new().await;
    set_queue(&env, 0, policy("open", 10, 200, None, 600, 600)).await;
    let before = support::produce_tickets(&env, 0, "concert", 1).await;
    let garbage = support::produce_raw(&env, 0, b"this is not a ticket").await;
    let unknown_version = support::produce_raw(&env, 0, br#"{"version": 99}"#).await;
    let after = support::produce_tickets(&env, 0, "concert", 2).await;
    let activator = support::start_activator(&env).await;
    support::wait_for_serving(&env, 0, after[1].0 + 1, WAIT).await;
    for (_, ticket_id) in before.iter().chain(after.iter()) {
        assert_eq!(
            support::ticket_state(&env, 0, *ticket_id)
                .await
                .0
                .as_deref(),
            Some("active")
        );
    }
    for (offset, expected_reason) in [
        (0, "not a valid ticket record"),
        (1, "unknown record version 99"),
    ] {
        let dead = read_record(&env.common.kafka, &env.common.tickets_dlq_topic, 0, offset)
            .await
            .expect("a dead letter");
        let letter: Value =
            serde_json::from_slice(dead.payload().expect("payload")).expect("JSON dead letter");
        assert_eq!(letter["partition"], 0);
        let original = if offset == 0 {
            garbage
        } else {
            unknown_version
        };
        assert_eq!(letter["offset"], original);
        assert!(
            letter["reason"]
                .as_str()
                .unwrap_or_default()
                .contains(expected_reason),
            "{letter}"
        );
    }
    let dead_lettered: i64 = redis::cmd("HGET")
        .arg(env.redis_keys().queue_stats(0))
        .arg("dead_lettered")
        .query_async(&mut env.redis.clone())
        .await
        .expect("stats");
    assert_eq!(dead_lettered, 2);
    activator.stop().await.expect("clean shutdown");
}
