//! `seat-load`: thousands of seat-map viewers on one reservation instance while seats
//! are held at a steady rate, against a running stack (k6 cannot hold SSE streams).
//!
//! It creates an event with a large layout, makes real tickets active, then runs the
//! same hold load twice: with a few viewers, and with all of them. For each run it
//! measures what a hold costs the database (transactions per hold, from
//! `pg_stat_database`, and the service's seat-map reads) and how long a change takes
//! to reach a viewer (from the hold's response to the `seat_changes` event that shows
//! the seat held, on a sample of viewers; the rest only drain their streams). Prints a
//! Markdown report on stdout (progress goes to stderr); `k6/run.sh seats` appends it to
//! `docs/benchmarks.md`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use e2e::load::{
    format_counts, join_tickets, percentile, root_cause, rss_bytes, seat_ids, LoadEvent, StackArgs,
};
use e2e::sse::EventStream;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
#[command(about = "Hold seats under thousands of seat-map viewers; measure the cost")]
struct Args {
    #[command(flatten)]
    stack: StackArgs,
    /// Reservation service base URL (one instance: its viewers and holds).
    #[arg(long, env = "RESERVATION_URL", default_value = "http://127.0.0.1:8081")]
    reservation_url: String,
    /// The database the reservation service uses, for its transaction counts.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Seat-map viewers in the second run.
    #[arg(long, env = "SEAT_VIEWERS", default_value_t = 10_000)]
    viewers: usize,
    /// Viewers in the first run.
    #[arg(long, env = "SEAT_FEW_VIEWERS", default_value_t = 10)]
    few_viewers: usize,
    /// Viewers whose every change is timed (the others only drain their streams).
    #[arg(long, env = "SEAT_TIMED_VIEWERS", default_value_t = 100)]
    timed_viewers: usize,
    /// Rows of the layout.
    #[arg(long, env = "SEAT_ROWS", default_value_t = 100)]
    rows: u32,
    /// Seats per row.
    #[arg(long, env = "SEAT_SEATS_PER_ROW", default_value_t = 500)]
    seats_per_row: u32,
    /// Holds per second.
    #[arg(long, env = "SEAT_HOLD_RATE", default_value_t = 300)]
    hold_rate: u32,
    /// Seconds of holds per run.
    #[arg(long, env = "SEAT_HOLD_SECONDS", default_value_t = 20)]
    hold_seconds: u32,
    /// Seats per hold.
    #[arg(long, env = "SEAT_SEATS_PER_HOLD", default_value_t = 2)]
    seats_per_hold: usize,
    /// Joins and stream connections in flight at once.
    #[arg(long, env = "SEAT_CONNECT_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// The reservation service's process id, to sample its resident memory.
    #[arg(long, env = "SERVER_PID")]
    server_pid: Option<u32>,
    /// Give up on any phase after this many seconds.
    #[arg(long, env = "SEAT_TIMEOUT_SECONDS", default_value_t = 600)]
    timeout_seconds: u64,
}

/// When each timed viewer saw each seat become held.
type Sightings = Arc<Mutex<Vec<(String, Instant)>>>;

/// One viewer's stream, read until the tool ends.
struct Viewer {
    /// Set for a timed viewer.
    sightings: Option<Sightings>,
    changes: Arc<AtomicUsize>,
}

/// One run's measurements.
struct RunResult {
    viewers: usize,
    holds: usize,
    statuses: HashMap<String, usize>,
    transactions: i64,
    seat_map_reads: f64,
    latencies_ms: Vec<f64>,
    changes_per_viewer: f64,
    rss: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.few_viewers <= args.viewers,
        "SEAT_FEW_VIEWERS > SEAT_VIEWERS"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let database = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("connect to the database")?;

    let holds_per_run = (args.hold_rate * args.hold_seconds) as usize;
    let seats_needed = 2 * holds_per_run * args.seats_per_hold;
    let layout_seats = (args.rows * args.seats_per_row) as usize;
    anyhow::ensure!(
        seats_needed <= layout_seats,
        "{seats_needed} seats needed, the layout has {layout_seats}"
    );
    let event = |state: &str| {
        json!({
            "name": "Seat map load test",
            "state": state,
            "activation": {"batch_size": 5000, "interval_ms": 100, "max_active": null,
                           "active_ttl_seconds": 1800, "grace_seconds": 600},
            "seats": {"rows": args.rows, "seats_per_row": args.seats_per_row},
        })
    };
    let (load_event, _) =
        LoadEvent::create(&args.stack, &http, "seat-load", &event("passthrough")).await?;
    let event_id = &load_event.event_id;
    eprintln!(
        "event {event_id}: {layout_seats} seats; making {} tickets active",
        2 * holds_per_run
    );
    let tokens = active_tickets(&http, &args, event_id, 2 * holds_per_run).await?;
    let seat_ids = seat_ids(&http, &args.reservation_url, event_id).await?;

    let stream_client = reqwest::Client::builder().http1_only().build()?;
    let url = format!(
        "{}/v1/events/{event_id}/seats/events?diffs=true",
        args.reservation_url
    );
    let mut viewers = Vec::new();
    let mut results = Vec::new();
    let mut connect_seconds = 0.0;
    for (run, wanted_viewers) in [args.few_viewers, args.viewers].into_iter().enumerate() {
        let started = Instant::now();
        open_viewers(&stream_client, &url, &args, &mut viewers, wanted_viewers).await?;
        if run == 1 {
            connect_seconds = started.elapsed().as_secs_f64();
        }
        let tickets = &tokens[run * holds_per_run..(run + 1) * holds_per_run];
        let seats = &seat_ids[run * holds_per_run * args.seats_per_hold..];
        results.push(hold_run(&http, &args, &database, event_id, &viewers, tickets, seats).await?);
    }

    eprintln!("closing {event_id}");
    load_event.update(&event("closed")).await?;
    println!("{}", report(&args, &results, connect_seconds));
    Ok(())
}

/// Joins `count` tickets, has each fan read its status (only received tickets are let
/// in) and waits until all are active.
async fn active_tickets(
    http: &reqwest::Client,
    args: &Args,
    event_id: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let tokens = join_tickets(
        http,
        &args.stack.waiting_room_url,
        event_id,
        count,
        args.concurrency,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut waiting: Vec<&String> = tokens.iter().collect();
    while !waiting.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "tickets did not become active in time"
        );
        let states: Vec<anyhow::Result<bool>> = futures::stream::iter(waiting.iter().copied())
            .map(|token| async move {
                let status: Value = http
                    .get(format!(
                        "{}/v1/tickets/{token}",
                        args.stack.waiting_room_url
                    ))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                Ok(status["state"] == "active")
            })
            .buffered(args.concurrency)
            .collect()
            .await;
        let mut still = Vec::new();
        for (token, active) in waiting.into_iter().zip(states) {
            if !active? {
                still.push(token);
            }
        }
        eprintln!("  {} of {count} active", count - still.len());
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(tokens)
}

/// Opens viewers until there are `wanted`, each past its first (whole) map.
async fn open_viewers(
    client: &reqwest::Client,
    url: &str,
    args: &Args,
    viewers: &mut Vec<Viewer>,
    wanted: usize,
) -> anyhow::Result<()> {
    let to_open = wanted.saturating_sub(viewers.len());
    if to_open == 0 {
        return Ok(());
    }
    eprintln!("opening {to_open} seat-map streams ({wanted} in all)");
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let opened = Arc::new(AtomicUsize::new(0));
    let first = viewers.len();
    let connecting: Vec<_> = (first..wanted)
        .map(|index| {
            let timed = index < args.timed_viewers;
            let (client, url, gate, opened) =
                (client.clone(), url.to_owned(), gate.clone(), opened.clone());
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.expect("gate open");
                let viewer = follow(&client, &url, timed).await;
                drop(permit);
                let done = opened.fetch_add(1, Ordering::Relaxed) + 1;
                if done.is_multiple_of(1_000) {
                    eprintln!("  {done} open");
                }
                viewer
            })
        })
        .collect();
    let deadline = Duration::from_secs(args.timeout_seconds);
    let results = tokio::time::timeout(deadline, futures::future::join_all(connecting))
        .await
        .context("viewers did not connect in time")?;
    let mut refusals: HashMap<String, usize> = HashMap::new();
    for result in results {
        match result? {
            Ok(viewer) => viewers.push(viewer),
            Err(why) => *refusals.entry(why).or_default() += 1,
        }
    }
    anyhow::ensure!(
        refusals.is_empty(),
        "viewers refused: {}",
        format_counts(&refusals.iter().map(|(why, n)| (why.as_str(), *n)).collect())
    );
    Ok(())
}

/// Connects one viewer and reads its first map; then reads on in the background.
async fn follow(client: &reqwest::Client, url: &str, timed: bool) -> Result<Viewer, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| root_cause(&error))?;
    if response.status() != 200 {
        return Err(response.status().to_string());
    }
    let changes = Arc::new(AtomicUsize::new(0));
    let counted = changes.clone();
    if timed {
        let sightings: Sightings = Arc::default();
        let seen = sightings.clone();
        let mut stream = EventStream::new(response);
        match stream.next_event().await {
            Some(event) if event.event == "seats" => {}
            other => return Err(format!("first event: {:?}", other.map(|e| e.event))),
        }
        tokio::spawn(async move {
            while let Some(event) = stream.next_event().await {
                let received = Instant::now();
                counted.fetch_add(1, Ordering::Relaxed);
                let body = event.json();
                let mut seen = seen.lock().expect("sightings");
                for seat in body["seats"].as_array().into_iter().flatten() {
                    if seat["state"] == "held" {
                        let seat_id = seat["seat_id"].as_str().unwrap_or_default();
                        seen.push((seat_id.to_owned(), received));
                    }
                }
            }
        });
        return Ok(Viewer {
            sightings: Some(sightings),
            changes,
        });
    }
    // Untimed: count events (frames end with a blank line) without parsing them.
    let mut body = response.bytes_stream();
    let mut previous_newline = false;
    let mut first_seen = false;
    while !first_seen {
        let chunk = body
            .next()
            .await
            .ok_or("closed before the first map")?
            .map_err(|error| root_cause(&error))?;
        let ends = count_frame_ends(&chunk, &mut previous_newline);
        first_seen = ends > 0;
        counted.fetch_add(ends.saturating_sub(1), Ordering::Relaxed);
    }
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            let ends = count_frame_ends(&chunk, &mut previous_newline);
            counted.fetch_add(ends, Ordering::Relaxed);
        }
    });
    Ok(Viewer {
        sightings: None,
        changes,
    })
}

/// Blank lines ending an SSE frame in `chunk` (`\n\n`, also across chunks).
fn count_frame_ends(chunk: &[u8], previous_newline: &mut bool) -> usize {
    let mut ends = 0;
    for &byte in chunk {
        let newline = byte == b'\n';
        if newline && *previous_newline {
            ends += 1;
        }
        *previous_newline = newline;
    }
    ends
}

async fn transactions(database: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
         WHERE datname = current_database()",
    )
    .fetch_one(database)
    .await?)
}

async fn seat_map_reads(http: &reqwest::Client, args: &Args) -> anyhow::Result<f64> {
    let metrics = http
        .get(format!("{}/metrics", args.reservation_url))
        .send()
        .await?
        .text()
        .await?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("reservation_seat_map_reads_total "))
        .and_then(|value| value.trim().parse().ok())
        .context("reservation_seat_map_reads_total in /metrics")
}

/// Holds `tickets.len()` reservations at the configured rate, `seats_per_hold` seats
/// each from `seats`, and measures the run.
async fn hold_run(
    http: &reqwest::Client,
    args: &Args,
    database: &sqlx::PgPool,
    event_id: &str,
    viewers: &[Viewer],
    tickets: &[String],
    seats: &[String],
) -> anyhow::Result<RunResult> {
    eprintln!(
        "{} holds at {}/s under {} viewers",
        tickets.len(),
        args.hold_rate,
        viewers.len()
    );
    let changes_before: usize = viewers
        .iter()
        .map(|v| v.changes.load(Ordering::Relaxed))
        .sum();
    let sightings_before: Vec<usize> = viewers
        .iter()
        .map(|v| {
            v.sightings
                .as_ref()
                .map_or(0, |s| s.lock().expect("sightings").len())
        })
        .collect();
    // Let the stats of earlier work reach pg_stat_database first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let transactions_before = transactions(database).await?;
    let reads_before = seat_map_reads(http, args).await?;
    let url = format!("{}/v1/events/{event_id}/reservations", args.reservation_url);
    let started = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.hold_rate.max(1)));
    let mut holding = Vec::with_capacity(tickets.len());
    let mut rss_peak = 0;
    for (index, token) in tickets.iter().enumerate() {
        tokio::time::sleep_until(started + interval * u32::try_from(index)?).await;
        if index % args.hold_rate as usize == 0 {
            if let Some(rss) = args.server_pid.and_then(rss_bytes) {
                rss_peak = rss_peak.max(rss);
            }
        }
        let chosen = &seats[index * args.seats_per_hold..(index + 1) * args.seats_per_hold];
        let request = http
            .post(&url)
            .bearer_auth(token)
            .json(&json!({"seat_ids": chosen}));
        let chosen = chosen.to_vec();
        holding.push(tokio::spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) => root_cause(&error),
            };
            (outcome, chosen, Instant::now())
        }));
    }
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let mut held_at: HashMap<String, Instant> = HashMap::new();
    for hold in futures::future::join_all(holding).await {
        let (outcome, chosen, answered) = hold?;
        if outcome == "201" {
            held_at.extend(chosen.into_iter().map(|seat| (seat, answered)));
        }
        *statuses.entry(outcome).or_default() += 1;
    }
    // The last changes reach the viewers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let transactions_after = transactions(database).await?;
    let reads_after = seat_map_reads(http, args).await?;
    let changes_after: usize = viewers
        .iter()
        .map(|v| v.changes.load(Ordering::Relaxed))
        .sum();
    let mut latencies_ms = Vec::new();
    for (viewer, before) in viewers.iter().zip(sightings_before) {
        let Some(sightings) = &viewer.sightings else {
            continue;
        };
        for (seat, seen) in &sightings.lock().expect("sightings")[before..] {
            if let Some(answered) = held_at.get(seat) {
                latencies_ms.push(seen.saturating_duration_since(*answered).as_secs_f64() * 1000.0);
            }
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    Ok(RunResult {
        viewers: viewers.len(),
        holds: tickets.len(),
        statuses,
        transactions: transactions_after - transactions_before,
        seat_map_reads: reads_after - reads_before,
        latencies_ms,
        changes_per_viewer: (changes_after - changes_before) as f64 / viewers.len().max(1) as f64,
        rss: args
            .server_pid
            .and_then(rss_bytes)
            .map(|rss| rss.max(rss_peak)),
    })
}

fn report(args: &Args, results: &[RunResult], connect_seconds: f64) -> String {
    let mut table = String::from(
        "| viewers | holds | answers | DB transactions per hold | seat-map reads per hold | change→viewer p50 / p95 / p99 / max (timed) | events per viewer | server RSS |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for run in results {
        let holds = run.holds.max(1) as f64;
        let answers: HashMap<&str, usize> = run
            .statuses
            .iter()
            .map(|(status, n)| (status.as_str(), *n))
            .collect();
        let lat = &run.latencies_ms;
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.3} | {:.0} / {:.0} / {:.0} / {:.0} ms ({} timed) | {:.1} | {} |\n",
            run.viewers,
            run.holds,
            format_counts(&answers),
            run.transactions as f64 / holds,
            run.seat_map_reads / holds,
            percentile(lat, 0.50),
            percentile(lat, 0.95),
            percentile(lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len(),
            run.changes_per_viewer,
            run.rss
                .map_or("n/a".to_owned(), |rss| format!("{:.0} MiB", rss as f64 / 1048576.0)),
        ));
    }
    format!(
        "{table}\n\
         Layout {} × {} = {} seats; {} holds/s for {} s per run, {} seats each, one \
         reservation instance; {} viewers timed, the rest drain their streams. The \
         second run's viewers connected in {connect_seconds:.1} s. DB transactions count \
         everything on the database meanwhile (holds, the outbox relay, the sweeper).",
        args.rows,
        args.seats_per_row,
        args.rows * args.seats_per_row,
        args.hold_rate,
        args.hold_seconds,
        args.seats_per_hold,
        args.timed_viewers.min(args.viewers),
    )
}
