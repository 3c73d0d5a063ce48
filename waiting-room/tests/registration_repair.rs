//! A ticket the broker acknowledged while Redis did not answer is still the fan's:
//! its registration is repaired once Redis is back, and counted once.
//!
//! Alone in its test binary: it reads the process-wide
//! `waiting_room_registrations_pending` gauge, which a concurrent test's slow
//! registration (a crowd of joins on a loaded machine) would move too.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::redis_server::PrivateRedis;
use testkit::wait::until_true;
use testkit::TestEnv;

#[tokio::test]
async fn a_ticket_the_broker_acknowledged_survives_redis_failing_and_counts_once() {
    let env = TestEnv::new().await;
    let redis = PrivateRedis::start().await;
    let mut config = support::waiting_room_config(&env);
    redis.configure(&mut config.common);
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("orphan", json!({})).await;
    let pending = "waiting_room_registrations_pending";
    let before = service.metric(pending).await.unwrap_or(0.0);

    // Redis stops answering between the broker's acknowledgement and the registration
    // (an anonymous join touches Redis only to register).
    redis.pause();
    let response = client.join("orphan", None).await;
    assert_eq!(
        response.status(),
        201,
        "the acknowledged ticket is the fan's"
    );
    let ticket: Value = response.json().await.expect("ticket");
    let token = ticket["token"]
        .as_str()
        .expect("the token is returned")
        .to_owned();
    assert_eq!(service.metric(pending).await, Some(before + 1.0));

    // Once Redis answers again the registration is repaired, and counted exactly once
    // although the first attempt also reached Redis (its reply was what got lost).
    redis.resume();
    until_true(
        "the registration is repaired",
        Duration::from_secs(30),
        || async { service.metric(pending).await == Some(before) },
    )
    .await;
    let view = client.get_event("orphan").await;
    assert_eq!(view["joined"], 1, "{view}");
    assert_eq!(client.status(&token).await.status(), 200);
    let next = client.join_ok("orphan", None).await;
    assert_eq!(
        next["queue_number"].as_i64(),
        ticket["queue_number"].as_i64().map(|n| n + 1)
    );
    assert_eq!(client.get_event("orphan").await["joined"], 2);
    service.stop().await.expect("clean shutdown");
}
