//! Join rate limits shared by every instance through the real Redis: a client cannot
//! escape them by spreading joins over instances or by writing `X-Forwarded-For`.

mod support;

use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::{RunningService, TestEnv};
use waiting_room::WaitingRoomConfig;

/// Per client and event: 3 at once, then one every 100 s (nothing refills in a test).
fn limited(env: &TestEnv, trusted_proxies: &[&str]) -> WaitingRoomConfig {
    let mut config = support::waiting_room_config(env);
    config.join_rate_limit_per_second = 0.01;
    config.join_rate_limit_burst = 3;
    config.trusted_proxies = trusted_proxies
        .iter()
        .map(|cidr| cidr.parse().expect("CIDR"))
        .collect();
    config
}

async fn join_from(
    client: &WaitingRoomClient<'_>,
    event_id: &str,
    forwarded_for: &str,
) -> reqwest::Response {
    client
        .http
        .post(
            client
                .service
                .url(&format!("/v1/events/{event_id}/tickets")),
        )
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .expect("POST join")
}

async fn assert_limited(response: reqwest::Response) {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "rate_limited");
}

async fn refusals(service: &RunningService, scope: &str) -> f64 {
    service
        .metric(&format!(
            "waiting_room_joins_rate_limited_total{{scope=\"{scope}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn spoofed_forwarded_for_and_a_second_instance_do_not_escape_the_limit() {
    let env = TestEnv::new().await;
    // The peer (loopback) is no trusted proxy: whatever it forwards is ignored.
    let first = support::start_waiting_room(limited(&env, &[])).await;
    let second = support::start_waiting_room(limited(&env, &[])).await;
    let on_first = WaitingRoomClient::new(&first, &env);
    let on_second = WaitingRoomClient::new(&second, &env);
    on_first.put_event("flood", json!({})).await;
    on_second.wait_for_event("flood").await;

    for (index, client) in [&on_first, &on_second, &on_first].into_iter().enumerate() {
        let response = join_from(client, "flood", &format!("203.0.113.{index}")).await;
        assert_eq!(response.status(), 201, "join {index} is within the burst");
    }
    for (index, client) in [&on_second, &on_first, &on_second].into_iter().enumerate() {
        assert_limited(join_from(client, "flood", &format!("198.51.100.{index}")).await).await;
    }
    assert!(refusals(&first, "client_event").await >= 1.0);
    assert!(refusals(&second, "client_event").await >= 1.0);
    assert_eq!(
        on_first.get_event("flood").await["joined"],
        3,
        "refusals issue nothing"
    );

    // The limit is per event: the same client may still join another one (on the
    // instance that created it, which has it in its catalog at once).
    on_first.put_event("another", json!({})).await;
    assert_eq!(on_first.join("another", None).await.status(), 201);
    first.stop().await.expect("clean shutdown");
    second.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_it_saw_is_the_client() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(limited(&env, &["127.0.0.0/8"])).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("proxied", json!({})).await;
    // The client prepends made-up addresses; the proxy appends the one it saw.
    for index in 0..3 {
        let response = join_from(&client, "proxied", &format!("10.9.9.{index}, 192.0.2.50")).await;
        assert_eq!(response.status(), 201);
    }
    assert_limited(join_from(&client, "proxied", "10.9.9.200, 192.0.2.50").await).await;
    // Another client behind the same proxy has its own budget, and an IPv6 client
    // shares one with its /64.
    assert_eq!(
        join_from(&client, "proxied", "192.0.2.51").await.status(),
        201
    );
    for host in 1..=3 {
        let response = join_from(&client, "proxied", &format!("2001:db8:7:7::{host}")).await;
        assert_eq!(response.status(), 201);
    }
    assert_limited(join_from(&client, "proxied", "2001:db8:7:7:ffff::1").await).await;
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn deployment_and_event_wide_limits_refuse_with_their_scope() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.client_join_rate_limit_per_second = 0.01;
    config.client_join_rate_limit_burst = 2;
    config.event_join_rate_limit_per_second = 0.01;
    config.event_join_rate_limit_burst = 3;
    config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("CIDR")];
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("wide-a", json!({})).await;
    client.put_event("wide-b", json!({})).await;

    // One client: two joins anywhere, then refused everywhere.
    assert_eq!(
        join_from(&client, "wide-a", "192.0.2.1").await.status(),
        201
    );
    assert_eq!(
        join_from(&client, "wide-b", "192.0.2.1").await.status(),
        201
    );
    assert_limited(join_from(&client, "wide-b", "192.0.2.1").await).await;
    assert!(refusals(&service, "client").await >= 1.0);

    // Every client together: the event takes three joins, then refuses the fourth.
    assert_eq!(
        join_from(&client, "wide-a", "192.0.2.2").await.status(),
        201
    );
    assert_eq!(
        join_from(&client, "wide-a", "192.0.2.3").await.status(),
        201
    );
    assert_limited(join_from(&client, "wide-a", "192.0.2.4").await).await;
    assert!(refusals(&service, "event").await >= 1.0);
    service.stop().await.expect("clean shutdown");
}
