//! The draw, in the open: what the public event endpoint says about a shuffled
//! pre-queue, and `waiting-room verify-draw`, which anyone with read access to the
//! tickets topic runs to recompute every rank from the Kafka records and the seed.
//!
//! Before the start only the seed's SHA-256 (the commitment) is shown; from the start on
//! the seed, and once the activator fixed it, the pre-queue's partition and offsets.

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use contract::catalog::EventConfig;
use contract::config::CommonConfig;
use contract::draw::{self, DrawSeed};
use contract::schedule::{SalePhase, Schedule};
use contract::ticket_record::TicketRecord;
use contract::topic_reader::TopicReader;
use serde::{Deserialize, Serialize};

/// A shuffled pre-queue's draw as fans and auditors see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicDraw {
    /// SHA-256 of the seed's 32 bytes, in hex: public from the moment the sale is
    /// scheduled, so the seed cannot be chosen after the pre-queue is known.
    pub commitment: String,
    /// The seed (64 hex digits), from the start on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The pre-queue, once fixed: offsets `[first_offset, end_offset)` of `partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<i64>,
}

impl PublicDraw {
    /// The draw of `event` as it may be shown at `now`; `None` without one.
    pub fn of(event: &EventConfig, now: DateTime<Utc>) -> Option<Self> {
        let draw = event.draw?;
        let started = event.schedule.is_some_and(|schedule| schedule.started(now));
        Some(Self {
            commitment: draw.seed.commitment(),
            seed: started.then(|| draw.seed.to_hex()),
            partition: draw.range.map(|range| range.partition),
            first_offset: draw.range.map(|range| range.first),
            end_offset: draw.range.map(|range| range.end),
        })
    }
}

/// A scheduled sale as the public and admin event views show it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SaleView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Where the schedule stands now (scheduled events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<SalePhase>,
    /// A shuffled pre-queue's draw: its commitment, then its seed and offsets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draw: Option<PublicDraw>,
}

impl SaleView {
    pub fn of(event: &EventConfig, now: DateTime<Utc>) -> Self {
        Self {
            schedule: event.schedule,
            phase: event.schedule.map(|_| event.phase(now)),
            draw: PublicDraw::of(event, now),
        }
    }
}

/// `waiting-room verify-draw`: recomputes a pre-queue's ranks. Prints one JSON line per
/// ticket, by rank (`rank`, `queue_number`, `offset`, `ticket_id`), and a summary on
/// standard error; fails if the seed does not match its commitment.
#[derive(Debug, Clone, Args)]
pub struct VerifyDraw {
    /// The event whose draw to verify.
    #[arg(long)]
    pub event: String,

    /// The waiting room's public URL: the draw's commitment, seed and offsets are read
    /// from `GET /v1/events/{event}` there.
    #[arg(
        long,
        env = "WAITING_ROOM_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// The seed (64 hex digits), if not the one the event publishes.
    #[arg(long)]
    pub seed: Option<String>,

    /// The commitment as it was published before the start (64 hex digits), if kept:
    /// checked against the seed instead of trusting the one the endpoint shows now.
    #[arg(long)]
    pub commitment: Option<String>,
}

/// The event as `GET /v1/events/{event}` shows it (only what the audit needs).
#[derive(Debug, Deserialize)]
struct PublishedEvent {
    draw: Option<PublicDraw>,
}

/// One ticket's recomputed place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RankedTicket {
    pub rank: u64,
    /// Its place in line: the pre-queue's first offset plus its rank.
    pub queue_number: i64,
    pub offset: i64,
    /// `None` for a record that is not a ticket (it holds a place all the same).
    pub ticket_id: Option<uuid::Uuid>,
}

impl VerifyDraw {
    /// Verifies, then prints every ticket's place, by rank.
    pub async fn run(&self, common: &CommonConfig) -> anyhow::Result<()> {
        for ticket in self.ranks(common).await? {
            println!("{}", serde_json::to_string(&ticket)?);
        }
        Ok(())
    }

    /// Checks the seed against its commitment and recomputes every place, by rank.
    pub async fn ranks(&self, common: &CommonConfig) -> anyhow::Result<Vec<RankedTicket>> {
        let url = format!(
            "{}/v1/events/{}",
            self.url.trim_end_matches('/'),
            self.event
        );
        let http = platform::tls::https_client(
            std::time::Duration::from_secs(10),
            common.jwks_ca_file.as_deref(),
        )?;
        let published: PublishedEvent = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("the event at {url}"))?;
        let Some(public) = published.draw else {
            bail!(
                "event '{}' has no draw (its order is not shuffle_prequeue)",
                self.event
            );
        };
        let seed_hex = self
            .seed
            .clone()
            .or(public.seed.clone())
            .context("the seed is not published yet (the sale has not started): pass --seed")?;
        let seed = DrawSeed::from_hex(&seed_hex).context("the seed must be 64 hex digits")?;
        let commitment = self
            .commitment
            .as_deref()
            .map_or(public.commitment.as_str(), str::trim);
        if !seed.commitment().eq_ignore_ascii_case(commitment) {
            bail!(
                "the seed does not match the commitment {commitment} (its SHA-256 is {})",
                seed.commitment()
            );
        }
        let (Some(partition), Some(first), Some(end)) =
            (public.partition, public.first_offset, public.end_offset)
        else {
            bail!("the pre-queue is not fixed yet: the activator fixes it at the start");
        };
        let records = read_records(common, partition, first, end).await?;
        let size = u64::try_from(end - first).unwrap_or(0);
        let mut ranked: Vec<RankedTicket> = records
            .into_iter()
            .map(|(offset, ticket_id)| {
                let rank = draw::rank(&seed, size, u64::try_from(offset - first).unwrap_or(0));
                RankedTicket {
                    rank,
                    queue_number: first + i64::try_from(rank).unwrap_or(0),
                    offset,
                    ticket_id,
                }
            })
            .collect();
        ranked.sort_by_key(|ticket| ticket.rank);
        if !ranked.iter().map(|ticket| ticket.rank).eq(0..size) {
            bail!("the ranks are not a permutation of 0..{size}");
        }
        eprintln!(
            "verified: the seed matches its commitment {commitment}; {size} places drawn for offsets {first}..{end} of partition {partition}"
        );
        Ok(ranked)
    }
}

/// The records at offsets `[first, end)` of the tickets topic's `partition`: each
/// offset with its ticket id (`None` for a record that is not a ticket).
async fn read_records(
    common: &CommonConfig,
    partition: i32,
    first: i64,
    end: i64,
) -> anyhow::Result<Vec<(i64, Option<uuid::Uuid>)>> {
    let kafka = common.kafka.clone();
    let topic = common.tickets_topic.clone();
    let records = tokio::task::spawn_blocking(move || {
        TopicReader::new(&kafka, &topic)?.range(partition, first, end)
    })
    .await??;
    Ok(records
        .into_iter()
        .map(|record| {
            let ticket = TicketRecord::parse(record.payload.as_deref()).ok();
            (record.offset, ticket.map(|ticket| ticket.ticket_id))
        })
        .collect())
}
