//! The whole stack for one test: the three services in-process on port-0 listeners,
//! over the test's own slice of the real services. Each service is started the way its
//! own tests start it (their `tests/support`, included here).
#![allow(dead_code)] // each test binary uses its own subset

#[path = "../../../activator/tests/support/mod.rs"]
pub mod activator;
#[path = "../../../waiting-room/tests/support/mod.rs"]
pub mod entry_api;
pub mod process;
#[path = "../../../reservation/tests/support/mod.rs"]
pub mod reservations;

use std::time::Duration;

use e2e::sse::EventStream;
use reservation::ReservationConfig;
use testkit::client::WaitingRoomClient;
use testkit::service::Endpoint;
use testkit::{RunningService, TestEnv};
use waiting_room::WaitingRoomConfig;

pub struct Stack {
    pub waiting_room: RunningService,
    pub activator: RunningService,
    pub reservation: RunningService,
    // Dropped last: the services above must stop before their topics are deleted.
    pub env: TestEnv,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the stack after `configure` adjusted the waiting-room's settings.
    pub async fn start_with(configure: impl FnOnce(&mut WaitingRoomConfig)) -> Self {
        Self::start_configured(configure, |_| {}).await
    }

    /// Starts the stack with both fan-facing services' settings adjusted.
    pub async fn start_configured(
        configure_waiting_room: impl FnOnce(&mut WaitingRoomConfig),
        configure_reservation: impl FnOnce(&mut ReservationConfig),
    ) -> Self {
        let env = TestEnv::new().await;
        let mut config = entry_api::waiting_room_config(&env);
        configure_waiting_room(&mut config);
        let waiting_room = entry_api::start_waiting_room(config).await;
        let activator = activator::start_activator(&env).await;
        let mut config =
            reservations::reservation_config(&env, waiting_room.url("/.well-known/jwks.json"));
        configure_reservation(&mut config);
        let reservation = reservations::start_reservation(config).await;
        Self {
            waiting_room,
            activator,
            reservation,
            env,
        }
    }

    pub fn client(&self) -> WaitingRoomClient<'_> {
        WaitingRoomClient::new(&self.waiting_room, &self.env)
    }

    /// Opens a ticket's live stream; the response as it came (check the status first).
    pub async fn open_stream(&self, token: &str) -> reqwest::Response {
        open_stream(&self.waiting_room, token).await
    }

    /// Opens a ticket's live stream and panics unless it starts.
    pub async fn stream(&self, token: &str) -> EventStream {
        stream(&self.waiting_room, token).await
    }

    /// Stops the services (the activator before the waiting-room, so nothing moves
    /// during shutdown).
    pub async fn stop(self) {
        let Self {
            waiting_room,
            activator,
            reservation,
            env,
        } = self;
        reservation.stop().await.expect("reservation stops cleanly");
        activator.stop().await.expect("activator stops cleanly");
        waiting_room
            .stop()
            .await
            .expect("waiting-room stops cleanly");
        drop(env);
    }
}

/// Opens a ticket's live stream on a waiting-room (an instance or a proxy in front of
/// several); the response as it came (check the status first).
pub async fn open_stream(waiting_room: &dyn Endpoint, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(waiting_room.url(&format!("/v1/tickets/{token}/events")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET ticket events")
}

/// Opens a ticket's live stream on a waiting-room and panics unless it starts.
pub async fn stream(waiting_room: &dyn Endpoint, token: &str) -> EventStream {
    let response = open_stream(waiting_room, token).await;
    assert_eq!(response.status(), 200, "stream refused");
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "not an event stream"
    );
    assert_eq!(
        response.headers()["x-accel-buffering"],
        "no",
        "proxies are told not to buffer the stream"
    );
    EventStream::new(response)
}

/// An event body with one queue of its own and the given activation policy.
pub fn event_body(
    state: &str,
    batch_size: u32,
    interval_ms: u32,
    grace_seconds: u32,
) -> serde_json::Value {
    serde_json::json!({
        "name": "Live position test",
        "state": state,
        "activation": {
            "batch_size": batch_size,
            "interval_ms": interval_ms,
            "active_ttl_seconds": 600,
            "grace_seconds": grace_seconds,
        },
    })
}

/// Holds `seats` with the active ticket `token` and confirms the reservation: a sale.
pub async fn buy(stack: &Stack, event_id: &str, token: &str, seats: &[&str]) {
    let http = reqwest::Client::new();
    let held: serde_json::Value = http
        .post(
            stack
                .reservation
                .url(&format!("/v1/events/{event_id}/reservations")),
        )
        .bearer_auth(token)
        .json(&serde_json::json!({ "seat_ids": seats }))
        .send()
        .await
        .expect("hold")
        .json()
        .await
        .expect("reservation");
    let id = held["reservation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no reservation: {held}"));
    let confirmed = http
        .post(
            stack
                .reservation
                .url(&format!("/v1/reservations/{id}/confirm")),
        )
        .bearer_auth(token)
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200, "the purchase is confirmed");
}

/// Waits up to `limit` for `next` to produce a value.
pub async fn within<T>(limit: Duration, next: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, next).await.expect("in time")
}
