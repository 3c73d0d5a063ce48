//! What operators see beside the event itself: the audit log of every change, with who
//! made it (the label of their admin token) and the configuration before and after, and
//! the live stats stream that one aggregation per instance serves to every console.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::redis_server::PrivateRedis;
use testkit::{RunningService, TestEnv};

const ALICE: &str = "alice-token-for-the-audit-test";
const BOB: &str = "bob-token-for-the-audit-test";

async fn start(env: &TestEnv, redis: Option<&PrivateRedis>) -> RunningService {
    let mut config = support::waiting_room_config(env);
    config.admin_tokens = vec![format!("alice={ALICE}"), format!("bob={BOB}")];
    if let Some(redis) = redis {
        redis.configure(&mut config.common);
    }
    support::start_waiting_room(config).await
}

async fn admin(
    service: &RunningService,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().expect("method"), service.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn audit(service: &RunningService, query: &str) -> Value {
    let (status, body) = admin(service, ALICE, "GET", &format!("/admin/audit{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn every_change_is_logged_with_its_operator_and_what_it_changed() {
    let env = TestEnv::new().await;
    let service = start(&env, None).await;
    let event = "audited";
    let (status, _) = admin(
        &service,
        ALICE,
        "PUT",
        &format!("/admin/events/{event}"),
        Some(json!({"name": "Audited", "state": "paused",
                    "activation": {"batch_size": 5, "interval_ms": 1000}})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = admin(
        &service,
        BOB,
        "PUT",
        &format!("/admin/events/{event}"),
        Some(json!({"state": "open", "activation": {"batch_size": 50}})),
    )
    .await;
    assert_eq!(status, 200);
    // A refused change changes nothing and is not logged.
    let (status, body) = admin(
        &service,
        BOB,
        "PUT",
        &format!("/admin/events/{event}"),
        Some(json!({"activation": {"batch_size": 0}})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // A scheduled shuffle has a secret seed until the start: the log never shows it.
    let start = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let opens = chrono::Utc::now().to_rfc3339();
    let (status, body) = admin(
        &service,
        ALICE,
        "PUT",
        &format!("/admin/events/{event}"),
        Some(
            json!({"schedule": {"prequeue_opens_at": opens, "sale_starts_at": start,
                                 "order": "shuffle_prequeue"}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let log = audit(&service, &format!("?event_id={event}")).await;
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{log}");
    // Newest first.
    let (scheduled, opened, created) = (&entries[0], &entries[1], &entries[2]);
    assert_eq!(created["actor"], "alice");
    assert_eq!(created["action"], "event_created");
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["event"]["state"], "paused");
    assert_eq!(created["after"]["queue"]["batch_size"], 5);
    assert_eq!(opened["actor"], "bob");
    assert_eq!(opened["action"], "event_updated");
    assert_eq!(opened["before"]["event"]["state"], "paused");
    assert_eq!(opened["after"]["event"]["state"], "open");
    assert_eq!(opened["before"]["queue"]["batch_size"], 5);
    assert_eq!(opened["after"]["queue"]["batch_size"], 50);
    assert_eq!(scheduled["actor"], "alice");
    assert_eq!(
        scheduled["after"]["event"]["queue_order"], "shuffle_prequeue",
        "{scheduled}"
    );
    assert!(
        scheduled["after"]["event"]["sale_starts_at"].is_string(),
        "{scheduled}"
    );
    let text = log.to_string();
    assert!(!text.contains("draw_seed"), "the seed stays secret: {text}");
    for entry in entries {
        assert!(
            entry["audit_id"].as_i64().is_some() && entry["at"].is_string(),
            "{entry}"
        );
        assert_eq!(entry["event_id"], event);
    }

    // Pages: newest first, `next` continues below the last id.
    let page = audit(&service, &format!("?event_id={event}&limit=2")).await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(2));
    let next = page["next"].as_i64().expect("a next page");
    let rest = audit(
        &service,
        &format!("?event_id={event}&limit=2&before={next}"),
    )
    .await;
    assert_eq!(rest["entries"][0]["action"], "event_created");
    assert_eq!(rest["next"], Value::Null);

    // The partition mapping and deletion are logged too.
    let (status, body) = admin(
        &service,
        BOB,
        "PUT",
        &format!("/admin/events/{event}"),
        Some(json!({"schedule": null, "state": "closed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let log = audit(&service, &format!("?event_id={event}&limit=1")).await;
    assert_eq!(log["entries"][0]["after"]["event"]["state"], "closed");

    // Refusals of the query itself are JSON with a code.
    for query in [
        "?limit=0",
        "?limit=501",
        "?before=abc",
        "?event_id=no%20spaces",
    ] {
        let (status, body) = admin(
            &service,
            ALICE,
            "GET",
            &format!("/admin/audit{query}"),
            None,
        )
        .await;
        assert!(status == 422 || status == 400, "{query}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
    // Without a known token, nothing.
    let (status, _) = admin(&service, "nobody", "GET", "/admin/audit", None).await;
    assert_eq!(status, 401);
    service.stop().await.expect("clean shutdown");
}

/// An operator's live stats stream for one event (as `alice`), read frame by frame.
struct StatsStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl StatsStream {
    async fn open(service: &RunningService, event_id: &str) -> Self {
        let response = reqwest::Client::new()
            .get(service.url(&format!("/admin/events/{event_id}/stats/events")))
            .bearer_auth(ALICE)
            .send()
            .await
            .expect("stats stream");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(|bytes| bytes.to_vec()))
                .boxed(),
            buffer: String::new(),
        }
    }

    /// The data of the next frame named `name`; `None` when the stream ends.
    async fn next_named(&mut self, name: &str) -> Option<Value> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let event = frame.lines().find_map(|line| line.strip_prefix("event: "));
                let data = frame.lines().find_map(|line| line.strip_prefix("data: "));
                if event == Some(name) {
                    return data.and_then(|data| serde_json::from_str(data).ok());
                }
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `stats` frame that has `field`, within 30 s (the stream going on
    /// meanwhile).
    async fn next_stats_with(&mut self, field: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let frame = self.next_named("stats").await.expect("the stream goes on");
                if frame.get(field).is_some() {
                    return frame;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no stats frame with {field} within 30 s"))
    }
}

fn hgetall_calls(info: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_hgetall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_hundred_consoles_share_one_aggregation() {
    let env = TestEnv::new().await;
    let redis = PrivateRedis::start().await;
    let service = start(&env, Some(&redis)).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("watched", json!({"state": "paused"}))
        .await;
    let mut viewers = Vec::new();
    for _ in 0..200 {
        viewers.push(StatsStream::open(&service, "watched").await);
    }
    let redis_client = redis::Client::open(redis.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let info = |mut connection: redis::aio::MultiplexedConnection| async move {
        redis::cmd("INFO")
            .arg("commandstats")
            .query_async::<String>(&mut connection)
            .await
            .expect("INFO")
    };
    let calls_before = hgetall_calls(&info(redis_client.clone()).await);
    let started = Instant::now();

    // Three fans join; every console sees it.
    for _ in 0..3 {
        client.join_ok("watched", None).await;
    }
    for viewer in &mut viewers {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), viewer.next_named("stats"))
                .await
                .expect("a frame within seconds")
                .expect("the stream goes on");
            assert_eq!(frame["event"]["event_id"], "watched");
            if frame["event"]["joined"] == 3 {
                assert_eq!(frame["event"]["waiting"], 3, "{frame}");
                assert!(frame["sale"]["seats_sold"].is_i64(), "{frame}");
                break;
            }
            assert!(Instant::now() < deadline, "never saw the joins: {frame}");
        }
    }
    let calls = hgetall_calls(&info(redis_client.clone()).await) - calls_before;
    let elapsed = started.elapsed().as_secs();
    // One read of the event's counters per second for everyone: 200 viewers reading
    // for themselves would be hundreds a second.
    assert!(calls >= 1, "the aggregator read the counters");
    assert!(
        calls <= elapsed + 2,
        "{calls} counter reads in {elapsed} s for 200 viewers"
    );

    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_deleted_event_ends_its_stats_streams() {
    let env = TestEnv::new().await;
    let mut config = support::waiting_room_config(&env);
    config.admin_tokens = vec![format!("alice={ALICE}")];
    config.event_settle_seconds = 1;
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("short-lived", json!({"state": "closed"}))
        .await;
    let mut stream = StatsStream::open(&service, "short-lived").await;
    let first = stream.next_named("stats").await.expect("a frame");
    assert_eq!(first["event"]["state"], "closed");
    let deleted = testkit::wait::until(
        "the closed event settles and is deleted",
        Duration::from_secs(30),
        || async {
            let (status, _) =
                admin(&service, ALICE, "DELETE", "/admin/events/short-lived", None).await;
            (status == 204).then_some(())
        },
    );
    deleted.await;
    let gone = tokio::time::timeout(Duration::from_secs(10), stream.next_named("gone"))
        .await
        .expect("gone within seconds");
    assert_eq!(gone, Some(json!({"gone": true})));
    let after = tokio::time::timeout(Duration::from_secs(10), stream.body.next())
        .await
        .expect("the stream ends");
    assert!(after.is_none(), "nothing after gone: {after:?}");
    // A stream for an event that does not exist is refused outright.
    let (status, body) = admin(
        &service,
        ALICE,
        "GET",
        "/admin/events/short-lived/stats/events",
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "event_not_found");
    service.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_report_kafka_cannot_give_is_refused_and_a_stats_frame_says_redis_is_down() {
    let env = TestEnv::new().await;
    let redis = PrivateRedis::start().await;
    let mut config = support::waiting_room_config(&env);
    config.admin_tokens = vec![format!("alice={ALICE}")];
    redis.configure(&mut config.common);
    // A deployment whose decisions topic was never created.
    config.common.decisions_topic = format!("{}.missing-decisions", env.common.tickets_topic);
    let service = support::start_waiting_room(config).await;
    let client = WaitingRoomClient::new(&service, &env);
    client
        .put_event("unreportable", json!({"state": "open"}))
        .await;
    let (status, body) = admin(
        &service,
        ALICE,
        "POST",
        "/admin/events/unreportable/report",
        None,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "report_unavailable", "{body}");
    let (status, body) = admin(
        &service,
        ALICE,
        "GET",
        "/admin/events/unreportable/report",
        None,
    )
    .await;
    assert_eq!(status, 404, "nothing stored: {body}");

    // Redis stops answering while a console watches: the stream goes on and says so.
    let mut stream = StatsStream::open(&service, "unreportable").await;
    stream
        .next_named("stats")
        .await
        .expect("a frame while Redis answers");
    redis.pause();
    let unavailable = stream.next_stats_with("unavailable").await;
    assert!(unavailable["unavailable"].is_string(), "{unavailable}");
    redis.resume();
    let recovered = stream.next_stats_with("event").await;
    assert_eq!(recovered["event"]["event_id"], "unreportable");
    service.stop().await.expect("clean shutdown");
}
