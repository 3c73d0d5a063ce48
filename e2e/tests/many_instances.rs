//! Two instances of every service, each in its own process, over one test's slice of the
//! real PostgreSQL, Redis and Kafka, with HAProxy in front of the waiting-rooms and the
//! reservation services as `INSTANCES=2 deploy/local.sh up` runs it (the same
//! `deploy/proxy/haproxy.cfg`): a fan joins on one instance and streams on the other;
//! configuration changes reach every instance; a waiting-room killed with SIGKILL loses
//! no acknowledged ticket, and the streams it held come back through the proxy and reach
//! their turn; two activators share the queues and the survivor of a SIGKILL takes them
//! all; a reservation stream sees what the other instance changed; a join rate limit
//! holds across the instances behind the proxy.

mod support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::ticket_record::TicketRecord;
use e2e::sse::{EventStream, SseEvent};
use rdkafka::Message;
use serde_json::{json, Value};
use support::process::{Service, ServiceProcess};
use support::{event_body, within};
use testkit::client::WaitingRoomClient;
use testkit::proxy::Proxy;
use testkit::service::Endpoint;
use testkit::{wait, TestEnv};

const PATIENCE: Duration = Duration::from_secs(30);

/// Not a test: the entry point of the service processes this suite spawns (this test
/// binary, run again; see `support::process`). In a test run it does nothing.
#[test]
fn service_process() {
    support::process::serve_when_spawned();
}

/// Two of each service, each in its own process, and the proxy in front.
struct Deployment {
    waiting_rooms: Vec<ServiceProcess>,
    activators: Vec<ServiceProcess>,
    reservations: Vec<ServiceProcess>,
    proxy: Proxy,
    // Dropped last: the services must stop before their topics are deleted.
    env: TestEnv,
}

impl Deployment {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts the deployment with `waiting_room_flags` added to each waiting-room's.
    async fn start_with(waiting_room_flags: &[&str]) -> Self {
        let env = TestEnv::new().await;
        // Six processes per test and two tests at a time on one PostgreSQL (100
        // connections unless local.sh started it): small pools.
        let pool = || vec!["--database-max-connections".to_owned(), "4".into()];
        let mut flags = pool();
        flags.extend(env.entry_api_args());
        // The proxy is the only peer: its X-Forwarded-For names the client.
        flags.extend(["--trusted-proxies".into(), "127.0.0.1/32".into()]);
        flags.extend(waiting_room_flags.iter().map(|flag| (*flag).to_owned()));
        let waiting_rooms = two(&env, Service::WaitingRoom, &flags).await;
        // The ticket keys are read at start (and every 5 minutes), here from the first
        // waiting-room: the proxy can only start once the reservations listen.
        let mut flags = pool();
        flags.extend([
            "--ticket-jwks-url".into(),
            waiting_rooms[0].url("/.well-known/jwks.json"),
        ]);
        let reservations = two(&env, Service::Reservation, &flags).await;
        let mut flags = pool();
        flags.extend([
            "--group-id".into(),
            format!("{}.activators", env.common.redis_key_prefix),
        ]);
        let activators = two(&env, Service::Activator, &flags).await;
        let proxy = Proxy::start(&addresses(&waiting_rooms), &addresses(&reservations)).await;
        Self {
            waiting_rooms,
            activators,
            reservations,
            proxy,
            env,
        }
    }

    /// Admin and fan calls through the proxy.
    fn client(&self) -> WaitingRoomClient<'_> {
        WaitingRoomClient::new(&self.proxy.waiting_room, &self.env)
    }

    /// Waits until every waiting-room has the event in its catalog.
    async fn wait_everywhere(&self, event_id: &str) {
        for instance in &self.waiting_rooms {
            WaitingRoomClient::new(instance, &self.env)
                .wait_for_event(event_id)
                .await;
        }
    }

    /// Stops every process with SIGTERM (each must exit cleanly), then the proxy.
    async fn stop(self) {
        let Self {
            waiting_rooms,
            activators,
            reservations,
            proxy,
            env,
        } = self;
        // The activators before the waiting-rooms, so nothing moves during shutdown.
        for group in [reservations, activators, waiting_rooms] {
            futures::future::join_all(group.into_iter().map(ServiceProcess::stop)).await;
        }
        drop(proxy);
        drop(env);
    }
}

async fn two(env: &TestEnv, service: Service, flags: &[String]) -> Vec<ServiceProcess> {
    let (first, second) = tokio::join!(
        ServiceProcess::spawn(env, service, flags),
        ServiceProcess::spawn(env, service, flags)
    );
    vec![first, second]
}

fn addresses(instances: &[ServiceProcess]) -> Vec<String> {
    instances
        .iter()
        .map(|instance| instance.address.clone())
        .collect()
}

fn token(ticket: &Value) -> &str {
    ticket["token"].as_str().expect("a token")
}

/// Joins and reads the ticket once, as a fan's page does (a ticket nobody read is
/// passed over by the line); returns the ticket.
async fn join_and_look(client: &WaitingRoomClient<'_>, event_id: &str) -> Value {
    let ticket = client.join_ok(event_id, None).await;
    assert_eq!(client.status(token(&ticket)).await.status(), 200);
    ticket
}

async fn wait_for_state(client: &WaitingRoomClient<'_>, token: &str, wanted: &str) {
    wait::until_true(
        &format!("ticket {wanted}"),
        Duration::from_secs(60),
        || async {
            let status: Value = client.status(token).await.json().await.expect("JSON");
            status["state"] == wanted
        },
    )
    .await;
}

/// Follows a ticket's stream to its terminal event, as a browser's EventSource would:
/// when the stream breaks it opens it again on `reconnect` with the same token. Positions
/// never go up, across reconnections too. Returns the terminal event and how many times
/// the stream was opened again.
async fn follow(
    mut stream: EventStream,
    token: &str,
    reconnect: &dyn Endpoint,
) -> (SseEvent, usize) {
    let mut reconnections = 0;
    let mut last_position = i64::MAX;
    loop {
        match within(PATIENCE, stream.next_event()).await {
            Some(event) if event.event == "position" => {
                let position = event.json()["position"].as_i64().expect("a position");
                assert!(
                    position <= last_position,
                    "the position went up from {last_position} to {position}"
                );
                last_position = position;
            }
            Some(terminal) => return (terminal, reconnections),
            None => {
                reconnections += 1;
                assert!(reconnections <= 3, "the stream keeps breaking");
                stream = support::stream(reconnect, token).await;
            }
        }
    }
}

#[tokio::test]
async fn a_fan_joins_through_one_instance_and_streams_on_the_other() {
    let deployment = Deployment::start().await;
    let first = WaitingRoomClient::new(&deployment.waiting_rooms[0], &deployment.env);
    let second = &deployment.waiting_rooms[1];
    first
        .put_event("hop", event_body("paused", 1, 200, 600))
        .await;
    deployment.wait_everywhere("hop").await;
    for _ in 0..2 {
        join_and_look(&first, "hop").await;
    }
    let ticket = first.join_ok("hop", None).await;

    let mut stream = support::stream(second, token(&ticket)).await;
    let opening = within(PATIENCE, stream.next_event())
        .await
        .expect("a first event");
    assert_eq!(opening.event, "position");
    assert_eq!(opening.json()["ticket_id"], ticket["ticket_id"]);
    assert_eq!(opening.json()["position"], 2, "two fans ahead");

    // The line moves (opened through the proxy); the other instance follows it.
    deployment
        .client()
        .put_event("hop", json!({"state": "open"}))
        .await;
    let (terminal, reconnections) = follow(stream, token(&ticket), second).await;
    assert_eq!(terminal.event, "active", "{}", terminal.data);
    assert_eq!(reconnections, 0, "the stream never broke");
    let status: Value = deployment
        .client()
        .status(token(&ticket))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["state"], "active");
    deployment.stop().await;
}

#[tokio::test]
async fn configuration_changes_reach_every_instance() {
    let deployment = Deployment::start().await;
    let first = WaitingRoomClient::new(&deployment.waiting_rooms[0], &deployment.env);
    let second = WaitingRoomClient::new(&deployment.waiting_rooms[1], &deployment.env);
    let mut body = event_body("paused", 10, 200, 600);
    body["seats"] = json!({"rows": 1, "seats_per_row": 4});
    first.put_event("config", body).await;

    // The other waiting-room has the event; both reservation services have its seats.
    second.wait_for_event("config").await;
    for reservation in &deployment.reservations {
        let map: Value = reqwest::get(reservation.url("/v1/events/config/seats"))
            .await
            .expect("GET seats")
            .json()
            .await
            .expect("JSON");
        assert_eq!(map["seats"].as_array().map(Vec::len), Some(4), "{map}");
    }

    // A fan joins on the second instance; opened through the second, the queue moves
    // on whichever activator owns it, and the first instance says so.
    let ticket = join_and_look(&second, "config").await;
    assert_eq!(ticket["state"], "waiting");
    second.put_event("config", json!({"state": "open"})).await;
    wait_for_state(&first, token(&ticket), "active").await;

    // Closed through the first: the second refuses joins and shows the event closed.
    first.put_event("config", json!({"state": "closed"})).await;
    wait::until_true(
        "the second instance refuses joins to the closed event",
        Duration::from_secs(10),
        || async {
            let response = second.join("config", None).await;
            response.status() == 409
                && response.json::<Value>().await.expect("JSON")["error"]["code"] == "event_closed"
        },
    )
    .await;
    assert_eq!(second.get_event("config").await["state"], "closed");
    deployment.stop().await;
}

/// Joins through the proxy, one after another, until stopped; keeps what was
/// acknowledged.
struct JoinLoad {
    acknowledged: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<Vec<String>>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl JoinLoad {
    fn start(proxy: &dyn Endpoint, event_id: &str) -> Self {
        let url = proxy.url(&format!("/v1/events/{event_id}/tickets"));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let (acknowledged, refused, running) =
                (acknowledged.clone(), refused.clone(), running.clone());
            async move {
                let http = reqwest::Client::new();
                while running.load(Ordering::Relaxed) {
                    match http.post(&url).send().await {
                        Ok(response) if response.status() == 201 => {
                            let ticket = response.json().await.expect("the ticket");
                            acknowledged.lock().unwrap().push(ticket);
                        }
                        Ok(response) => refused.lock().unwrap().push(response.status().to_string()),
                        Err(error) => refused.lock().unwrap().push(error.to_string()),
                    }
                }
            }
        });
        Self {
            acknowledged,
            refused,
            running,
            task,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    async fn wait_for(&self, count: usize) {
        wait::until_true(
            &format!("{count} joins acknowledged through the proxy"),
            PATIENCE,
            || async { self.acknowledged() >= count },
        )
        .await;
    }

    /// Stops the load; the acknowledged tickets and the failed joins.
    async fn stop(self) -> (Vec<Value>, Vec<String>) {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.expect("the join load");
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        let refused = std::mem::take(&mut *self.refused.lock().unwrap());
        (acknowledged, refused)
    }
}

#[tokio::test]
async fn a_killed_waiting_room_loses_no_acknowledged_ticket_and_its_streams_resume() {
    let mut deployment = Deployment::start().await;
    deployment
        .client()
        .put_event("crash", event_body("paused", 20, 200, 600))
        .await;
    deployment.wait_everywhere("crash").await;
    let mut victim = deployment.waiting_rooms.remove(0);
    let proxy = WaitingRoomClient::new(&deployment.proxy.waiting_room, &deployment.env);

    // Fans the victim itself acknowledged.
    let on_victim = WaitingRoomClient::new(&victim, &deployment.env);
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        acknowledged.push(on_victim.join_ok("crash", None).await);
    }
    // Fans following their place through the proxy, which spreads their streams.
    let mut streams = Vec::new();
    for _ in 0..6 {
        let ticket = join_and_look(&proxy, "crash").await;
        let mut stream = support::stream(&deployment.proxy.waiting_room, token(&ticket)).await;
        let opening = within(PATIENCE, stream.next_event())
            .await
            .expect("an event");
        assert_eq!(opening.event, "position");
        streams.push((ticket, stream));
    }
    let held_by_victim = victim
        .metric("waiting_room_streams_open")
        .await
        .expect("the streams gauge");
    assert!(
        held_by_victim >= 1.0,
        "the proxy gave the victim none of the 6 streams"
    );

    // Joins keep arriving through the proxy while the victim is killed.
    let load = JoinLoad::start(&deployment.proxy.waiting_room, "crash");
    load.wait_for(10).await;
    victim.kill().await;
    let at_kill = load.acknowledged();
    load.wait_for(at_kill + 10).await;
    let (through_proxy, failed) = load.stop().await;
    eprintln!(
        "{} joins acknowledged through the proxy ({at_kill} before the kill), {} failed: {:?}",
        through_proxy.len(),
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    acknowledged.extend(through_proxy);

    // Every acknowledged ticket is the Kafka record at its queue number, and the
    // survivor answers for it.
    let env = &deployment.env;
    for ticket in &acknowledged {
        let partition = ticket["partition"].as_i64().expect("partition") as i32;
        let queue_number = ticket["queue_number"].as_i64().expect("queue number");
        let record = testkit::kafka::read_record(
            &env.common.kafka,
            &env.common.tickets_topic,
            partition,
            queue_number,
        )
        .await
        .unwrap_or_else(|| panic!("no record at {queue_number}"));
        let record = TicketRecord::parse(record.payload()).expect("a ticket record");
        assert_eq!(
            json!(record.ticket_id),
            ticket["ticket_id"],
            "record {queue_number}"
        );
        let status: Value = proxy
            .status(token(ticket))
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(status["ticket_id"], ticket["ticket_id"]);
        assert_eq!(status["state"], "waiting", "{status}");
    }
    let joined = proxy.get_event("crash").await["joined"]
        .as_u64()
        .expect("joined");
    assert!(
        joined >= (acknowledged.len() + streams.len()) as u64,
        "joined {joined}"
    );

    // The line moves: every stream reaches the fan's turn, those the victim held after
    // opening again through the proxy with the same token.
    proxy.put_event("crash", json!({"state": "open"})).await;
    let mut reconnected = 0;
    for (ticket, stream) in streams {
        let (terminal, reconnections) =
            follow(stream, token(&ticket), &deployment.proxy.waiting_room).await;
        assert_eq!(terminal.event, "active", "{}", terminal.data);
        reconnected += reconnections;
    }
    assert_eq!(
        reconnected as f64, held_by_victim,
        "each stream the victim held was opened again once"
    );
    for ticket in &acknowledged {
        wait_for_state(&proxy, token(ticket), "active").await;
    }
    drop(victim);
    deployment.stop().await;
}

#[tokio::test]
async fn two_activators_share_the_queues_and_one_survives_the_others_sigkill() {
    let mut deployment = Deployment::start().await;
    let mut victim = deployment.activators.remove(0);
    let survivor = &deployment.activators[0];
    let client = WaitingRoomClient::new(&deployment.proxy.waiting_room, &deployment.env);
    // Four events on the test topic's four partitions, three fans waiting in each.
    let mut tickets = Vec::new();
    for index in 0..4 {
        let event_id = format!("share-{index}");
        client
            .put_event(&event_id, event_body("paused", 10, 200, 600))
            .await;
        deployment.wait_everywhere(&event_id).await;
        for _ in 0..3 {
            tickets.push(join_and_look(&client, &event_id).await);
        }
    }

    let (victims, survivors) = wait::until(
        "both activators own a share of the four queues",
        PATIENCE,
        || async {
            let victims = victim.metric("activator_owned_queues").await?;
            let survivors = survivor.metric("activator_owned_queues").await?;
            (victims >= 1.0 && survivors >= 1.0 && victims + survivors == 4.0)
                .then_some((victims, survivors))
        },
    )
    .await;
    eprintln!("before the kill: {victims} and {survivors} queues");
    victim.kill().await;
    wait::until_true(
        "the survivor owns every queue",
        Duration::from_secs(60),
        || async { survivor.metric("activator_owned_queues").await == Some(4.0) },
    )
    .await;

    // Every line moves, the victim's as well: the survivor lets all the fans in.
    for index in 0..4 {
        client
            .put_event(&format!("share-{index}"), json!({"state": "open"}))
            .await;
    }
    for ticket in &tickets {
        wait_for_state(&client, token(ticket), "active").await;
    }
    deployment.stop().await;
}

/// Seat-map viewers with `?diffs=true` opened on each reservation instance.
const DIFF_VIEWERS: usize = 20;

#[tokio::test]
async fn reservation_streams_see_changes_made_through_the_other_instance() {
    let deployment = Deployment::start().await;
    let client = deployment.client();
    let mut body = event_body("passthrough", 10, 200, 600);
    body["seats"] = json!({"rows": 1, "seats_per_row": 4});
    client.put_event("seats", body).await;
    deployment.wait_everywhere("seats").await;
    let ticket = join_and_look(&client, "seats").await;
    wait_for_state(&client, token(&ticket), "active").await;
    let (first, second) = (&deployment.reservations[0], &deployment.reservations[1]);
    let http = reqwest::Client::new();

    let mut seat_map = open_events(second.url("/v1/events/seats/seats/events")).await;
    until_seat(&mut seat_map, "A-1", "available").await;
    // Many viewers on both instances, each sent only the seats that change.
    let mut viewers = Vec::new();
    for instance in [first, second] {
        for _ in 0..DIFF_VIEWERS {
            let mut viewer =
                open_events(instance.url("/v1/events/seats/seats/events?diffs=true")).await;
            let map = within(PATIENCE, viewer.next_event())
                .await
                .expect("the whole map first");
            assert_eq!(map.event, "seats");
            assert_eq!(map.json()["seats"].as_array().map(Vec::len), Some(4));
            viewers.push(viewer);
        }
    }
    let reads_before = seat_map_reads(&deployment).await;

    // A hold on the first instance shows on the second's seat map.
    let held: Value = http
        .post(first.url("/v1/events/seats/reservations"))
        .bearer_auth(token(&ticket))
        .json(&json!({"seat_ids": ["A-1"]}))
        .send()
        .await
        .expect("hold")
        .json()
        .await
        .expect("JSON");
    let id = held["reservation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{held}"));
    // The instance that held it answers with the hold at once, from its viewers' copy.
    let map: Value = http
        .get(first.url("/v1/events/seats/seats"))
        .send()
        .await
        .expect("GET seats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(map["seats"][0]["state"], "held", "{map}");
    until_seat(&mut seat_map, "A-1", "held").await;
    until_changes(&mut viewers, "held").await;
    // One read per instance and change (two when the notification comes after the
    // instance's own signal's read began), whatever the number of viewers.
    let reads_after = seat_map_reads(&deployment).await;
    for (before, after) in reads_before.iter().zip(&reads_after) {
        assert!(
            after - before <= 2.0,
            "{DIFF_VIEWERS} viewers cost {} reads",
            after - before
        );
    }

    // The reservation followed on the second instance, confirmed on the first.
    let mut status = open_events(second.url(&format!("/v1/reservations/{id}/events"))).await;
    let opening = within(PATIENCE, status.next_event())
        .await
        .expect("a status");
    assert_eq!(opening.json()["status"], "held");
    let confirmed = http
        .post(first.url(&format!("/v1/reservations/{id}/confirm")))
        .bearer_auth(token(&ticket))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);
    let next = within(PATIENCE, status.next_event())
        .await
        .expect("a status");
    assert_eq!(next.json()["status"], "confirmed");
    assert_eq!(
        within(PATIENCE, status.next_frame()).await,
        None,
        "the stream ends at a final status"
    );
    until_seat(&mut seat_map, "A-1", "sold").await;
    until_changes(&mut viewers, "sold").await;

    // The last viewer gone, neither instance keeps a live map.
    drop((viewers, seat_map, status));
    for instance in [first, second] {
        wait::until_true(
            "the seat maps stop with their viewers",
            PATIENCE,
            || async { instance.metric("reservation_seat_maps_live").await == Some(0.0) },
        )
        .await;
    }
    deployment.stop().await;
}

async fn seat_map_reads(deployment: &Deployment) -> Vec<f64> {
    let mut reads = Vec::new();
    for instance in &deployment.reservations {
        let count = instance.metric("reservation_seat_map_reads_total").await;
        reads.push(count.expect("reservation_seat_map_reads_total"));
    }
    reads
}

/// Each viewer's next event: A-1 alone, now `state`.
async fn until_changes(viewers: &mut [EventStream], state: &str) {
    for viewer in viewers {
        let changes = within(PATIENCE, viewer.next_event())
            .await
            .expect("the viewer's stream stays open");
        assert_eq!(changes.event, "seat_changes", "{}", changes.data);
        let body = changes.json();
        assert_eq!(body["event_id"], "seats");
        assert_eq!(changes.id, Some(body["version"].to_string()));
        let seats = body["seats"].as_array().expect("seats");
        assert_eq!(seats.len(), 1, "{body}");
        assert_eq!(seats[0]["seat_id"], "A-1");
        assert_eq!(seats[0]["state"], state);
    }
}

/// Joins this instance refused under the per-client-and-event limit.
async fn refusals(instance: &ServiceProcess) -> f64 {
    instance
        .metric("waiting_room_joins_rate_limited_total{scope=\"client_event\"}")
        .await
        .unwrap_or(0.0)
}

async fn open_events(url: String) -> EventStream {
    let response = reqwest::get(url).await.expect("GET events");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    EventStream::new(response)
}

/// Reads seat maps until `seat_id` is in the `wanted` state.
async fn until_seat(seat_map: &mut EventStream, seat_id: &str, wanted: &str) {
    loop {
        let map = within(PATIENCE, seat_map.next_event())
            .await
            .expect("the seat stream stays open")
            .json();
        let state = map["seats"]
            .as_array()
            .and_then(|seats| seats.iter().find(|seat| seat["seat_id"] == seat_id))
            .map(|seat| seat["state"].clone())
            .unwrap_or_else(|| panic!("no {seat_id} in {map}"));
        if state == wanted {
            return;
        }
    }
}

#[tokio::test]
async fn a_join_rate_limit_holds_across_instances_behind_the_proxy() {
    // Per client and event: 3 at once, then one every 100 s (nothing refills in a test).
    let deployment = Deployment::start_with(&[
        "--join-rate-limit-per-second",
        "0.01",
        "--join-rate-limit-burst",
        "3",
    ])
    .await;
    let client = deployment.client();
    client.put_event("limited", json!({})).await;
    deployment.wait_everywhere("limited").await;
    // Each client connects from a loopback address of its own (127.0.0.0/8 is all
    // local); the instances trust only the proxy's, 127.0.0.1, so the client is the
    // address the proxy adds to X-Forwarded-For, after whatever the client wrote there.
    let from = |address: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(Some(IpAddr::from(address)))
            .build()
            .expect("a client")
    };
    let url = deployment
        .proxy
        .waiting_room
        .url("/v1/events/limited/tickets");

    // One client joins through the proxy, claiming another address every time, until
    // both instances have refused it.
    let flooder = from([127, 0, 0, 2]);
    let mut admitted = 0;
    for attempt in 1.. {
        let response = flooder
            .post(&url)
            .header("x-forwarded-for", format!("203.0.113.{attempt}"))
            .send()
            .await
            .expect("POST join");
        match response.status().as_u16() {
            201 => admitted += 1,
            429 => {}
            other => panic!("join {attempt}: {other}"),
        }
        let (first, second) = tokio::join!(
            refusals(&deployment.waiting_rooms[0]),
            refusals(&deployment.waiting_rooms[1])
        );
        if first >= 1.0 && second >= 1.0 {
            break;
        }
        assert!(
            attempt < 40,
            "the proxy sent no join to one of the instances"
        );
    }
    assert_eq!(admitted, 3, "one budget for the client on both instances");
    // Another client behind the same proxy has a budget of its own.
    let other = from([127, 0, 0, 3])
        .post(&url)
        .send()
        .await
        .expect("POST join");
    assert_eq!(other.status(), 201);
    assert_eq!(client.get_event("limited").await["joined"], 4);
    deployment.stop().await;
}
