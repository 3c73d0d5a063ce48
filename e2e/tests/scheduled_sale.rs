//! A scheduled, shuffled on-sale end to end: 2,000 fans join the pre-queue through the
//! entry API; the sale opens by itself; the draw gives them a permutation of the places
//! that does not follow arrival order; `verify-draw` recomputes every place from the
//! Kafka records and the published seed; the activator serves them in drawn order.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use contract::draw::DrawSeed;
use futures::StreamExt;
use serde_json::{json, Value};
use support::Stack;
use testkit::wait::until;
use uuid::Uuid;
use waiting_room::draw_audit::VerifyDraw;

const FANS: usize = 2_000;

/// Chi-square of a 10 x 10 table of arrival decile against drawn-place decile.
fn chi_square_of_deciles(pairs: &[(usize, usize)], size: usize) -> f64 {
    let mut table = [[0u32; 10]; 10];
    for (arrival, place) in pairs {
        table[arrival * 10 / size][place * 10 / size] += 1;
    }
    let expected = pairs.len() as f64 / 100.0;
    table
        .iter()
        .flatten()
        .map(|&count| (f64::from(count) - expected).powi(2) / expected)
        .sum()
}

/// Spearman's rank correlation of two permutations of `0..n`.
fn spearman(pairs: &[(usize, usize)]) -> f64 {
    let n = pairs.len() as f64;
    let squared: f64 = pairs
        .iter()
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    1.0 - 6.0 * squared / (n * (n * n - 1.0))
}

#[tokio::test]
async fn a_shuffled_pre_queue_is_a_fair_verifiable_draw_served_in_drawn_order() {
    let stack = Stack::start().await;
    let client = stack.client();
    let now = Utc::now();
    client
        .put_event(
            "drawn-sale",
            json!({
                "activation": {"batch_size": 200, "interval_ms": 100,
                               "active_ttl_seconds": 3600, "grace_seconds": 3600},
                "schedule": {
                    "prequeue_opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
                    "sale_starts_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
                    "order": "shuffle_prequeue",
                },
            }),
        )
        .await;

    // The pre-queue: every fan joins, then reads their ticket (so it counts as received).
    // The last fan joins alone: Tansu's high watermark stops at the last batch's first
    // record, and the pre-queue ends at the watermark when the sale starts.
    let client = &client;
    let join = |_| async move {
        let ticket = client.join_ok("drawn-sale", None).await;
        assert_eq!(ticket["state"], "prequeued");
        assert_eq!(ticket["position"], Value::Null);
        let token = ticket["token"].as_str().expect("token").to_owned();
        let status: Value = client.status(&token).await.json().await.expect("JSON");
        assert_eq!(status["state"], "prequeued");
        let claims = token_claims(&token);
        (
            claims["queue_number"].as_i64().expect("offset"),
            ticket["ticket_id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid"),
            token,
        )
    };
    let mut fans: Vec<(i64, Uuid, String)> = futures::stream::iter(1..FANS)
        .map(join)
        .buffer_unordered(16)
        .collect()
        .await;
    fans.push(join(FANS).await);
    fans.sort_by_key(|(offset, _, _)| *offset);

    // A fixed seed, so that the fairness checks below are deterministic (the arrival
    // order is the offsets 0..2000 of the test's own topic): set behind the API's back,
    // as the API always draws a random one.
    let seed = DrawSeed::from_bytes([7; 32]);
    sqlx::query("UPDATE events SET draw_seed = $2 WHERE event_id = $1")
        .bind("drawn-sale")
        .bind(seed.as_bytes().to_vec())
        .execute(&stack.env.postgres)
        .await
        .expect("fix the seed");

    // Opening in two seconds, by itself.
    let mut schedule = client.get_event("drawn-sale").await["schedule"].clone();
    let starts = Utc::now() + chrono::Duration::seconds(2);
    schedule["sale_starts_at"] = starts.to_rfc3339().into();
    client
        .put_event("drawn-sale", json!({"schedule": schedule}))
        .await;
    let public_url = stack.waiting_room.url("/v1/events/drawn-sale");
    let draw = until(
        "the draw to be published",
        Duration::from_secs(30),
        || async {
            let event: Value = reqwest::get(&public_url).await.ok()?.json().await.ok()?;
            let draw = event["draw"].clone();
            draw.get("end_offset").is_some().then_some(draw)
        },
    )
    .await;
    assert_eq!(draw["commitment"], seed.commitment());
    assert_eq!(draw["seed"], seed.to_hex());
    let first = draw["first_offset"].as_i64().expect("first");
    let end = draw["end_offset"].as_i64().expect("end");
    assert_eq!((first, end), (fans[0].0, fans[0].0 + FANS as i64), "{draw}");

    // Every fan has a drawn place; the places are a permutation of the pre-queue's.
    let mut places: HashMap<Uuid, i64> = HashMap::new();
    for (_, ticket_id, token) in &fans {
        let status: Value = client.status(token).await.json().await.expect("JSON");
        assert!(
            matches!(status["state"].as_str(), Some("waiting" | "active")),
            "{status}"
        );
        places.insert(*ticket_id, status["queue_number"].as_i64().expect("drawn"));
    }
    let mut sorted: Vec<i64> = places.values().copied().collect();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (first..end).collect::<Vec<_>>(),
        "not a permutation"
    );

    // Independent of arrival order (the seed and the offsets are fixed, so these
    // figures are the same on every run).
    let pairs: Vec<(usize, usize)> = fans
        .iter()
        .enumerate()
        .map(|(arrival, (_, ticket_id, _))| (arrival, (places[ticket_id] - first) as usize))
        .collect();
    let chi_square = chi_square_of_deciles(&pairs, FANS);
    let rho = spearman(&pairs);
    eprintln!("arrival vs drawn place: chi-square {chi_square:.1} (81 d.f.), Spearman {rho:.4}");
    assert!(
        chi_square < 124.8,
        "chi-square {chi_square} (p < 0.001 at 81 d.f.)"
    );
    assert!(rho.abs() < 0.1, "rank correlation {rho}");

    // Anyone can recompute the places from the records and the seed.
    let verify = VerifyDraw {
        event: "drawn-sale".into(),
        url: stack.waiting_room.url(""),
        seed: None,
        commitment: Some(seed.commitment()),
    };
    let ranked = verify
        .ranks(&stack.env.common)
        .await
        .expect("the draw verifies");
    assert_eq!(ranked.len(), FANS);
    for ticket in &ranked {
        let ticket_id = ticket.ticket_id.expect("every record is a ticket");
        assert_eq!(places[&ticket_id], ticket.queue_number, "{ticket:?}");
    }
    let wrong_seed = VerifyDraw {
        seed: Some("00".repeat(32)),
        ..verify.clone()
    };
    let refused = wrong_seed
        .ranks(&stack.env.common)
        .await
        .expect_err("not the seed");
    assert!(refused.to_string().contains("commitment"), "{refused}");
    let other_commitment = VerifyDraw {
        commitment: Some("ab".repeat(32)),
        ..verify
    };
    let refused = other_commitment
        .ranks(&stack.env.common)
        .await
        .expect_err("a re-rolled seed is caught by the kept commitment");
    assert!(refused.to_string().contains("commitment"), "{refused}");

    // Served in drawn order, nobody before the start.
    let mut previous_until = 0;
    for ticket in &ranked {
        let ticket_id = ticket.ticket_id.expect("ticket");
        let token = &fans
            .iter()
            .find(|(_, id, _)| *id == ticket_id)
            .expect("fan")
            .2;
        let status = until(
            "every fan to be served",
            Duration::from_secs(60),
            || async {
                let status: Value = client.status(token).await.json().await.ok()?;
                (status["state"] == "active").then_some(status)
            },
        )
        .await;
        let until_ms = chrono::DateTime::parse_from_rfc3339(
            status["active_until"].as_str().expect("active_until"),
        )
        .expect("RFC 3339")
        .timestamp_millis();
        assert!(
            until_ms >= previous_until,
            "place {} served out of order",
            ticket.queue_number
        );
        assert!(
            until_ms - 3_600_000 >= starts.timestamp_millis() - 1_000,
            "served before the start"
        );
        previous_until = until_ms;
    }
    client
        .put_event("drawn-sale", json!({"state": "closed"}))
        .await;
    stack.stop().await;
}

/// The claims of a ticket token (the signature is the services' business).
fn token_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
