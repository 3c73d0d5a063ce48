//! One Redis write for the commands that concurrent requests queue at about the same
//! moment.
//!
//! A join makes two Redis round trips (claim the user's place, register the ticket).
//! Sent one by one, each costs this process a write and Redis a wake-up, and on a busy
//! machine those cost more than the commands. Joins come in bursts: one broker
//! acknowledgement releases a whole produce batch, and their fans' next requests arrive
//! together. So one task sends everything queued as a single pipeline: on its first
//! request it lets the tasks that are already runnable queue theirs (one `yield_now`),
//! sends the lot, and while that pipeline is in flight the next batch gathers. Alone,
//! a request costs one extra task hop.

use platform::redis_connection::{replies_or_refusal, RedisConnection};
use platform::supervisor::Supervisor;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

/// Requests per pipeline at most, so that one batch's replies never wait behind an
/// unbounded write.
const MAX_BATCH_REQUESTS: usize = 256;
const QUEUE_CAPACITY: usize = 4_096;

/// A handle on the batching task; cheap to clone. The task ends with the last handle.
#[derive(Clone)]
pub struct RedisBatcher {
    requests: mpsc::Sender<Request>,
}

struct Request {
    commands: Vec<Cmd>,
    replies: oneshot::Sender<RedisResult<Vec<Value>>>,
}

impl RedisBatcher {
    /// Starts the batching task under `supervisor`. It runs until the last handle is
    /// dropped (after shutdown, once no request can queue any more).
    pub fn start(redis: RedisConnection, supervisor: &Supervisor) -> Self {
        let (requests, queued) = mpsc::channel(QUEUE_CAPACITY);
        supervisor.spawn("redis batcher", async move {
            send_batches(redis, queued).await;
            Ok(())
        });
        Self { requests }
    }

    /// Sends `commands` with the next batch, in order and together (a MULTI/EXEC among
    /// them stays whole; its keys must share a slot), and returns one reply per command; a command the server
    /// refused replies with its [`Value::ServerError`].
    pub async fn send(&self, commands: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        let (replies, replied) = oneshot::channel();
        self.requests
            .send(Request { commands, replies })
            .await
            .map_err(|_| stopped())?;
        replied.await.map_err(|_| stopped())?
    }
}

async fn send_batches(mut redis: RedisConnection, mut queued: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH_REQUESTS);
    while let Some(first) = queued.recv().await {
        batch.push(first);
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH_REQUESTS {
            let Ok(request) = queued.try_recv() else {
                break;
            };
            batch.push(request);
        }
        // A request whose caller went away (its client disconnected) is not sent: a
        // claim nobody will use would hold the user's place until it expires.
        batch.retain(|request| !request.replies.is_closed());
        let mut commands = Vec::new();
        let mut counts = Vec::with_capacity(batch.len());
        for request in &mut batch {
            counts.push(request.commands.len());
            commands.append(&mut request.commands);
        }
        metrics::histogram!("waiting_room_redis_batch_requests").record(batch.len() as f64);
        // A cluster gets one pipeline per slot (a request's transaction stays whole).
        let sent = redis.send_grouped(&commands).await;
        match sent {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                for (request, count) in batch.drain(..).zip(counts) {
                    let own: Vec<Value> = replies.by_ref().take(count).collect();
                    let answer = if own.len() == count {
                        Ok(own)
                    } else {
                        Err(RedisError::from((
                            ErrorKind::Client,
                            "fewer replies than commands in a batch",
                        )))
                    };
                    let _ = request.replies.send(answer);
                }
            }
            Err(error) => {
                for request in batch.drain(..) {
                    let _ = request.replies.send(Err(error.clone()));
                }
            }
        }
    }
}

fn stopped() -> RedisError {
    RedisError::from((ErrorKind::Client, "the Redis batching task has stopped"))
}

/// The last reply of a request, parsed, unless any of its commands failed.
pub fn last_reply<T: FromRedisValue>(replies: Vec<Value>) -> RedisResult<T> {
    let last = replies_or_refusal(replies)?
        .pop()
        .ok_or_else(|| RedisError::from((ErrorKind::Client, "a batched request had no reply")))?;
    Ok(redis::from_redis_value(last)?)
}
