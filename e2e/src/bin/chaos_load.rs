//! `chaos-load`: a sale under steady load while faults are injected one at a time, and
//! what each fault cost, checked against the stores (`k6/run.sh chaos`).
//!
//! It creates an event with seats and a paused event of its own. For the whole run it
//! joins at a steady rate (every `CHAOS_FAN_EVERY`th joiner is a fan who follows the
//! ticket until it is decided, half by polling and half over the live stream, then
//! holds and confirms a seat; the others join and leave, as fans who close the tab)
//! and holds `CHAOS_STREAMS` live streams on the paused event's tickets, reconnecting
//! each one that is cut. The faults run one after the other, each a phase: a quiet
//! baseline, the fault (`CHAOS_FAULT_COMMAND` with the fault's name, which returns once
//! the fault is over: the part restarted and ready, or the latency removed), and a
//! recovery window. Every answer counts in the phase it arrived in; every request has
//! a deadline, so a hung one is counted as timed out, never lost from the counts.
//!
//! After each phase, during the next one's baseline, it checks the stores themselves:
//! every acknowledged ticket is in the tickets topic at its queue number, no ticket has
//! two activation decisions at different times in the decisions topic (the same one
//! twice is the topic's at-least-once delivery), no seat is in two live reservations
//! or sold without a confirmed one, every reservation the fans saw confirmed is still
//! confirmed with its seats sold, and its confirmation reached the reservations topic
//! through the outbox. These checks cover everything the run has done so far, and a
//! loss counts in the phase whose check first finds it: a fault that destroys what
//! earlier phases wrote shows it in its own row. Prints a Markdown report on stdout
//! (progress goes to stderr).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use contract::kafka_connection::KafkaConnection;
use contract::ticket_decision::{DecisionRecord, Outcome};
use contract::ticket_record::TicketRecord;
use contract::topic_reader::{StoredRecord, TopicReader};
use e2e::load::{
    fan_address, format_counts, join_tickets, root_cause, seat_ids, LoadEvent, StackArgs,
};
use e2e::sse::{EventStream, Frame};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Run a sale while faults are injected; count what each one cost")]
struct Args {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    kafka: KafkaConnection,
    /// Reservation service base URL.
    #[arg(long, env = "RESERVATION_URL", default_value = "http://127.0.0.1:8081")]
    reservation_url: String,
    /// The stack's database, to check seats, reservations and the outbox.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "TICKETS_TOPIC", default_value = "waiting-room.tickets")]
    tickets_topic: String,
    #[arg(
        long,
        env = "DECISIONS_TOPIC",
        default_value = "waiting-room.decisions"
    )]
    decisions_topic: String,
    #[arg(
        long,
        env = "RESERVATIONS_TOPIC",
        default_value = "reservations.events"
    )]
    reservations_topic: String,
    /// The faults, in order, separated by spaces; `none` is a phase without a fault
    /// (the control).
    #[arg(
        long,
        env = "CHAOS_FAULTS",
        value_delimiter = ' ',
        default_value = "none redis-restart redis-flush postgres-restart kill-waiting-room \
                         kill-activator kill-reservation netem broker-restart"
    )]
    faults: Vec<String>,
    /// Injects a fault: run by `sh -c` with the fault's name appended; returns when the
    /// fault is over.
    #[arg(
        long,
        env = "CHAOS_FAULT_COMMAND",
        default_value = "k6/run.sh chaos-fault"
    )]
    fault_command: String,
    /// Where the supervisor writes a line (the service's name) for each service it
    /// started again: a killed one, or one that crashed.
    #[arg(long, env = "CHAOS_RESTARTS_FILE")]
    restarts_file: Option<PathBuf>,
    /// Joins per second, for the whole run.
    #[arg(long, env = "CHAOS_JOIN_RATE", default_value_t = 50.0)]
    join_rate: f64,
    /// One joiner in this many is a fan who waits for their turn and buys a seat.
    #[arg(long, env = "CHAOS_FAN_EVERY", default_value_t = 5)]
    fan_every: usize,
    /// Live streams held for the whole run (tickets of a paused event).
    #[arg(long, env = "CHAOS_STREAMS", default_value_t = 50)]
    streams: usize,
    /// Seconds of steady load before each fault.
    #[arg(long, env = "CHAOS_BASELINE_SECONDS", default_value_t = 10)]
    baseline_seconds: u64,
    /// Seconds of load after each fault is over, before the next phase.
    #[arg(long, env = "CHAOS_RECOVERY_SECONDS", default_value_t = 30)]
    recovery_seconds: u64,
    /// Deadline of every request (a stream's: to its headers, then between frames
    /// four times this): past it the request counts as timed out.
    #[arg(long, env = "CHAOS_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    request_timeout_seconds: u64,
    /// How long a fan waits for their ticket to be decided before giving up.
    #[arg(long, env = "CHAOS_FAN_PATIENCE_SECONDS", default_value_t = 60)]
    fan_patience_seconds: u64,
    /// Rows of the seat layout.
    #[arg(long, env = "CHAOS_SEAT_ROWS", default_value_t = 100)]
    seat_rows: u32,
    /// Seats per row.
    #[arg(long, env = "CHAOS_SEATS_PER_ROW", default_value_t = 200)]
    seats_per_row: u32,
}

/// The label of a success.
const OK: &str = "ok";
/// The refusal fans are promised when a dependency is down: 503 with `Retry-After`.
const RETRY_LATER: &str = "503 with Retry-After";
/// A stream that ended or fell silent without a decision.
const CUT: &str = "cut";
/// Attempts at a hold or a confirm that failed without an answer, or with a 5xx.
const ATTEMPTS: usize = 10;
/// Between a fan's polls, and before a retry or a reconnect.
const PAUSE: Duration = Duration::from_secs(1);
/// Longer than this without a fan let in is a stop: the queue lets fans in every
/// second, and the fans who poll look every second.
const STALL: Duration = Duration::from_secs(3);
/// How long a check waits for the outbox relay to publish what was confirmed.
const RELAY_WAIT: Duration = Duration::from_secs(30);

/// What a request got back.
struct Answer {
    status: u16,
    retry_after: bool,
    body: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Result<Self, String> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER);
        let body = response.bytes().await.map_err(|error| transport(&error))?;
        Ok(Self {
            status,
            retry_after,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let response = request.send().await.map_err(|error| transport(&error))?;
    Answer::read(response).await
}

/// A timeout and a refused connection named as such: the failures faults cause.
fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        format!("no connection ({})", root_cause(error))
    } else {
        root_cause(error)
    }
}

/// `ok`, the promised refusal, or what else came back (status and error code).
fn label(result: &Result<Answer, String>) -> String {
    match result {
        Err(why) => why.clone(),
        Ok(answer) => match answer.status {
            200..=299 => OK.into(),
            503 if answer.retry_after => RETRY_LATER.into(),
            503 => "503 without Retry-After".into(),
            status if answer.code().is_empty() => status.to_string(),
            status => format!("{status} {}", answer.code()),
        },
    }
}

#[derive(Clone)]
struct Ticket {
    ticket_id: String,
    partition: i32,
    queue_number: i64,
}

#[derive(Clone)]
struct Confirmed {
    reservation_id: String,
    seat_id: String,
}

/// What arrived during one phase.
#[derive(Default)]
struct Phase {
    /// (request kind, label) → answers.
    answers: HashMap<(&'static str, String), usize>,
    /// Every join: sent, answered, acknowledged.
    joins: Vec<(Instant, Instant, bool)>,
    acknowledged: Vec<Ticket>,
    /// When fans saw their ticket become active, and the ticket.
    activations: Vec<(Instant, String)>,
    confirmed: Vec<Confirmed>,
    /// How fans' journeys ended.
    fans: HashMap<String, usize>,
}

/// The phases' records; answers go to the current one.
struct Ledger {
    current: usize,
    phases: Vec<Phase>,
}

/// The load: joins, fans and held streams, against one stack.
struct Load {
    args: Args,
    /// Every request but the streams, with the request deadline.
    http: reqwest::Client,
    /// Streams: a deadline to connect, then the silence limit between frames.
    streams: reqwest::Client,
    event_id: String,
    seats: Vec<String>,
    next_seat: AtomicUsize,
    ledger: Mutex<Ledger>,
}

impl Load {
    fn record(&self, change: impl FnOnce(&mut Phase)) {
        let mut ledger = self.ledger.lock().expect("ledger");
        let current = ledger.current;
        change(&mut ledger.phases[current]);
    }

    fn count(&self, kind: &'static str, label: String) {
        self.record(|phase| *phase.answers.entry((kind, label)).or_default() += 1);
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.args.request_timeout_seconds)
    }

    /// Starts counting into phase `index`; the phase before it, taken out.
    fn begin(&self, index: usize) -> Phase {
        let mut ledger = self.ledger.lock().expect("ledger");
        let previous = std::mem::replace(&mut ledger.current, index);
        std::mem::take(&mut ledger.phases[previous])
    }

    /// Joins at the configured rate until aborted, each join in its own task so a
    /// hung one delays nobody.
    async fn join_steadily(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / self.args.join_rate));
        for index in 0.. {
            ticker.tick().await;
            tokio::spawn(self.clone().join(index));
        }
    }

    async fn join(self: Arc<Self>, index: usize) {
        let url = format!(
            "{}/v1/events/{}/tickets",
            self.args.stack.waiting_room_url, self.event_id
        );
        let sent = Instant::now();
        // Each joiner from an address of its own (after the held streams' fans), so the
        // per-client join limits see many clients, as in a real sale.
        let result = send(
            self.http
                .post(url)
                .header("x-forwarded-for", fan_address(self.args.streams + index)),
        )
        .await;
        let answered = Instant::now();
        let ticket = match &result {
            Ok(answer) if answer.status == 201 => ticket_of(&answer.body),
            _ => None,
        };
        self.record(|phase| {
            *phase.answers.entry(("join", label(&result))).or_default() += 1;
            phase.joins.push((sent, answered, ticket.is_some()));
            if let Some((ticket, _)) = &ticket {
                phase.acknowledged.push(ticket.clone());
            }
        });
        if let Some((ticket, token)) = ticket {
            if index.is_multiple_of(self.args.fan_every) {
                let streaming = (index / self.args.fan_every) % 2 == 1;
                self.fan(ticket.ticket_id, &token, streaming).await;
            }
        }
    }

    /// A fan: waits for the decision, and when let in buys a seat.
    async fn fan(&self, ticket_id: String, token: &str, streaming: bool) {
        let patience = Duration::from_secs(self.args.fan_patience_seconds);
        let decided = tokio::time::timeout(patience, async {
            if streaming {
                self.stream_until_decided(token).await
            } else {
                self.poll_until_decided(token).await
            }
        })
        .await;
        let ending = match decided {
            Ok(state) if state == "active" => {
                self.record(|phase| phase.activations.push((Instant::now(), ticket_id)));
                self.buy(token).await
            }
            Ok(state) => format!("ticket {state}"),
            Err(_) => format!("still waiting after {} s", patience.as_secs()),
        };
        self.record(|phase| *phase.fans.entry(ending).or_default() += 1);
    }

    /// Polls the status every second, as the waiting page does without a stream.
    async fn poll_until_decided(&self, token: &str) -> String {
        let url = format!("{}/v1/tickets/{token}", self.args.stack.waiting_room_url);
        loop {
            let result = send(self.http.get(&url)).await;
            self.count("status", label(&result));
            if let Ok(answer) = &result {
                match answer.body["state"].as_str() {
                    Some(state) if answer.status == 200 && state != "waiting" => {
                        return state.to_owned();
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Follows the ticket's live stream, reconnecting as EventSource does when it is cut.
    async fn stream_until_decided(&self, token: &str) -> String {
        let url = format!(
            "{}/v1/tickets/{token}/events",
            self.args.stack.waiting_room_url
        );
        loop {
            if let Some(mut stream) = self.open_stream("stream", &url).await {
                while let Some(frame) = self.next_frame(&mut stream).await {
                    if let Frame::Event(event) = frame {
                        match event.json()["state"].as_str() {
                            Some("waiting") | None => {}
                            Some(state) => return state.to_owned(),
                        }
                    }
                }
                self.count("stream", CUT.into());
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Holds a stream on a ticket of the paused event (nothing is ever decided there),
    /// reconnecting whenever it is cut.
    async fn hold_stream(self: Arc<Self>, token: String) {
        let url = format!(
            "{}/v1/tickets/{token}/events",
            self.args.stack.waiting_room_url
        );
        loop {
            if let Some(mut stream) = self.open_stream("held stream", &url).await {
                while self.next_frame(&mut stream).await.is_some() {}
                self.count("held stream", CUT.into());
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    async fn open_stream(&self, kind: &'static str, url: &str) -> Option<EventStream> {
        let result = match tokio::time::timeout(
            self.request_timeout(),
            self.streams.get(url).send(),
        )
        .await
        {
            Err(_) => Err("timed out".to_owned()),
            Ok(Err(error)) => Err(transport(&error)),
            Ok(Ok(response)) if response.status() == 200 => {
                self.count(kind, OK.into());
                return Some(EventStream::new(response));
            }
            Ok(Ok(response)) => Answer::read(response).await,
        };
        self.count(kind, label(&result));
        None
    }

    /// The next frame (keep-alive comments included: every 15 s on a quiet stream);
    /// `None` when the stream ended, broke, or fell silent for four request deadlines.
    async fn next_frame(&self, stream: &mut EventStream) -> Option<Frame> {
        tokio::time::timeout(self.request_timeout() * 4, stream.next_frame())
            .await
            .ok()
            .flatten()
    }

    /// Holds one seat and confirms it, retrying what failed without an answer or with
    /// a server error, as a fan would; how the journey ended.
    async fn buy(&self, token: &str) -> String {
        let url = format!(
            "{}/v1/events/{}/reservations",
            self.args.reservation_url, self.event_id
        );
        let mut seat = self.take_seat();
        let mut reservation = None;
        for _ in 0..ATTEMPTS {
            let Some(seat_id) = &seat else {
                return "no seat left".into();
            };
            let result = send(
                self.http
                    .post(&url)
                    .bearer_auth(token)
                    .json(&json!({"seat_ids": [seat_id]})),
            )
            .await;
            self.count("hold", label(&result));
            match &result {
                Ok(answer) if answer.status == 201 => {
                    reservation = answer.body["reservation_id"].as_str().map(str::to_owned);
                    break;
                }
                // An earlier attempt did hold (its answer was lost): that reservation.
                Ok(answer) if answer.code() == "reservation_exists" => {
                    reservation = answer.body["reservation_id"].as_str().map(str::to_owned);
                    seat = answer.body["seat_ids"][0].as_str().map(str::to_owned);
                    break;
                }
                Ok(answer) if answer.code() == "seats_unavailable" => seat = self.take_seat(),
                Ok(answer) if answer.status < 500 => {
                    return format!("hold refused: {}", label(&result))
                }
                _ => tokio::time::sleep(PAUSE).await,
            }
        }
        let (Some(reservation_id), Some(seat_id)) = (reservation, seat) else {
            return "hold failed every attempt".into();
        };
        let url = format!(
            "{}/v1/reservations/{reservation_id}/confirm",
            self.args.reservation_url
        );
        for _ in 0..ATTEMPTS {
            let result = send(self.http.post(&url).bearer_auth(token)).await;
            self.count("confirm", label(&result));
            match &result {
                // An earlier attempt did confirm (its answer was lost).
                Ok(answer)
                    if answer.status == 200 || answer.body["error"]["status"] == "confirmed" =>
                {
                    self.record(|phase| {
                        phase.confirmed.push(Confirmed {
                            reservation_id,
                            seat_id,
                        });
                    });
                    return "bought".into();
                }
                Ok(answer) if answer.status < 500 => {
                    return format!("confirm refused: {}", label(&result));
                }
                _ => tokio::time::sleep(PAUSE).await,
            }
        }
        "confirm failed every attempt".into()
    }

    fn take_seat(&self) -> Option<String> {
        self.seats
            .get(self.next_seat.fetch_add(1, Ordering::Relaxed))
            .cloned()
    }
}

/// The ticket and its token from a join's answer.
fn ticket_of(body: &Value) -> Option<(Ticket, String)> {
    Some((
        Ticket {
            ticket_id: body["ticket_id"].as_str()?.to_owned(),
            partition: i32::try_from(body["partition"].as_i64()?).ok()?,
            queue_number: body["queue_number"].as_i64()?,
        },
        body["token"].as_str()?.to_owned(),
    ))
}

/// One fault's phase, as it went.
struct Run {
    fault: String,
    /// The fault command's failure, if it failed.
    failure: Option<String>,
    injected: Instant,
    fault_seconds: f64,
    /// When the next phase began.
    ended: Instant,
    /// Services the supervisor started again during the phase.
    restarts: Vec<String>,
    phase: Phase,
}

impl Run {
    /// Seconds from the injection until joins were acknowledged again: the answer to
    /// the first join that succeeded after the last one that failed (0 when none did).
    fn joins_back(&self) -> Option<f64> {
        let after: Vec<_> = self
            .phase
            .joins
            .iter()
            .filter(|(_, answered, _)| *answered >= self.injected)
            .collect();
        let Some(last_failure) = after.iter().filter(|join| !join.2).map(|join| join.0).max()
        else {
            return Some(0.0);
        };
        after
            .iter()
            .filter(|(sent, _, ok)| *ok && *sent > last_failure)
            .map(|(_, answered, _)| answered.duration_since(self.injected).as_secs_f64())
            .reduce(f64::min)
    }

    /// Seconds from the injection to the activation that ended the last stretch of
    /// more than [`STALL`] without one (the injection starting the first stretch); 0
    /// when activations never stopped that long.
    fn activations_back(&self) -> Option<f64> {
        let mut seen: Vec<Instant> = self
            .phase
            .activations
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at >= self.injected)
            .collect();
        seen.sort();
        let mut previous = self.injected;
        let mut back = Some(0.0);
        for at in seen {
            if at - previous > STALL {
                back = Some(at.duration_since(self.injected).as_secs_f64());
            }
            previous = at;
        }
        // Still stopped when the phase ended.
        if self.ended - previous > STALL {
            return None;
        }
        back
    }
}

/// What a check found that no earlier check had.
#[derive(Default)]
struct Findings {
    missing_tickets: Option<usize>,
    activated_twice: Option<usize>,
    activated_and_abandoned: Option<usize>,
    /// Tickets of the sale with an activation in the decisions topic.
    decided: Option<usize>,
    /// Activations fans saw that the decisions topic does not have.
    unrecorded: Option<usize>,
    oversold: Option<i64>,
    lost_reservations: Option<usize>,
    /// Confirmations not in the topic, and those still waiting in the outbox.
    lost_messages: Option<(usize, usize)>,
    /// Acknowledged tickets and confirmed reservations checked (the run's so far).
    checked: (usize, usize),
    /// Why a check could not be made.
    errors: Vec<String>,
}

/// An event's decisions: each activated ticket's activation times, abandoned tickets.
#[derive(Default)]
struct Decisions {
    activated: HashMap<String, BTreeSet<i64>>,
    abandoned: HashSet<String>,
}

impl Decisions {
    /// Tickets activated at two different times (the same decision twice is the
    /// journal's at-least-once delivery), and tickets both activated and abandoned.
    fn twice(&self) -> (HashSet<String>, HashSet<String>) {
        let twice = self
            .activated
            .iter()
            .filter(|(_, times)| times.len() > 1)
            .map(|(ticket, _)| ticket.clone())
            .collect();
        let both = self
            .activated
            .keys()
            .filter(|ticket| self.abandoned.contains(*ticket))
            .cloned()
            .collect();
        (twice, both)
    }
}

/// The stores, and everything the run did so far with what checks already found.
struct Audit {
    kafka: KafkaConnection,
    database: sqlx::PgPool,
    tickets_topic: String,
    decisions_topic: String,
    reservations_topic: String,
    event_id: String,
    acknowledged: Vec<Ticket>,
    /// Tickets fans saw active.
    activated: Vec<String>,
    confirmed: Vec<Confirmed>,
    missing_tickets: HashSet<String>,
    unrecorded: HashSet<String>,
    activated_twice: HashSet<String>,
    activated_and_abandoned: HashSet<String>,
    oversold: i64,
    lost_reservations: HashSet<String>,
    lost_messages: HashSet<String>,
}

/// The members of `now` not in `known`, which takes them in.
fn newly(known: &mut HashSet<String>, now: HashSet<String>) -> usize {
    let before = known.len();
    known.extend(now);
    known.len() - before
}

impl Audit {
    async fn check(&mut self, phase: &Phase) -> Findings {
        self.acknowledged.extend(phase.acknowledged.iter().cloned());
        self.activated
            .extend(phase.activations.iter().map(|(_, ticket)| ticket.clone()));
        self.confirmed.extend(phase.confirmed.iter().cloned());
        let mut findings = Findings {
            checked: (self.acknowledged.len(), self.confirmed.len()),
            ..Findings::default()
        };
        match self.missing_tickets().await {
            Ok(missing) => {
                findings.missing_tickets = Some(newly(&mut self.missing_tickets, missing));
            }
            Err(error) => findings.errors.push(format!("tickets topic: {error:#}")),
        }
        match self.decisions().await {
            Ok(decisions) => {
                let unrecorded = self
                    .activated
                    .iter()
                    .filter(|ticket| !decisions.activated.contains_key(*ticket))
                    .cloned()
                    .collect();
                findings.decided = Some(decisions.activated.len());
                findings.unrecorded = Some(newly(&mut self.unrecorded, unrecorded));
                let (twice, both) = decisions.twice();
                findings.activated_twice = Some(newly(&mut self.activated_twice, twice));
                findings.activated_and_abandoned =
                    Some(newly(&mut self.activated_and_abandoned, both));
            }
            Err(error) => findings.errors.push(format!("decisions topic: {error:#}")),
        }
        match self.oversold().await {
            Ok(oversold) => {
                findings.oversold = Some((oversold - self.oversold).max(0));
                self.oversold = self.oversold.max(oversold);
            }
            Err(error) => findings.errors.push(format!("seats: {error:#}")),
        }
        match self.lost_reservations().await {
            Ok(lost) => {
                findings.lost_reservations = Some(newly(&mut self.lost_reservations, lost));
            }
            Err(error) => findings.errors.push(format!("reservations: {error:#}")),
        }
        match self.lost_messages().await {
            Ok((lost, pending)) => {
                findings.lost_messages = Some((newly(&mut self.lost_messages, lost), pending));
            }
            Err(error) => findings
                .errors
                .push(format!("reservations topic: {error:#}")),
        }
        findings
    }

    /// Every record of `topic` (a blocking read, on a blocking thread).
    async fn read_topic(&self, topic: &str) -> anyhow::Result<Vec<StoredRecord>> {
        let (kafka, topic) = (self.kafka.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || TopicReader::new(&kafka, &topic)?.all(|_| true)).await?
    }

    /// Acknowledged tickets not at their queue number in the tickets topic. A ticket
    /// not found is looked for once more a few seconds later: Tansu shows a partition's
    /// last batch only once another one follows it (docs/operations.md).
    async fn missing_tickets(&self) -> anyhow::Result<HashSet<String>> {
        let mut missing: Vec<&Ticket> = self.acknowledged.iter().collect();
        for attempt in 0..2 {
            if attempt > 0 {
                if missing.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let stored: HashSet<(i32, i64, String)> = self
                .read_topic(&self.tickets_topic)
                .await?
                .into_iter()
                .filter_map(|record| {
                    let ticket = TicketRecord::parse(record.payload.as_deref()).ok()?;
                    Some((
                        record.partition,
                        record.offset,
                        ticket.ticket_id.to_string(),
                    ))
                })
                .collect();
            missing
                .retain(|t| !stored.contains(&(t.partition, t.queue_number, t.ticket_id.clone())));
        }
        Ok(missing.into_iter().map(|t| t.ticket_id.clone()).collect())
    }

    /// The sale's decisions in the decisions topic.
    async fn decisions(&self) -> anyhow::Result<Decisions> {
        let mut decisions = Decisions::default();
        for record in self.read_topic(&self.decisions_topic).await? {
            let Some(record) = record.payload.as_deref().and_then(DecisionRecord::parse) else {
                continue;
            };
            if record.event_id != self.event_id {
                continue;
            }
            for decision in record.decisions {
                let ticket = decision.ticket_id.to_string();
                match decision.outcome {
                    Outcome::Activated => {
                        decisions
                            .activated
                            .entry(ticket)
                            .or_default()
                            .insert(decision.at_ms);
                    }
                    Outcome::Abandoned => {
                        decisions.abandoned.insert(ticket);
                    }
                }
            }
        }
        Ok(decisions)
    }

    /// Seats in two live reservations, sold without a confirmed reservation, or seen
    /// confirmed by the fans in two reservations.
    async fn oversold(&self) -> anyhow::Result<i64> {
        let in_database: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM (
                        SELECT seat FROM reservations, unnest(seat_ids) AS seat
                        WHERE event_id = $1 AND status IN ('held', 'confirmed')
                        GROUP BY seat HAVING count(*) > 1) AS twice)
                  + (SELECT count(*) FROM seats s
                     LEFT JOIN reservations r ON r.reservation_id = s.reservation_id
                     WHERE s.event_id = $1 AND s.state = 'sold'
                       AND r.status IS DISTINCT FROM 'confirmed')",
        )
        .bind(&self.event_id)
        .fetch_one(&self.database)
        .await?;
        let mut holders: HashMap<&str, HashSet<&str>> = HashMap::new();
        for sale in &self.confirmed {
            holders
                .entry(&sale.seat_id)
                .or_default()
                .insert(&sale.reservation_id);
        }
        let seen_twice = holders.values().filter(|ids| ids.len() > 1).count();
        Ok(in_database + i64::try_from(seen_twice)?)
    }

    fn confirmed_ids(&self) -> Vec<String> {
        self.confirmed
            .iter()
            .map(|sale| sale.reservation_id.clone())
            .collect()
    }

    /// Reservations the fans saw confirmed that are not confirmed with their seats
    /// sold to them.
    async fn lost_reservations(&self) -> anyhow::Result<HashSet<String>> {
        let ids = self.confirmed_ids();
        let intact: Vec<String> = sqlx::query_scalar(
            "SELECT r.reservation_id::text FROM unnest($1::text[]) AS wanted (id)
             JOIN reservations r ON r.reservation_id = wanted.id::uuid
             WHERE r.status = 'confirmed' AND NOT EXISTS (
                 SELECT 1 FROM unnest(r.seat_ids) AS seat
                 LEFT JOIN seats s ON s.event_id = r.event_id AND s.seat_id = seat
                 WHERE s.state IS DISTINCT FROM 'sold'
                    OR s.reservation_id IS DISTINCT FROM r.reservation_id)",
        )
        .bind(&ids)
        .fetch_all(&self.database)
        .await?;
        let intact: HashSet<String> = intact.into_iter().collect();
        Ok(ids.into_iter().filter(|id| !intact.contains(id)).collect())
    }

    /// Confirmations missing from the reservations topic once the relay had
    /// [`RELAY_WAIT`] to publish them, and how many are still waiting in the outbox.
    async fn lost_messages(&self) -> anyhow::Result<(HashSet<String>, usize)> {
        let ids = self.confirmed_ids();
        let deadline = Instant::now() + RELAY_WAIT;
        let pending = loop {
            let pending: Vec<String> = sqlx::query_scalar(
                "SELECT o.reservation_id::text FROM unnest($1::text[]) AS wanted (id)
                 JOIN outbox o ON o.reservation_id = wanted.id::uuid
                 WHERE o.published_at IS NULL",
            )
            .bind(&ids)
            .fetch_all(&self.database)
            .await?;
            if pending.is_empty() || Instant::now() >= deadline {
                break pending.into_iter().collect::<HashSet<String>>();
            }
            tokio::time::sleep(PAUSE).await;
        };
        let published: HashSet<String> = self
            .read_topic(&self.reservations_topic)
            .await?
            .into_iter()
            .filter_map(|record| {
                let message: Value = serde_json::from_slice(record.payload.as_deref()?).ok()?;
                (message["event_id"] == self.event_id.as_str() && message["status"] == "confirmed")
                    .then(|| message["reservation_id"].as_str().map(str::to_owned))
                    .flatten()
            })
            .collect();
        let lost = ids
            .into_iter()
            .filter(|id| !published.contains(id) && !pending.contains(id))
            .collect();
        Ok((lost, pending.len()))
    }
}

/// A fault's name as the report's first column says it.
fn describe(fault: &str) -> &str {
    match fault {
        "none" => "none (control)",
        "redis-restart" => "Redis restart",
        "redis-flush" => "Redis data loss (FLUSHALL)",
        "postgres-restart" => "PostgreSQL restart",
        "broker-restart" => "broker (Tansu) restart",
        "kill-waiting-room" => "SIGKILL waiting-room",
        "kill-activator" => "SIGKILL activator",
        "kill-reservation" => "SIGKILL reservation",
        "netem" => "loopback latency (netem)",
        other => other,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.join_rate > 0.0, "CHAOS_JOIN_RATE must be above 0");
    anyhow::ensure!(args.fan_every >= 1, "CHAOS_FAN_EVERY must be at least 1");
    let timeout = Duration::from_secs(args.request_timeout_seconds);
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let streams = reqwest::Client::builder()
        .http1_only()
        .connect_timeout(timeout)
        .build()?;
    let database = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(timeout)
        .connect(&args.database_url)
        .await
        .context("connect to the database")?;

    let sale = json!({
        "name": "Chaos test",
        "state": "open",
        "activation": {"batch_size": 50, "interval_ms": 1000, "max_active": 500,
                       "active_ttl_seconds": 120, "grace_seconds": 20},
        "seats": {"rows": args.seat_rows, "seats_per_row": args.seats_per_row},
    });
    let (sale_event, _) = LoadEvent::create(&args.stack, &http, "chaos", &sale).await?;
    let held = json!({"name": "Chaos test: held streams", "state": "paused"});
    let (held_event, _) = LoadEvent::create(&args.stack, &http, "chaos-streams", &held).await?;
    let seats = seat_ids(&http, &args.reservation_url, &sale_event.event_id).await?;
    eprintln!(
        "event {}: {} seats; {} joins/s, one fan in {}; {} held streams on {}",
        sale_event.event_id,
        seats.len(),
        args.join_rate,
        args.fan_every,
        args.streams,
        held_event.event_id
    );
    let held_tokens = join_tickets(
        &http,
        &args.stack.waiting_room_url,
        &held_event.event_id,
        args.streams,
        16,
    )
    .await?;

    let faults = args.faults.clone();
    let load = Arc::new(Load {
        event_id: sale_event.event_id.clone(),
        ledger: Mutex::new(Ledger {
            current: 0,
            phases: (0..=faults.len()).map(|_| Phase::default()).collect(),
        }),
        http,
        streams,
        seats,
        next_seat: AtomicUsize::new(0),
        args,
    });
    let mut tasks = vec![tokio::spawn(load.clone().join_steadily())];
    tasks.extend(
        held_tokens
            .into_iter()
            .map(|token| tokio::spawn(load.clone().hold_stream(token))),
    );

    let mut audit = Audit {
        kafka: load.args.kafka.clone(),
        database,
        tickets_topic: load.args.tickets_topic.clone(),
        decisions_topic: load.args.decisions_topic.clone(),
        reservations_topic: load.args.reservations_topic.clone(),
        event_id: sale_event.event_id.clone(),
        acknowledged: Vec::new(),
        activated: Vec::new(),
        confirmed: Vec::new(),
        missing_tickets: HashSet::new(),
        unrecorded: HashSet::new(),
        activated_twice: HashSet::new(),
        activated_and_abandoned: HashSet::new(),
        oversold: 0,
        lost_reservations: HashSet::new(),
        lost_messages: HashSet::new(),
    };
    let mut rows = Vec::new();
    let mut previous: Option<(String, Option<String>, Instant, f64)> = None;
    let mut restarts_seen = 0;
    for index in 0..=faults.len() {
        if let Some((fault, failure, injected, fault_seconds)) = previous.take() {
            let phase = load.begin(index);
            eprintln!("checking the stores after {fault}");
            let run = Run {
                fault,
                failure,
                injected,
                fault_seconds,
                ended: Instant::now(),
                restarts: new_restarts(load.args.restarts_file.as_ref(), &mut restarts_seen),
                phase,
            };
            let findings = audit.check(&run.phase).await;
            rows.push((run, findings));
        }
        let Some(fault) = faults.get(index) else {
            break;
        };
        eprintln!(
            "phase {} of {}: {fault}: {} s of steady load",
            index + 1,
            faults.len(),
            load.args.baseline_seconds
        );
        tokio::time::sleep(Duration::from_secs(load.args.baseline_seconds)).await;
        eprintln!("injecting {fault}");
        let injected = Instant::now();
        let failure = inject(&load.args.fault_command, fault).await;
        let fault_seconds = injected.elapsed().as_secs_f64();
        eprintln!(
            "{fault} over after {fault_seconds:.1} s{}; {} s of recovery",
            failure
                .as_ref()
                .map_or(String::new(), |why| format!(" ({why})")),
            load.args.recovery_seconds
        );
        tokio::time::sleep(Duration::from_secs(load.args.recovery_seconds)).await;
        previous = Some((fault.clone(), failure, injected, fault_seconds));
    }
    for task in tasks {
        task.abort();
    }
    for (event, body) in [(&sale_event, &sale), (&held_event, &held)] {
        let mut closed = body.clone();
        closed["state"] = json!("closed");
        if let Err(error) = event.update(&closed).await {
            eprintln!("could not close {}: {error:#}", event.event_id);
        }
    }
    println!("{}", report(&load.args, &rows));
    Ok(())
}

/// The supervisor's restarts since the last call.
fn new_restarts(file: Option<&PathBuf>, seen: &mut usize) -> Vec<String> {
    let lines: Vec<String> = file
        .and_then(|file| std::fs::read_to_string(file).ok())
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let new = lines.get(*seen..).unwrap_or_default().to_vec();
    *seen = lines.len();
    new
}

/// Runs the fault command; why it failed, if it did.
async fn inject(command: &str, fault: &str) -> Option<String> {
    // Its output is progress, like ours: stderr, so stdout stays the report.
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} {fault}"))
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .await;
    match status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("fault command failed: {status}")),
        Err(error) => Some(format!("fault command did not run: {error}")),
    }
}

fn cell<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("not checked".to_owned(), |value| value.to_string())
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("not within the phase".to_owned(), |s| format!("{s:.1} s"))
}

fn report(args: &Args, rows: &[(Run, Findings)]) -> String {
    let mut table = String::from(
        "| fault | joins tried | acknowledged | refused with 503 + Retry-After (joins / fans' other requests) | other refusals and errors | acknowledged tickets missing | activated twice | oversold seats | confirmed reservations lost | outbox messages lost | joins / activations flowing again after |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut details = String::new();
    for (run, findings) in rows {
        let answers = &run.phase.answers;
        let of_kind = |kind: &str, wanted: &dyn Fn(&str) -> bool| -> usize {
            answers
                .iter()
                .filter(|((k, label), _)| *k == kind && wanted(label))
                .map(|(_, n)| n)
                .sum()
        };
        let tried = of_kind("join", &|_| true);
        let acknowledged = of_kind("join", &|label| label == OK);
        let refused = of_kind("join", &|label| label == RETRY_LATER);
        let refused_other: usize = answers
            .iter()
            .filter(|((kind, label), _)| *kind != "join" && label == RETRY_LATER)
            .map(|(_, n)| n)
            .sum();
        let others: HashMap<String, usize> = answers
            .iter()
            .filter(|((_, label), _)| ![OK, RETRY_LATER, CUT].contains(&label.as_str()))
            .map(|((kind, label), n)| (format!("{kind}: {label}"), *n))
            .collect();
        let others = if others.is_empty() {
            "0".to_owned()
        } else {
            format_counts(&others.iter().map(|(k, n)| (k.as_str(), *n)).collect())
        };
        // A restart the fault did not ask for is a crash: it belongs in the row.
        let mut notes: Vec<String> = run.failure.iter().cloned().collect();
        let crashed: HashMap<&str, usize> = run
            .restarts
            .iter()
            .filter(|service| run.fault.strip_prefix("kill-") != Some(service.as_str()))
            .fold(HashMap::new(), |mut counts, service| {
                *counts.entry(service.as_str()).or_default() += 1;
                counts
            });
        if !crashed.is_empty() {
            notes.push(format!(
                "then not running, started again by the supervisor: {}",
                format_counts(&crashed)
            ));
        }
        let fault = format!(
            "{} ({:.1} s{})",
            describe(&run.fault),
            run.fault_seconds,
            notes
                .iter()
                .map(|note| format!("; {note}"))
                .collect::<String>()
        );
        let messages = findings.lost_messages.map(|(lost, pending)| {
            if pending == 0 {
                lost.to_string()
            } else {
                format!("{lost} (+{pending} still in the outbox)")
            }
        });
        table.push_str(&format!(
            "| {fault} | {tried} | {acknowledged} | {refused} / {refused_other} | {others} | {} | {} | {} | {} | {} | {} / {} |\n",
            cell(findings.missing_tickets),
            cell(findings.activated_twice),
            cell(findings.oversold),
            cell(findings.lost_reservations),
            messages.unwrap_or_else(|| "not checked".into()),
            seconds(run.joins_back()),
            seconds(run.activations_back()),
        ));
        let fans: HashMap<&str, usize> = run
            .phase
            .fans
            .iter()
            .map(|(ending, n)| (ending.as_str(), *n))
            .collect();
        let cuts: HashMap<&str, usize> = answers
            .iter()
            .filter(|((_, label), _)| label == CUT)
            .map(|((kind, _), n)| (*kind, *n))
            .collect();
        details.push_str(&format!(
            "- {}: fans' journeys ended: {}; streams cut: {}; checked so far: {} acknowledged \
             tickets, {} confirmed reservations, {} tickets with an activation in the decisions \
             topic; activations fans saw that the topic lacks: {}; tickets activated and also \
             abandoned: {}{}\n",
            describe(&run.fault),
            if fans.is_empty() {
                "none".to_owned()
            } else {
                format_counts(&fans)
            },
            if cuts.is_empty() {
                "none".to_owned()
            } else {
                format_counts(&cuts)
            },
            findings.checked.0,
            findings.checked.1,
            cell(findings.decided),
            cell(findings.unrecorded),
            cell(findings.activated_and_abandoned),
            if findings.errors.is_empty() {
                String::new()
            } else {
                format!("; checks that failed: {}", findings.errors.join("; "))
            },
        ));
    }
    format!(
        "{table}\n\
         Per fault: {} s of steady load, the fault, {} s of recovery; {} joins/s, one \
         joiner in {} a fan (half polling, half streaming) who buys one seat once let in; \
         {} streams held on a paused event; every request's deadline {} s.\n\n{details}",
        args.baseline_seconds,
        args.recovery_seconds,
        args.join_rate,
        args.fan_every,
        args.streams,
        args.request_timeout_seconds,
    )
}
