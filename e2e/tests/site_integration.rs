//! The waiting room in front of an existing site: a stand-in checkout in its own
//! process (`external-checkout`, knowing only the JWKS URL, its audience and its site
//! API key) admits active fans by their admission tokens, refuses everything else,
//! frees the slot through the slot API so the next fan gets in, and keeps admitting
//! across a rotation of the waiting room's signing key.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use contract::token::{key_id, AdmissionClaims, TicketSigner};
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use support::{entry_api, Stack};
use testkit::service::Endpoint;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

const SITE: &str = "https://shop.example";
const OTHER_SITE: &str = "https://other.example";
const PATIENCE: Duration = Duration::from_secs(30);

/// The stand-in checkout, killed when dropped.
struct Checkout {
    _process: tokio::process::Child,
    base_url: String,
    http: reqwest::Client,
}

impl Checkout {
    async fn start(waiting_room: &dyn Endpoint, api_key: &str) -> Self {
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_external-checkout"))
            .env("JWKS_URL", waiting_room.url("/.well-known/jwks.json"))
            .env("AUDIENCE", SITE)
            .env("WAITING_ROOM_URL", waiting_room.url(""))
            .env("SITE_API_KEY", api_key)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start external-checkout");
        let stdout = process.stdout.take().expect("stdout");
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("read stdout")
            .expect("the checkout says where it listens");
        let address = line.strip_prefix("listening on ").expect("listening line");
        Self {
            _process: process,
            base_url: format!("http://{address}"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("checkout answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn checkout(&self, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, "/checkout", token).await
    }

    async fn buy(&self, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/buy", token).await
    }

    async fn leave(&self, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/leave", token).await
    }
}

/// The guide's Node (jose) and Java (JDK) verifiers, run on `token`: for each, whether
/// it admitted the fan and what it printed.
async fn guide_verifiers(
    waiting_room: &dyn Endpoint,
    token: &str,
) -> Vec<(&'static str, bool, String)> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/integration");
    let jwks = waiting_room.url("/.well-known/jwks.json");
    let node = examples.join("node/verify-admission.mjs");
    let java = examples.join("java/VerifyAdmission.java");
    let mut verdicts = Vec::new();
    for (name, program, script) in [("node", "node", node), ("java", "java", java)] {
        let output = tokio::process::Command::new(program)
            .arg(&script)
            .args([jwks.as_str(), SITE, token])
            .output()
            .await
            .unwrap_or_else(|error| {
                panic!("run {program} (deploy/local.sh test installs it): {error}")
            });
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            printed.contains("admitted") || printed.contains("refused"),
            "{name} failed to run: {printed} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        verdicts.push((name, output.status.success(), printed));
    }
    verdicts
}

/// nginx running the guide's `protect-checkout.conf`, with the checkout as both the
/// verifier and the protected application; stopped when dropped.
struct Nginx {
    _process: tokio::process::Child,
    prefix: std::path::PathBuf,
    port: u16,
}

impl Nginx {
    async fn start(checkout: &Checkout) -> Self {
        let guide = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/integration/nginx/protect-checkout.conf");
        let checkout_address = checkout.base_url.trim_start_matches("http://");
        let port = testkit::service::free_port();
        let server = std::fs::read_to_string(guide)
            .expect("the guide's nginx file")
            .replace("127.0.0.1:8088", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9000", checkout_address)
            .replace("127.0.0.1:9100", checkout_address);
        let prefix = std::env::temp_dir().join(format!("nginx-{}", Uuid::now_v7()));
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
        std::fs::write(prefix.join("server.conf"), server).expect("server block");
        std::fs::write(
            prefix.join("nginx.conf"),
            "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log stderr warn;\n\
             events {}\nhttp {\n    access_log off;\n    include server.conf;\n}\n",
        )
        .expect("nginx.conf");
        let process = tokio::process::Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .args(["-c", "nginx.conf"])
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx (deploy/local.sh test installs nginx-light)");
        testkit::service::wait_for_port(port, "nginx").await;
        Self {
            _process: process,
            prefix,
            port,
        }
    }

    async fn get(&self, path_and_query: &str) -> u16 {
        reqwest::get(format!("http://127.0.0.1:{}{path_and_query}", self.port))
            .await
            .expect("nginx answers")
            .status()
            .as_u16()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

fn shop_event(max_active: u32) -> Value {
    json!({
        "state": "open",
        "activation": {"batch_size": 10, "interval_ms": 100, "max_active": max_active,
                       "active_ttl_seconds": 600, "grace_seconds": 600},
        "seats": {"rows": 1, "seats_per_row": 10},
        "admission": {"audience": SITE, "return_url": "https://shop.example/checkout?step=1",
                      "token_in": "query"},
    })
}

/// Creates a site API key through the admin API: `(key_id, api_key)`.
async fn site_key(stack: &Stack, audience: &str) -> (String, String) {
    let response = reqwest::Client::new()
        .post(stack.waiting_room.url("/admin/site-keys"))
        .bearer_auth(&stack.env.admin_token)
        .json(&json!({"audience": audience, "label": format!("checkout of {audience}")}))
        .send()
        .await
        .expect("POST /admin/site-keys");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("JSON");
    assert!(body.get("secret_hash").is_none(), "{body}");
    (
        body["key_id"].as_str().expect("key_id").to_owned(),
        body["api_key"].as_str().expect("api_key").to_owned(),
    )
}

/// `POST /v1/admissions/{jti}/{action}` with `key`: status and error code (or state).
async fn slot(stack: &Stack, jti: &str, action: &str, key: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(
        stack
            .waiting_room
            .url(&format!("/v1/admissions/{jti}/{action}")),
    );
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("slot API answers");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    let said = body["error"]["code"]
        .as_str()
        .or(body["state"].as_str())
        .unwrap_or_default()
        .to_owned();
    (status, said)
}

/// Polls the ticket's status (which marks it received) until it is `wanted`.
async fn wait_for(waiting_room: &dyn Endpoint, token: &str, wanted: &str) -> Value {
    let started = Instant::now();
    loop {
        let status: Value = reqwest::get(waiting_room.url(&format!("/v1/tickets/{token}")))
            .await
            .expect("status")
            .json()
            .await
            .expect("JSON");
        if status["state"] == wanted {
            return status;
        }
        assert!(started.elapsed() < PATIENCE, "never {wanted}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn join(stack: &Stack, event_id: &str) -> (String, String) {
    let ticket = stack.client().join_ok(event_id, None).await;
    (
        ticket["token"].as_str().expect("token").to_owned(),
        ticket["ticket_id"].as_str().expect("ticket_id").to_owned(),
    )
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64");
    let header: Value = serde_json::from_slice(&bytes).expect("JSON");
    header["kid"].as_str().expect("kid").to_owned()
}

fn admission_token(status: &Value) -> String {
    status["admission_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no admission token: {status}"))
        .to_owned()
}

#[tokio::test]
async fn an_external_checkout_admits_only_active_fans_and_frees_their_slot_for_the_next() {
    let stack = Stack::start_configured(
        |_| {},
        |reservation| reservation.admission_audiences = vec![SITE.to_owned()],
    )
    .await;
    let client = stack.client();
    client.put_event("shop", shop_event(1)).await;
    client
        .put_event(
            "elsewhere",
            json!({"state": "passthrough", "admission": {"audience": OTHER_SITE}}),
        )
        .await;
    let (key_id, key) = site_key(&stack, SITE).await;
    let (_, other_key) = site_key(&stack, OTHER_SITE).await;
    let checkout = Checkout::start(&stack.waiting_room, &key).await;

    let (first_ticket, first_id) = join(&stack, "shop").await;
    let (second_ticket, second_id) = join(&stack, "shop").await;
    let (third_ticket, _) = join(&stack, "shop").await;
    let first = wait_for(&stack.waiting_room, &first_ticket, "active").await;
    let second = wait_for(&stack.waiting_room, &second_ticket, "waiting").await;
    wait_for(&stack.waiting_room, &third_ticket, "waiting").await;
    let admission = admission_token(&first);
    assert_eq!(
        first["return_url"],
        format!("https://shop.example/checkout?step=1&admission_token={admission}")
    );
    assert!(second.get("admission_token").is_none(), "{second}");

    // Admitted: the checkout reads the ticket id, and our reservation service takes
    // the same token.
    let (status, admitted) = checkout.checkout(&admission).await;
    assert_eq!(
        (status, admitted["admitted"].as_str()),
        (200, Some(first_id.as_str()))
    );
    assert_eq!(
        admitted["sub"],
        Value::Null,
        "an anonymous fan has no subject"
    );
    for (verifier, admits, printed) in guide_verifiers(&stack.waiting_room, &admission).await {
        assert!(
            admits && printed.contains(&first_id),
            "{verifier}: {printed}"
        );
    }
    // The guide's nginx `auth_request` lets the admitted fan through, no one else.
    let nginx = Nginx::start(&checkout).await;
    assert_eq!(
        nginx
            .get(&format!("/checkout?admission_token={admission}"))
            .await,
        200
    );
    assert_eq!(
        nginx
            .get(&format!("/checkout?admission_token={first_ticket}"))
            .await,
        401
    );
    assert_eq!(nginx.get("/checkout").await, 401);
    drop(nginx);
    let held = reqwest::Client::new()
        .post(stack.reservation.url("/v1/events/shop/reservations"))
        .bearer_auth(&admission)
        .json(&json!({"seat_ids": ["A-1"]}))
        .send()
        .await
        .expect("hold");
    assert_eq!(
        held.status(),
        201,
        "the reservation service takes an admission token"
    );

    // Refused: anything but an admission token for this site, signed by the waiting room.
    let (elsewhere_ticket, elsewhere_id) = join(&stack, "elsewhere").await;
    let elsewhere =
        admission_token(&wait_for(&stack.waiting_room, &elsewhere_ticket, "active").await);
    let foreign_hold = reqwest::Client::new()
        .post(stack.reservation.url("/v1/events/elsewhere/reservations"))
        .bearer_auth(&elsewhere)
        .json(&json!({"seat_ids": ["A-1"]}))
        .send()
        .await
        .expect("hold");
    assert_eq!(
        foreign_hold.status(),
        401,
        "the reservation service takes only the admissions of the sites it is told to"
    );
    let now = chrono::Utc::now().timestamp();
    let claims: AdmissionClaims = {
        let payload = admission.split('.').nth(1).expect("payload");
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("claims")
    };
    let ours = TicketSigner::new(stack.env.signing_key.clone());
    let forger = SigningKey::from_bytes(&rand::random());
    let forged = TicketSigner::new(forger.clone()).sign(&claims);
    let parts: Vec<&str> = admission.split('.').collect();
    let forged_parts: Vec<&str> = forged.split('.').collect();
    let cases = [
        ("a waiting fan's ticket", second_ticket.clone()),
        ("an active fan's ticket token", first_ticket.clone()),
        ("another site's admission", elsewhere),
        ("signed by another key", forged.clone()),
        (
            "another key's signature under our key id",
            format!("{}.{}.{}", parts[0], parts[1], forged_parts[2]),
        ),
        (
            "expired",
            ours.sign(&AdmissionClaims {
                exp: now - 120,
                ..claims.clone()
            }),
        ),
        (
            "for another audience",
            ours.sign(&AdmissionClaims {
                aud: OTHER_SITE.into(),
                ..claims.clone()
            }),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (name, token) in cases {
        let (status, body) = checkout.checkout(&token).await;
        assert_eq!(status, 401, "{name}: {body}");
        for (verifier, admits, printed) in guide_verifiers(&stack.waiting_room, &token).await {
            assert!(!admits, "{verifier} admitted {name}: {printed}");
        }
    }

    // The slot API: only this site's key settles this site's admissions.
    for (name, jti, used_key, expected) in [
        ("no key", first_id.as_str(), None, (401, "invalid_api_key")),
        (
            "a made-up key",
            &first_id,
            Some("wrsk_0000000000000000_nope"),
            (401, "invalid_api_key"),
        ),
        (
            "another site's key",
            &first_id,
            Some(other_key.as_str()),
            (404, "admission_not_found"),
        ),
        (
            "another site's admission",
            &elsewhere_id,
            Some(key.as_str()),
            (404, "admission_not_found"),
        ),
        (
            "an unknown ticket",
            &Uuid::now_v7().to_string(),
            Some(&key),
            (404, "admission_not_found"),
        ),
        (
            "not a ticket id",
            "not-a-uuid",
            Some(&key),
            (404, "admission_not_found"),
        ),
        (
            "a waiting ticket",
            &second_id,
            Some(&key),
            (404, "admission_not_found"),
        ),
    ] {
        let (status, code) = slot(&stack, jti, "complete", used_key).await;
        assert_eq!((status, code.as_str()), expected, "{name}");
    }

    // The fan buys: the slot frees at once and the next fan, following their stream,
    // is let in with an admission token in the `active` event.
    let mut next_stream = stack.stream(&second_ticket).await;
    assert_eq!(checkout.buy(&admission).await.1["state"], "used");
    let active_event = support::within(PATIENCE, async {
        loop {
            let event = next_stream.next_event().await.expect("the stream goes on");
            if event.event == "active" {
                return event.json();
            }
        }
    })
    .await;
    let streamed = admission_token(&active_event);
    assert_eq!(checkout.checkout(&streamed).await.0, 200, "{active_event}");
    let (status, again) = checkout.buy(&admission).await;
    assert_eq!(
        (status, &again["state"]),
        (200, &json!("used")),
        "idempotent: {again}"
    );
    assert_eq!(
        slot(&stack, &first_id, "release", Some(&key)).await,
        (409, "admission_not_active".to_owned())
    );
    let next = admission_token(&wait_for(&stack.waiting_room, &second_ticket, "active").await);
    assert_eq!(checkout.checkout(&next).await.0, 200);

    // The next fan leaves instead: their slot goes to the third.
    assert_eq!(checkout.leave(&next).await.1["state"], "released");
    assert_eq!(checkout.leave(&next).await.0, 200, "idempotent");
    wait_for(&stack.waiting_room, &second_ticket, "released").await;
    let third = admission_token(&wait_for(&stack.waiting_room, &third_ticket, "active").await);
    assert_eq!(checkout.checkout(&third).await.0, 200);
    assert_eq!(
        slot(&stack, &second_id, "complete", Some(&key)).await,
        (409, "admission_not_active".to_owned())
    );

    // A revoked key stops working at once; the list never shows a secret.
    let revoked = reqwest::Client::new()
        .delete(
            stack
                .waiting_room
                .url(&format!("/admin/site-keys/{key_id}")),
        )
        .bearer_auth(&stack.env.admin_token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        slot(&stack, &first_id, "complete", Some(&key)).await,
        (401, "invalid_api_key".to_owned())
    );
    let listed = client.admin_get("/admin/site-keys").await;
    let keys = listed["site_keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(!listed.to_string().contains(
        key.trim_start_matches("wrsk_")
            .split('_')
            .nth(1)
            .expect("secret")
    ));
    let revoked_entry = keys
        .iter()
        .find(|entry| entry["key_id"] == key_id.as_str())
        .expect("listed");
    assert!(revoked_entry["revoked_at"].is_string(), "{revoked_entry}");
    let audit = client.admin_get("/admin/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"site_key_created") && actions.contains(&"site_key_revoked"),
        "{actions:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_rotated_signing_key_keeps_admitting_fans_with_tokens_of_the_previous_key() {
    let port = testkit::service::free_port();
    let stack = Stack::start_with(|config| config.listen = ([127, 0, 0, 1], port).into()).await;
    stack.client().put_event("rotating", shop_event(10)).await;
    let (_, key) = site_key(&stack, SITE).await;
    let checkout = Checkout::start(&stack.waiting_room, &key).await;
    let (ticket, _) = join(&stack, "rotating").await;
    let before = admission_token(&wait_for(&stack.waiting_room, &ticket, "active").await);
    assert_eq!(checkout.checkout(&before).await.0, 200);

    // The operator rotates: a new signing key, the old one still published.
    let Stack {
        waiting_room,
        activator,
        reservation,
        env,
    } = stack;
    waiting_room.stop().await.expect("clean shutdown");
    let directory = std::env::temp_dir().join(format!("rotation-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&directory).expect("key directory");
    let new_key = SigningKey::from_bytes(&rand::random());
    let env_key_before = env.signing_key.verifying_key();
    let new_key_file = directory.join("new.pem");
    let old_public_file = directory.join("old.pub.pem");
    let pem = new_key.to_pkcs8_pem(Default::default()).expect("PEM");
    std::fs::write(&new_key_file, pem.as_bytes()).expect("write");
    let old_public = env
        .signing_key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .expect("PEM");
    std::fs::write(&old_public_file, old_public).expect("write");
    let mut config = entry_api::waiting_room_config(&env);
    config.listen = ([127, 0, 0, 1], port).into();
    config.signing_key_file = Some(new_key_file);
    config.previous_public_key_files = vec![old_public_file];
    let waiting_room = entry_api::start_waiting_room(config).await;
    let stack = Stack {
        waiting_room,
        activator,
        reservation,
        env,
    };

    let after = admission_token(&wait_for(&stack.waiting_room, &ticket, "active").await);
    assert_eq!(
        kid_of(&before),
        key_id(&env_key_before),
        "signed with the old key"
    );
    assert_eq!(
        kid_of(&after),
        key_id(&new_key.verifying_key()),
        "signed with the new key"
    );
    let started = Instant::now();
    // The checkout refetches the keys on the new key id (at most every 2 s).
    while checkout.checkout(&after).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new key is never accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        checkout.checkout(&before).await.0,
        200,
        "the previous key's tokens still admit"
    );
    assert_eq!(checkout.buy(&after).await.1["state"], "used");
    stack.stop().await;
    let _ = std::fs::remove_dir_all(directory);
}
