//! Proof-of-work challenges against the real Redis, Kafka and PostgreSQL: required,
//! verified, bound to their event, and accepted once across instances.

mod support;

use altcha::{solve_challenge, Payload, SolveChallengeOptions};
use serde_json::{json, Value};
use testkit::client::WaitingRoomClient;
use testkit::TestEnv;

async fn challenge(client: &WaitingRoomClient<'_>, event_id: &str) -> Value {
    let response = client
        .http
        .get(
            client
                .service
                .url(&format!("/v1/events/{event_id}/challenge")),
        )
        .send()
        .await
        .expect("GET challenge");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// Solves like a fan's browser would, from the challenge as served.
fn solve(issued: &Value) -> Value {
    let challenge: altcha::Challenge =
        serde_json::from_value(issued["challenge"].clone()).expect("an ALTCHA challenge");
    let solution = solve_challenge(SolveChallengeOptions::new(&challenge))
        .expect("solve")
        .expect("solved in time");
    serde_json::to_value(Payload {
        challenge,
        solution,
    })
    .expect("JSON")
}

async fn join_with(client: &WaitingRoomClient<'_>, event_id: &str, body: &Value) -> (u16, Value) {
    let response = client
        .http
        .post(
            client
                .service
                .url(&format!("/v1/events/{event_id}/tickets")),
        )
        .json(body)
        .send()
        .await
        .expect("POST join");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_join_needs_a_fresh_solved_challenge_for_its_event() {
    let env = TestEnv::new().await;
    let first = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let second = support::start_waiting_room(support::waiting_room_config(&env)).await;
    let on_first = WaitingRoomClient::new(&first, &env);
    let on_second = WaitingRoomClient::new(&second, &env);
    let entry = json!({"entry": {"challenge": "proof_of_work", "challenge_difficulty": 300}});
    let view = on_first.put_event("costly", entry.clone()).await;
    assert_eq!(view["entry"]["challenge"], "proof_of_work");
    assert_eq!(view["entry"]["challenge_difficulty"], 300);
    on_first.put_event("costly-too", entry).await;
    on_second.wait_for_event("costly").await;

    let (status, body) = join_with(&on_first, "costly", &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("challenge_required"))
    );

    let issued = challenge(&on_first, "costly").await;
    assert_eq!(issued["difficulty"], 300);
    let solved = solve(&issued);
    let (status, ticket) = join_with(&on_first, "costly", &json!({"proof_of_work": solved})).await;
    assert_eq!(status, 201, "{ticket}");

    // Once only, whichever instance sees it again.
    let (status, body) = join_with(&on_second, "costly", &json!({"proof_of_work": solved})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("challenge_failed")),
        "{body}"
    );

    // Bound to its event; altered or wrong answers are refused.
    let other = solve(&challenge(&on_second, "costly").await);
    let (status, _) = join_with(&on_first, "costly-too", &json!({"proof_of_work": other})).await;
    assert_eq!(status, 403);
    let mut easier = solve(&challenge(&on_first, "costly").await);
    easier["challenge"]["parameters"]["keyPrefix"] = json!("0");
    let (status, _) = join_with(&on_first, "costly", &json!({"proof_of_work": easier})).await;
    assert_eq!(status, 403);
    let mut wrong = solve(&challenge(&on_first, "costly").await);
    wrong["solution"]["derivedKey"] = json!("00".repeat(32));
    let (status, body) = join_with(&on_first, "costly", &json!({"proof_of_work": wrong})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("challenge_failed"))
    );
    // A body that is no challenge at all is a bad request, not a crash.
    let (status, _) = join_with(&on_first, "costly", &json!({"proof_of_work": "hello"})).await;
    assert_eq!(status, 422);

    // The solution `other` was refused for the wrong event, not spent: it still works
    // for its own.
    let (status, _) = join_with(&on_second, "costly", &json!({"proof_of_work": other})).await;
    assert_eq!(status, 201);
    assert_eq!(on_first.get_event("costly").await["joined"], 2);
    assert_eq!(on_first.get_event("costly-too").await["joined"], 0);

    let unknown = on_first
        .http
        .get(first.url("/v1/events/nowhere/challenge"))
        .send()
        .await
        .expect("GET");
    assert_eq!(unknown.status(), 404);
    first.stop().await.expect("clean shutdown");
    second.stop().await.expect("clean shutdown");
}
