//! The operators' API: credentials, validation, partition mapping and live
//! configuration across instances.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::redis_server::PrivateRedis;
use testkit::TestEnv;
use waiting_room::PartitionMode;

#[tokio::test]
async fn every_admin_route_requires_the_admin_token() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let http = reqwest::Client::new();
    let routes = [
        ("GET", "/admin/events"),
        ("GET", "/admin/events/e1"),
        ("PUT", "/admin/events/e1"),
        ("DELETE", "/admin/events/e1"),
        ("GET", "/admin/partitions"),
        ("PUT", "/admin/partitions"),
        ("PUT", "/admin/partitions/0"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/events/e1/stats/events"),
        ("GET", "/admin/no-such-thing"),
        ("GET", "/admin/site-keys"),
        ("POST", "/admin/site-keys"),
        ("DELETE", "/admin/site-keys/k1"),
    ];
    for (method, path) in routes {
        for credentials in [None, Some("wrong-token"), Some("")] {
            let mut request = http
                .request(method.parse().expect("method"), service.url(path))
                .json(&json!({}));
            if let Some(token) = credentials {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let response = request.send().await.expect("request");
            assert_eq!(
                response.status(),
                401,
                "{method} {path} with {credentials:?}"
            );
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        let basic = http
            .request(method.parse().expect("method"), service.url(path))
            .header("authorization", format!("Basic {}", env.admin_token))
            .send()
            .await
            .expect("request");
        assert_eq!(
            basic.status(),
            401,
            "{method} {path} with Basic credentials"
        );
    }
    // Nothing was created by the refused PUT.
    let client = WaitingRoomClient::new(&service, &env);
    let response = client
        .http
        .get(service.url("/admin/events/e1"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn invalid_configuration_is_refused_naming_the_field() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let cases = [
        (json!({"state": "sleeping"}), "state"),
        (json!({"partition": 99}), "partition"),
        (json!({"partition": -1}), "partition"),
        (
            json!({"activation": {"batch_size": 0}}),
            "activation.batch_size",
        ),
        (
            json!({"activation": {"interval_ms": "fast"}}),
            "activation.interval_ms",
        ),
        (
            json!({"activation": {"max_active": -5}}),
            "activation.max_active",
        ),
        (
            json!({"activation": {"active_ttl_seconds": 0}}),
            "activation.active_ttl_seconds",
        ),
        (
            json!({"activation": {"grace_seconds": 999999}}),
            "activation.grace_seconds",
        ),
        (
            json!({"seats": {"rows": 0, "seats_per_row": 10}}),
            "seats.rows",
        ),
        (json!({"name": ""}), "name"),
        (json!({"colour": "blue"}), "colour"),
        (json!({"admission": {"audience": ""}}), "admission.audience"),
        (
            json!({"admission": {"audience": "a b"}}),
            "admission.audience",
        ),
        (
            json!({"admission": {"audience": "x", "return_url": "javascript:alert(1)"}}),
            "admission.return_url",
        ),
        (
            json!({"admission": {"audience": "x", "return_url": "/relative"}}),
            "admission.return_url",
        ),
        (
            json!({"admission": {"audience": "x", "token_in": "header"}}),
            "admission.token_in",
        ),
        (
            json!({"admission": {"return_url": "https://shop.example/"}}),
            "audience",
        ),
    ];
    for (body, field) in cases {
        let response = client
            .http
            .put(service.url("/admin/events/e1"))
            .bearer_auth(&env.admin_token)
            .json(&body)
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["code"], "invalid_request");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{body}: message {message:?} does not name {field}"
        );
    }
    // A space, and ids made only of dots ("." and ".." go raw below: URL libraries
    // resolve them as path segments before sending).
    for bad in ["bad%20id", "..."] {
        let bad_id = client
            .http
            .put(service.url(&format!("/admin/events/{bad}")))
            .bearer_auth(&env.admin_token)
            .json(&json!({}))
            .send()
            .await
            .expect("PUT");
        assert_eq!(bad_id.status(), 422, "{bad}");
        let bad_delete = client
            .http
            .delete(service.url(&format!("/admin/events/{bad}")))
            .bearer_auth(&env.admin_token)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(bad_delete.status(), 422, "DELETE {bad}");
    }
    for dots in [".", ".."] {
        let status = raw_put_status(
            &service.base_url,
            &format!("/admin/events/{dots}"),
            &env.admin_token,
        )
        .await;
        assert_eq!(status, 422, "{dots}");
    }
    let malformed = client
        .http
        .put(service.url("/admin/events/e1"))
        .bearer_auth(&env.admin_token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("PUT");
    assert_eq!(malformed.status(), 400);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn events_are_created_updated_and_report_stats() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let created = client
        .http
        .put(service.url("/admin/events/gig"))
        .bearer_auth(&env.admin_token)
        .json(&json!({
            "name": "The Gig", "state": "open",
            "activation": {"batch_size": 50, "interval_ms": 500, "max_active": 1000, "active_ttl_seconds": 300, "grace_seconds": 30},
            "seats": {"rows": 20, "seats_per_row": 50}
        }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(created.status(), 201);
    let event: Value = created.json().await.expect("JSON");
    assert_eq!(event["name"], "The Gig");
    assert_eq!(event["activation"]["batch_size"], 50);
    assert_eq!(event["activation"]["max_active"], 1000);
    assert_eq!(event["seats"]["rows"], 20);
    assert_eq!(event["joined"], 0);

    for _ in 0..3 {
        client.join_ok("gig", None).await;
    }
    // A partial update keeps the rest; null lifts the capacity limit.
    let updated = client
        .put_event("gig", json!({"activation": {"max_active": null}}))
        .await;
    assert_eq!(updated["activation"]["max_active"], Value::Null);
    assert_eq!(updated["activation"]["batch_size"], 50);
    assert_eq!(updated["name"], "The Gig");
    assert_eq!(updated["joined"], 3);
    assert_eq!(updated["waiting"], 3);
    assert_eq!(updated["serving_number"], 0);
    assert_eq!(updated["active"], 0);
    for field in [
        "activated",
        "abandoned",
        "reserved",
        "rate_per_second",
        "estimated_drain_seconds",
    ] {
        assert!(
            updated.get(field).is_some(),
            "stats field {field} missing: {updated}"
        );
    }
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn per_event_partitions_until_none_is_free_and_remapping_affects_new_tickets_only() {
    let env = TestEnv::with_partitions(2).await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let first = client.put_event("first", json!({})).await;
    let second = client.put_event("second", json!({})).await;
    assert_ne!(
        first["partition"], second["partition"],
        "each event gets its own queue"
    );

    assert_no_free_partition(&client, "third").await;
    // Naming a partition shares it.
    let third = client
        .put_event("third", json!({"partition": first["partition"]}))
        .await;
    assert_eq!(third["shared_queue_with"], json!(["first"]));

    let old_ticket = client.join_ok("first", None).await;
    assert_eq!(old_ticket["partition"], first["partition"]);
    let target = second["partition"].as_i64().expect("partition");
    let remapped = client
        .http
        .put(service.url(&format!("/admin/partitions/{target}")))
        .bearer_auth(&env.admin_token)
        .json(&json!({"events": ["first"]}))
        .send()
        .await
        .expect("PUT partition");
    assert_eq!(remapped.status(), 200);
    let view: Value = remapped.json().await.expect("JSON");
    assert_eq!(view["events"], json!(["first", "second"]));
    let new_ticket = client.join_ok("first", None).await;
    assert_eq!(
        new_ticket["partition"].as_i64(),
        Some(target),
        "new tickets use the new mapping"
    );
    let old_status: Value = client
        .status(old_ticket["token"].as_str().expect("token"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        old_status["partition"], first["partition"],
        "issued tickets keep their queue"
    );
    assert_eq!(old_status["state"], "waiting");

    let listing: Value = client
        .http
        .get(service.url("/admin/partitions"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listing["partition_count"], 2);
    assert_eq!(listing["default_mode"], "per-event");
    assert_eq!(listing["partitions"].as_array().map(Vec::len), Some(2));
    let unknown = client
        .http
        .put(service.url("/admin/partitions/0"))
        .bearer_auth(&env.admin_token)
        .json(&json!({"events": ["nobody"]}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(unknown.status(), 404);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_partition_left_with_waiting_tickets_is_not_handed_out_and_preset_policies_stay() {
    let env = TestEnv::with_partitions(3).await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let put_partition = |partition: i64, body: Value| {
        client
            .http
            .put(service.url(&format!("/admin/partitions/{partition}")))
            .bearer_auth(&env.admin_token)
            .json(&body)
            .send()
    };
    // An operator prepares partition 2 before any event uses it.
    let prepared = put_partition(2, json!({"activation": {"batch_size": 7}}))
        .await
        .expect("PUT partition");
    assert_eq!(prepared.status(), 200);
    let moved = client.put_event("moved", json!({"state": "paused"})).await;
    let stays = client.put_event("stays", json!({})).await;
    assert_eq!(
        (moved["partition"].as_i64(), stays["partition"].as_i64()),
        (Some(0), Some(1))
    );
    // A fan waits on partition 0; its event moves to partition 1, the ticket stays.
    client.join_ok("moved", None).await;
    let remapped = put_partition(1, json!({"events": ["moved"]}))
        .await
        .expect("PUT partition");
    assert_eq!(remapped.status(), 200);

    // Partition 0 has no event but a fan in line: the next event gets partition 2, with
    // the policy prepared for it.
    let next = client.put_event("next", json!({})).await;
    assert_eq!(next["partition"], 2, "{next}");
    assert_eq!(next["activation"]["batch_size"], 7, "{next}");
    assert_no_free_partition(&client, "another").await;
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_delete_while_redis_is_down_answers_503_and_keeps_the_event() {
    let env = TestEnv::new().await;
    let redis = PrivateRedis::start().await;
    let mut config = support::waiting_room_config(&env);
    redis.configure(&mut config.common);
    config.event_settle_seconds = 1;
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("ended", json!({"state": "closed"})).await;
    let delete = || {
        client
            .http
            .delete(service.url("/admin/events/ended"))
            .bearer_auth(&env.admin_token)
            .send()
    };

    // Whether the queue drained is Redis's to say: without it, nothing is deleted.
    redis.pause();
    let refused = delete().await.expect("DELETE");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "service_unavailable");
    redis.resume();
    assert_eq!(client.get_event("ended").await["state"], "closed");
    testkit::wait::until_true(
        "the settled event is deleted once Redis answers",
        Duration::from_secs(30),
        || async { delete().await.expect("DELETE").status() == 204 },
    )
    .await;
    let gone = client
        .http
        .get(service.url("/admin/events/ended"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .expect("GET");
    assert_eq!(gone.status(), 404);
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn global_mode_puts_every_event_on_one_queue_with_one_policy() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.partition_mode = PartitionMode::Global;
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client.put_event("a", json!({})).await;
    let b = client
        .put_event("b", json!({"activation": {"batch_size": 7}}))
        .await;
    let a: Value = client.get_event("a").await;
    assert_eq!(a["partition"], 0);
    assert_eq!(b["partition"], 0);
    assert_eq!(
        a["activation"]["batch_size"], 7,
        "the policy belongs to the shared queue"
    );
    let ticket_a = client.join_ok("a", None).await;
    let ticket_b = client.join_ok("b", None).await;
    assert_eq!(
        ticket_b["queue_number"].as_i64(),
        ticket_a["queue_number"].as_i64().map(|n| n + 1),
        "one line"
    );
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_second_instance_sees_configuration_changes_within_a_second() {
    let env = TestEnv::new().await;
    let first = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let second = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let via_first = WaitingRoomClient::new(&first, &env);
    let via_second = WaitingRoomClient::new(&second, &env);
    // Let the second instance's listener come up before the change.
    assert_eq!(via_second.join("live", None).await.status(), 404);

    for (change, expected) in [
        (json!({"state": "open"}), 201),
        (json!({"state": "closed"}), 409),
        (json!({"state": "open"}), 201),
    ] {
        via_first.put_event("live", change).await;
        let changed_at = Instant::now();
        loop {
            let status = via_second.join("live", None).await.status().as_u16();
            if status == expected {
                break;
            }
            assert!(
                changed_at.elapsed() < Duration::from_secs(1),
                "second instance still answers {status}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    first.stop().await.expect("clean shutdown");
    second.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_events_admission_site_is_kept_until_removed_and_site_keys_are_validated() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let site =
        json!({"audience": "https://shop.example", "return_url": "https://shop.example/buy"});
    let created = client.put_event("gated", json!({"admission": site})).await;
    let expected = json!({"audience": "https://shop.example",
                          "return_url": "https://shop.example/buy", "token_in": "fragment"});
    assert_eq!(created["admission"], expected, "{created}");
    let renamed = client.put_event("gated", json!({"name": "Gated"})).await;
    assert_eq!(
        renamed["admission"], expected,
        "kept by other changes: {renamed}"
    );
    let removed = client.put_event("gated", json!({"admission": null})).await;
    assert!(removed["admission"].is_null(), "{removed}");

    let post_key = |body: Value| {
        client
            .http
            .post(service.url("/admin/site-keys"))
            .bearer_auth(&env.admin_token)
            .json(&body)
            .send()
    };
    for (body, field) in [
        (json!({"audience": "", "label": "x"}), "audience"),
        (json!({"audience": "a b", "label": "x"}), "audience"),
        (
            json!({"audience": "https://shop.example", "label": "  "}),
            "label",
        ),
        (
            json!({"audience": "https://shop.example", "label": "x\u{7}"}),
            "label",
        ),
        (json!({"audience": "https://shop.example"}), "label"),
        (
            json!({"audience": "https://shop.example", "label": "x", "secret": "mine"}),
            "secret",
        ),
    ] {
        let response = post_key(body.clone()).await.expect("POST");
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.expect("JSON");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    let listed = client.admin_get("/admin/site-keys").await;
    assert_eq!(
        listed,
        json!({"site_keys": []}),
        "nothing refused was stored"
    );
    let unknown = client
        .http
        .delete(service.url("/admin/site-keys/0123456789abcdef"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "site_key_not_found");
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_instance_reads_its_own_change_while_other_changes_reload_its_catalog() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    // Other instances' changes wake this one's listener again and again; a reload that
    // began before our change must never land after the reload that follows it.
    let pool = env.postgres.clone();
    let others = tokio::spawn(async move {
        loop {
            sqlx::query("SELECT pg_notify('config_changed', 'events')")
                .execute(&pool)
                .await
                .expect("notify");
            tokio::task::yield_now().await;
        }
    });
    for round in 0..60 {
        let (state, expected) = if round % 2 == 0 {
            ("open", 201)
        } else {
            ("closed", 409)
        };
        client.put_event("own-write", json!({"state": state})).await;
        assert_eq!(
            client.join("own-write", None).await.status(),
            expected,
            "round {round}: the instance that made the change to {state} does not see it"
        );
    }
    others.abort();
    service.stop().await.expect("clean shutdown");
}

/// `PUT path` with an empty JSON body, sent as raw HTTP/1.1 so the path reaches the
/// server exactly as written; the response's status code.
/// Creating `event_id` is refused: no partition is left for it.
async fn assert_no_free_partition(client: &WaitingRoomClient<'_>, event_id: &str) {
    let refused = client
        .http
        .put(client.service.url(&format!("/admin/events/{event_id}")))
        .bearer_auth(client.admin_token)
        .json(&json!({}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "no_free_partition");
}

async fn raw_put_status(base_url: &str, path: &str, admin_token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {admin_token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[tokio::test]
async fn partitions_raised_online_are_taken_up_and_a_refusing_broker_changes_nothing() {
    let env = TestEnv::new().await;
    let service = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let client = WaitingRoomClient::new(&service, &env);
    let raise = |body: Value| {
        let request = client
            .http
            .put(service.url("/admin/partitions"))
            .bearer_auth(&env.admin_token)
            .json(&body);
        async move { request.send().await.expect("PUT /admin/partitions") }
    };
    let count = || async {
        let partitions: Value = client
            .http
            .get(service.url("/admin/partitions"))
            .bearer_auth(&env.admin_token)
            .send()
            .await
            .expect("GET /admin/partitions")
            .json()
            .await
            .expect("JSON");
        partitions["partition_count"].as_i64().expect("a count")
    };
    assert_eq!(count().await, 4);

    // Kafka only adds partitions.
    for body in [
        json!({"partition_count": 4}),
        json!({"partition_count": 2}),
        json!({"partition_count": 10_001}),
        json!({"partition_count": "six"}),
        json!({"partitions": 6}),
    ] {
        let response = raise(body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
    }

    // Tansu 0.6 cannot add partitions: the refusal says so and nothing is recorded.
    let refused = raise(json!({"partition_count": 6})).await;
    assert_eq!(refused.status(), 502);
    let error: Value = refused.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "partitions_not_raised");
    assert_eq!(count().await, 4);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM topic_partitions")
        .fetch_one(&env.postgres)
        .await
        .expect("count");
    assert_eq!(stored, 0);

    // A raise recorded by another instance (on a broker that can): this one takes the new
    // partitions up without a restart.
    sqlx::query("INSERT INTO topic_partitions (topic, partitions) VALUES ($1, 6)")
        .bind(&env.common.tickets_topic)
        .execute(&env.postgres)
        .await
        .expect("record a raise");
    let started = Instant::now();
    while count().await != 6 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the raise was not taken up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = client.put_event("on-five", json!({"partition": 5})).await;
    assert_eq!(created["partition"], 5);
}

#[tokio::test]
async fn a_raise_the_broker_already_made_is_recorded_when_asked_again() {
    // The topic has 4 partitions; this instance was started believing in 2 (as after a
    // raise whose recording failed): asking for 4 records it without a second raise.
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.common.tickets_partitions = 2;
    let service = support::start_waiting_room(config).await;
    let http = reqwest::Client::new();
    let response = http
        .put(service.url("/admin/partitions"))
        .bearer_auth(&env.admin_token)
        .json(&json!({"partition_count": 4}))
        .send()
        .await
        .expect("PUT /admin/partitions");
    assert_eq!(response.status(), 200);
    let partitions: Value = response.json().await.expect("JSON");
    assert_eq!(partitions["partition_count"], 4);
    assert_eq!(partitions["partitions"].as_array().map(Vec::len), Some(4));
    let recorded: i32 =
        sqlx::query_scalar("SELECT partitions FROM topic_partitions WHERE topic = $1")
            .bind(&env.common.tickets_topic)
            .fetch_one(&env.postgres)
            .await
            .expect("recorded");
    assert_eq!(recorded, 4);
}
