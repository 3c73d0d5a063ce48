//! The serving counters pushed to this instance: one Redis pub/sub subscription feeds
//! one `tokio::sync::watch` channel per queue (partition).
//!
//! Every live stream of a queue holds a receiver of that queue's channel and computes
//! its own fan's position from the latest announcement, so an activation tick costs one
//! pub/sub message per instance, not one Redis query per fan. A watch channel keeps only
//! the latest value: a slow stream skips to it and never delays the others.
//!
//! When the subscription breaks, the feed reconnects and republishes each queue's
//! current counter from Redis, so no stream stays behind on a message it missed. The
//! feed grows when the topic's partitions are raised online ([`ServingFeed::ensure`]).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use contract::redis_schema::RedisKeys;
use contract::serving_announcement::ServingAnnouncement;
use futures::StreamExt;
use platform::redis_connection::{RedisClient, RedisConnection};
use platform::retry::retry_until_ok;
use platform::supervisor::Supervisor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The latest announcement of one queue (`None` until this instance heard one).
pub type LatestAnnouncement = Option<Arc<ServingAnnouncement>>;

type Queue = Arc<watch::Sender<LatestAnnouncement>>;

/// The most queues a feed follows (the most partitions the admin API raises to).
const MAX_QUEUES: usize = 10_000;

#[derive(Clone)]
pub struct ServingFeed {
    queues: Arc<RwLock<Vec<Queue>>>,
}

impl ServingFeed {
    /// Subscribes to the deployment's serving channel and keeps doing so (reconnecting
    /// with backoff) until shutdown, under `supervisor`; `client` opens the
    /// subscription's own connection (to any node of a cluster, which forwards every
    /// message to all of them: the next one after a node fails).
    pub fn start(
        client: RedisClient,
        redis: RedisConnection,
        keys: RedisKeys,
        partitions: i32,
        supervisor: &Supervisor,
    ) -> anyhow::Result<Self> {
        let feed = Self {
            queues: Arc::default(),
        };
        feed.ensure(partitions);
        let shutdown = supervisor.shutdown().clone();
        let following = feed.clone();
        supervisor.spawn("serving feed", async move {
            following.run(client, redis, keys, shutdown).await;
            Ok(())
        });
        Ok(feed)
    }

    /// Follows `partitions` queues from now on (more after a raise; never fewer, never
    /// more than the most a topic may be raised to).
    pub fn ensure(&self, partitions: i32) {
        let wanted = usize::try_from(partitions).unwrap_or(0).min(MAX_QUEUES);
        if self
            .queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= wanted
        {
            return;
        }
        let mut queues = self.queues.write().unwrap_or_else(PoisonError::into_inner);
        while queues.len() < wanted {
            queues.push(Arc::new(watch::Sender::new(None)));
        }
    }

    fn snapshot(&self) -> Vec<Queue> {
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn queue(&self, partition: i32) -> Option<Queue> {
        let index = usize::try_from(partition).ok()?;
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .cloned()
    }

    /// A receiver of the queue's announcements; the current value counts as seen, so
    /// `changed()` wakes on the next one. `None` for a partition outside the topic.
    pub fn subscribe(&self, partition: i32) -> Option<watch::Receiver<LatestAnnouncement>> {
        self.queue(partition).map(|queue| queue.subscribe())
    }

    /// The last serving counter announced for `partition` (0 before any).
    pub fn latest_serving(&self, partition: i32) -> i64 {
        self.subscribe(partition)
            .and_then(|receiver| receiver.borrow().as_ref().map(|latest| latest.serving))
            .unwrap_or(0)
    }

    fn publish(&self, announcement: ServingAnnouncement) {
        // A partition raised online that no stream here follows yet.
        self.ensure(announcement.partition.saturating_add(1));
        let Some(queue) = self.queue(announcement.partition) else {
            return;
        };
        // Never move a queue backwards: a delayed message must not undo a newer one. One
        // at the same counter is news (it settled deferred tickets, or is a resync that
        // deferred tickets' streams check against Redis).
        queue.send_if_modified(|latest| {
            let newer = latest
                .as_ref()
                .is_none_or(|current| announcement.serving >= current.serving);
            if newer {
                *latest = Some(Arc::new(announcement));
            }
            newer
        });
    }

    async fn run(
        self,
        client: RedisClient,
        redis: RedisConnection,
        keys: RedisKeys,
        shutdown: CancellationToken,
    ) {
        let channel = keys.serving_channel();
        let mut nodes = client.subscribers().into_iter().cycle();
        let mut first = true;
        loop {
            let subscribed = retry_until_ok(
                "the serving channel",
                Duration::from_secs(2),
                &shutdown,
                || {
                    let node = nodes.next();
                    let channel = &channel;
                    async move {
                        let node = node.ok_or_else(|| {
                            redis::RedisError::from((redis::ErrorKind::Client, "no Redis node"))
                        })?;
                        let mut pubsub = node.get_async_pubsub().await?;
                        pubsub.subscribe(channel).await?;
                        Ok::<_, redis::RedisError>(pubsub)
                    }
                },
            )
            .await;
            let Ok(mut pubsub) = subscribed else {
                return; // shut down
            };
            if !first {
                // Announcements sent while disconnected are lost: catch up.
                self.resync(&redis, &keys).await;
            }
            first = false;
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                match ServingAnnouncement::parse(message.get_payload_bytes()) {
                    Some(announcement) => self.publish(announcement),
                    None => tracing::warn!("unreadable serving announcement"),
                }
            }
            tracing::warn!("serving subscription lost; reconnecting");
        }
    }

    /// Publishes each queue's current counter as read from Redis (an announcement with
    /// an empty reached range: streams the counter passed, deferred ones included, look
    /// their outcome up).
    async fn resync(&self, redis: &RedisConnection, keys: &RedisKeys) {
        let queues = self.snapshot();
        let partitions = (0..queues.len()).filter_map(|index| i32::try_from(index).ok());
        let serving_keys: Vec<String> = partitions.clone().map(|p| keys.serving(p)).collect();
        if serving_keys.is_empty() {
            return;
        }
        let counters: redis::RedisResult<Vec<Option<i64>>> = redis::cmd("MGET")
            .arg(&serving_keys)
            .query_async(&mut redis.clone())
            .await;
        let counters = match counters {
            Ok(counters) => counters,
            Err(error) => {
                tracing::warn!(%error, "cannot resynchronise serving counters");
                return;
            }
        };
        for ((partition, serving), queue) in partitions.zip(counters).zip(queues.iter()) {
            let Some(serving) = serving else { continue };
            let rate_per_second = queue
                .borrow()
                .as_ref()
                .map_or(0.0, |latest| latest.rate_per_second);
            self.publish(ServingAnnouncement {
                partition,
                reached_from: serving,
                serving,
                abandoned: Vec::new(),
                dead_lettered: Vec::new(),
                deferred: Vec::new(),
                activated_deferred: Vec::new(),
                active_until_ms: None,
                rate_per_second,
            });
        }
    }
}
