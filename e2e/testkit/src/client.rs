//! Admin and fan calls against a running waiting-room, over HTTP like any client.

use crate::env::TestEnv;
use crate::service::Endpoint;

/// Admin and fan calls against a running waiting-room (in-process, in a child process or
/// behind a proxy), for tests.
pub struct WaitingRoomClient<'a> {
    pub service: &'a dyn Endpoint,
    pub admin_token: &'a str,
    pub http: reqwest::Client,
}

impl<'a> WaitingRoomClient<'a> {
    pub fn new(service: &'a dyn Endpoint, env: &'a TestEnv) -> Self {
        Self {
            service,
            admin_token: &env.admin_token,
            http: reqwest::Client::new(),
        }
    }

    /// `PUT /admin/events/{event_id}`; panics unless it succeeds.
    pub async fn put_event(&self, event_id: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .http
            .put(self.service.url(&format!("/admin/events/{event_id}")))
            .bearer_auth(self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("PUT /admin/events");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert!(
            status.is_success(),
            "PUT /admin/events/{event_id}: {status} {body}"
        );
        body
    }

    /// `GET /admin/events/{event_id}`: configuration and live statistics.
    pub async fn get_event(&self, event_id: &str) -> serde_json::Value {
        self.admin_get(&format!("/admin/events/{event_id}")).await
    }

    /// `GET path` with the admin token: the JSON body.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.service.url(path))
            .bearer_auth(self.admin_token)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
            .json()
            .await
            .expect("JSON body")
    }

    /// Waits until this instance's catalog has `event_id` (another instance created it;
    /// configuration reaches every instance through PostgreSQL's LISTEN/NOTIFY).
    pub async fn wait_for_event(&self, event_id: &str) {
        let url = self.service.url(&format!("/v1/events/{event_id}"));
        crate::wait::until_true(
            &format!("event {event_id} in this instance's catalog"),
            std::time::Duration::from_secs(10),
            || async {
                self.http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            },
        )
        .await;
    }

    /// `POST /v1/events/{event_id}/tickets` with an optional user id.
    pub async fn join(&self, event_id: &str, user_id: Option<&str>) -> reqwest::Response {
        let request = self
            .http
            .post(self.service.url(&format!("/v1/events/{event_id}/tickets")));
        let request = match user_id {
            Some(user_id) => request.json(&serde_json::json!({ "user_id": user_id })),
            None => request,
        };
        request.send().await.expect("POST join")
    }

    /// `POST /v1/events/{event_id}/tickets` with an enqueue token.
    pub async fn join_with_token(&self, event_id: &str, enqueue_token: &str) -> reqwest::Response {
        self.http
            .post(self.service.url(&format!("/v1/events/{event_id}/tickets")))
            .json(&serde_json::json!({ "enqueue_token": enqueue_token }))
            .send()
            .await
            .expect("POST join")
    }

    /// Joins and returns the ticket; panics unless the join succeeds.
    pub async fn join_ok(&self, event_id: &str, user_id: Option<&str>) -> serde_json::Value {
        let response = self.join(event_id, user_id).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert!(status.is_success(), "join {event_id}: {status} {body}");
        body
    }

    /// `GET /v1/tickets/{token}`.
    pub async fn status(&self, token: &str) -> reqwest::Response {
        self.http
            .get(self.service.url(&format!("/v1/tickets/{token}")))
            .send()
            .await
            .expect("GET status")
    }
}
