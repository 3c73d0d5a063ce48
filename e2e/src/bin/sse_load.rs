//! `sse-load`: holds thousands of live ticket streams against a running waiting room
//! (k6 cannot hold SSE streams) and measures what the fans would see.
//!
//! It creates a paused event of its own, joins N real tickets, opens one stream per
//! ticket, then opens the event so the activator drains it. For every position and
//! terminal event a stream receives, the delay from the activation tick (the serving
//! announcement on Redis pub/sub, received by this tool) to the stream is recorded.
//! The streams open in stages (`--rss-at`), and the server's resident memory is sampled
//! before the first and after each stage: the difference between two samples over the
//! streams opened in between is the memory one more stream costs, without the process's
//! baseline (and without what the joins left behind).
//! Prints a Markdown report on stdout (progress goes to stderr); `k6/run.sh sse`
//! appends it to `docs/benchmarks.md`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use e2e::load::{
    format_counts, join_tickets, percentile, root_cause, rss_bytes, LoadEvent, StackArgs,
};
use e2e::sse::EventStream;
use futures::StreamExt;
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
#[command(about = "Hold N live ticket streams and measure tick-to-client delay")]
struct Args {
    #[command(flatten)]
    stack: StackArgs,
    /// Redis URL, to hear the activator's announcements (tick times).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
    /// The deployment's Redis key prefix.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "wr")]
    redis_key_prefix: String,
    /// Concurrent streams (one real ticket each).
    #[arg(long, env = "SSE_STREAMS", default_value_t = 20_000)]
    streams: usize,
    /// Tickets the activator lets through per tick.
    #[arg(long, env = "SSE_BATCH_SIZE", default_value_t = 1_000)]
    batch_size: u32,
    /// Milliseconds between ticks.
    #[arg(long, env = "SSE_INTERVAL_MS", default_value_t = 1_000)]
    interval_ms: u32,
    /// Joins and stream connections in flight at once.
    #[arg(long, env = "SSE_CONNECT_CONCURRENCY", default_value_t = 256)]
    concurrency: usize,
    /// The waiting-room's process id, to sample its resident memory.
    #[arg(long, env = "SERVER_PID")]
    server_pid: Option<u32>,
    /// Open-stream counts at which to pause and sample the server's RSS on the way up
    /// (besides before the first stream and with all of them open).
    #[arg(
        long,
        env = "SSE_RSS_AT",
        value_delimiter = ',',
        default_value = "2000"
    )]
    rss_at: Vec<usize>,
    /// Give up waiting for the drain after this many seconds.
    #[arg(long, env = "SSE_TIMEOUT_SECONDS", default_value_t = 300)]
    timeout_seconds: u64,
}

/// How long the server gets after a stage of connections before its RSS is read.
const RSS_SETTLE: Duration = Duration::from_secs(1);

/// The server's resident memory with `streams` streams open.
struct RssSample {
    streams: usize,
    rss: Option<u64>,
}

/// What one stream saw.
#[derive(Default)]
struct StreamOutcome {
    connected: bool,
    refused: Option<String>,
    /// (serving number, when received) for every event after the first.
    deliveries: Vec<(i64, Instant)>,
    terminal: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let event = |state: &str| {
        serde_json::json!({
            "name": "SSE load test",
            "state": state,
            "activation": {"batch_size": args.batch_size, "interval_ms": args.interval_ms,
                           "max_active": null, "active_ttl_seconds": 600, "grace_seconds": 600},
        })
    };
    let (load_event, created) =
        LoadEvent::create(&args.stack, &http, "sse-load", &event("paused")).await?;
    let event_id = &load_event.event_id;
    let partition = created["partition"]
        .as_i64()
        .context("partition in the event")?;
    eprintln!(
        "event {event_id} on partition {partition}; joining {} tickets",
        args.streams
    );

    // A client of its own, dropped (its idle connections closed) before the streams
    // open: the server counts them against its connection cap until it times them out.
    let joiner = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let tokens = join_tickets(
        &joiner,
        &args.stack.waiting_room_url,
        event_id,
        args.streams,
        args.concurrency,
    )
    .await?;
    drop(joiner);
    let ticks = listen_to_ticks(&args, partition).await?;

    eprintln!("opening {} streams", tokens.len());
    let total = tokens.len();
    let connected = Arc::new(AtomicUsize::new(0));
    let settled = Arc::new(AtomicUsize::new(0));
    let stream_client = reqwest::Client::builder().http1_only().build()?;
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut stages: Vec<usize> = args
        .rss_at
        .iter()
        .copied()
        .filter(|&count| count > 0 && count < total)
        .collect();
    stages.sort_unstable();
    stages.dedup();
    stages.push(total);
    let sample = || async {
        // Let the last connections' transient allocations go before reading RSS.
        tokio::time::sleep(RSS_SETTLE).await;
        args.server_pid.and_then(rss_bytes)
    };
    let mut rss_samples = vec![RssSample {
        streams: 0,
        rss: sample().await,
    }];
    let mut tokens = tokens.into_iter();
    let mut handles = Vec::with_capacity(total);
    let mut connect_time = Duration::ZERO;
    for stage in stages {
        let connect_started = Instant::now();
        handles.extend(tokens.by_ref().take(stage - handles.len()).map(|token| {
            let url = format!("{}/v1/tickets/{token}/events", args.stack.waiting_room_url);
            let (client, gate) = (stream_client.clone(), gate.clone());
            let (connected, settled) = (connected.clone(), settled.clone());
            tokio::spawn(async move { follow(client, url, gate, connected, settled).await })
        }));
        while settled.load(Ordering::Relaxed) + connected.load(Ordering::Relaxed) < stage {
            tokio::time::sleep(Duration::from_millis(200)).await;
            anyhow::ensure!(
                connect_started.elapsed() < Duration::from_secs(args.timeout_seconds),
                "streams did not connect in time"
            );
        }
        connect_time += connect_started.elapsed();
        let streams = connected.load(Ordering::Relaxed);
        eprintln!(
            "  {streams} connected, {} refused or broken",
            settled.load(Ordering::Relaxed)
        );
        rss_samples.push(RssSample {
            streams,
            rss: sample().await,
        });
    }
    let connect_seconds = connect_time.as_secs_f64();
    let rss_connected = rss_samples.last().and_then(|sample| sample.rss);

    eprintln!("all streams open; opening the event");
    load_event.update(&event("open")).await?;
    let drain_started = Instant::now();
    let mut rss_peak = rss_connected.unwrap_or(0);
    let deadline = drain_started + Duration::from_secs(args.timeout_seconds);
    let waiting = futures::future::join_all(handles);
    tokio::pin!(waiting);
    let results = loop {
        tokio::select! {
            results = &mut waiting => break results,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(rss) = args.server_pid.and_then(rss_bytes) {
                    rss_peak = rss_peak.max(rss);
                }
                anyhow::ensure!(Instant::now() < deadline, "the drain did not finish in time");
            }
        }
    };
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    eprintln!("drained in {drain_seconds:.1} s; closing the event (its partition comes back once its fans' active time runs out)");
    load_event.update(&event("closed")).await?;

    let ticks = ticks.lock().expect("tick times").clone();
    let outcomes: Vec<StreamOutcome> = results.into_iter().filter_map(Result::ok).collect();
    println!(
        "{}",
        report(
            &args,
            &outcomes,
            &ticks,
            connect_seconds,
            drain_seconds,
            &rss_samples,
            rss_peak
        )
    );
    Ok(())
}

/// Records when each serving number of the partition was announced.
async fn listen_to_ticks(
    args: &Args,
    partition: i64,
) -> anyhow::Result<Arc<Mutex<HashMap<i64, Instant>>>> {
    let client = redis::Client::open(args.redis_url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("{}:serving", args.redis_key_prefix))
        .await?;
    let ticks = Arc::new(Mutex::new(HashMap::new()));
    let recorded = ticks.clone();
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let received = Instant::now();
            let Ok(announcement) =
                serde_json::from_slice::<serde_json::Value>(message.get_payload_bytes())
            else {
                continue;
            };
            if announcement["partition"].as_i64() == Some(partition) {
                if let Some(serving) = announcement["serving"].as_i64() {
                    recorded
                        .lock()
                        .expect("tick times")
                        .insert(serving, received);
                }
            }
        }
    });
    Ok(ticks)
}

async fn follow(
    client: reqwest::Client,
    url: String,
    gate: Arc<Semaphore>,
    connected: Arc<AtomicUsize>,
    settled: Arc<AtomicUsize>,
) -> StreamOutcome {
    let mut outcome = StreamOutcome::default();
    let mut stream = {
        let _permit = gate.acquire().await.expect("gate open");
        let response = match client.get(&url).send().await {
            Ok(response) if response.status() == 200 => response,
            Ok(response) => {
                outcome.refused = Some(response.status().to_string());
                settled.fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
            Err(error) => {
                outcome.refused = Some(root_cause(&error));
                settled.fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
        };
        let mut stream = EventStream::new(response);
        if stream.next_event().await.is_none() {
            outcome.refused = Some("closed before the first event".into());
            settled.fetch_add(1, Ordering::Relaxed);
            return outcome;
        }
        stream
    };
    outcome.connected = true;
    connected.fetch_add(1, Ordering::Relaxed);
    while let Some(event) = stream.next_event().await {
        let received = Instant::now();
        if let Some(serving) = event.id.as_deref().and_then(|id| id.parse().ok()) {
            outcome.deliveries.push((serving, received));
        }
        if event.event != "position" {
            outcome.terminal = Some(event.event);
            break;
        }
    }
    outcome
}

fn report(
    args: &Args,
    outcomes: &[StreamOutcome],
    ticks: &HashMap<i64, Instant>,
    connect_seconds: f64,
    drain_seconds: f64,
    rss_samples: &[RssSample],
    rss_peak: u64,
) -> String {
    let rss_connected = rss_samples.last().and_then(|sample| sample.rss);
    let connected = outcomes.iter().filter(|o| o.connected).count();
    let mut refusals: HashMap<&str, usize> = HashMap::new();
    for refused in outcomes.iter().filter_map(|o| o.refused.as_deref()) {
        *refusals.entry(refused).or_default() += 1;
    }
    let mut terminals: HashMap<&str, usize> = HashMap::new();
    for terminal in outcomes.iter().filter_map(|o| o.terminal.as_deref()) {
        *terminals.entry(terminal).or_default() += 1;
    }
    let dropped = outcomes
        .iter()
        .filter(|o| o.connected && o.terminal.is_none())
        .count();
    let mut delays_ms: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.deliveries.iter())
        .filter_map(|(serving, received)| {
            let announced = ticks.get(serving)?;
            Some(received.saturating_duration_since(*announced).as_secs_f64() * 1000.0)
        })
        .collect();
    let deliveries: usize = outcomes.iter().map(|o| o.deliveries.len()).sum();
    delays_ms.sort_by(f64::total_cmp);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    format!(
        "| streams | connected | refused | dropped (no terminal event) | terminal events | deliveries (timed) | tick→client p50 / p95 / p99 / max | server RSS connected / peak | connect time | drain time |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | {} | {connected} | {} | {dropped} | {} | {deliveries} ({}) | {:.0} / {:.0} / {:.0} / {:.0} ms | {} / {:.0} MiB | {connect_seconds:.1} s | {drain_seconds:.1} s |\n\n\
         {}\n\n\
         Policy: {} per tick every {} ms, one queue, one waiting-room instance.{}",
        args.streams,
        outcomes.iter().filter(|o| o.refused.is_some()).count(),
        format_counts(&terminals),
        delays_ms.len(),
        percentile(&delays_ms, 0.50),
        percentile(&delays_ms, 0.95),
        percentile(&delays_ms, 0.99),
        delays_ms.last().copied().unwrap_or(f64::NAN),
        rss_connected.map_or("n/a".to_owned(), |rss| format!("{:.0}", mib(rss))),
        mib(rss_peak),
        memory_per_stream(rss_samples),
        args.batch_size,
        args.interval_ms,
        if refusals.is_empty() {
            String::new()
        } else {
            format!(" Refusals: {}.", format_counts(&refusals))
        },
    )
}

/// The server's memory per open stream: the marginal cost between the first stage and
/// all streams open, and the whole RSS divided by the streams.
fn memory_per_stream(samples: &[RssSample]) -> String {
    let known: Vec<(usize, u64)> = samples
        .iter()
        .filter_map(|sample| Some((sample.streams, sample.rss?)))
        .collect();
    let (Some(&(_, before)), Some(&(all, last))) = (known.first(), known.last()) else {
        return "Server memory per stream: n/a (no server pid).".to_owned();
    };
    let kib = |bytes: f64| bytes / 1024.0;
    let per_stream = |(from_streams, from_rss): (usize, u64),
                      (to_streams, to_rss): (usize, u64)| {
        kib((to_rss as f64 - from_rss as f64) / (to_streams as f64 - from_streams as f64))
    };
    let steps = known
        .iter()
        .map(|(streams, rss)| format!("{streams}: {:.0} MiB", *rss as f64 / (1024.0 * 1024.0)))
        .collect::<Vec<_>>()
        .join(", ");
    // The first stage after zero, so the baseline and the first connections' warm-up
    // (runtime, allocator) fall outside the difference.
    let marginal = match known.get(1) {
        Some(&first) if known.len() > 2 && all > first.0 => {
            format!("{:.1} KiB", per_stream(first, (all, last)))
        }
        _ => "n/a".to_owned(),
    };
    format!(
        "Server memory per open stream: marginal {marginal} (RSS difference between the \
         first stage and all {all} streams over the streams opened in between); \
         {:.1} KiB above the RSS before any stream; {:.1} KiB as RSS / streams. \
         RSS by open streams: {steps}.",
        if all > 0 {
            per_stream((0, before), (all, last))
        } else {
            f64::NAN
        },
        kib(last as f64 / all.max(1) as f64),
    )
}
