//! One Redis handle for both deployments we support: a single server and a Redis
//! Cluster (`REDIS_CLUSTER`).
//!
//! Services hold a [`RedisConnection`] and never ask which it is: commands, pipelines
//! and scripts go through `redis`'s `ConnectionLike` either way. In a cluster the
//! client routes each command by its key's slot and follows a failover by itself; what
//! the services must do is keep every script and every pipeline within one slot (the
//! hash tags of `contract::redis_schema`), and group a batch by slot
//! ([`hash_tag`]) before it is sent. Pub/sub uses classic channels, which a cluster
//! forwards to every node, so a subscriber may use any node ([`RedisClient::subscribers`]).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

/// Every command, also on a cluster, waits at most this long for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// A cluster command retries this often (a moved slot, a failover in progress).
const CLUSTER_RETRIES: u32 = 6;

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Clone)]
#[allow(clippy::large_enum_variant, reason = "one per process, cloned rarely")]
pub enum RedisClient {
    Single(redis::Client),
    Cluster {
        client: ClusterClient,
        /// One client per seed node, for subscriptions.
        nodes: Vec<redis::Client>,
    },
}

impl RedisClient {
    /// A cluster client over the seed `nodes` (each opened like a single server's
    /// client, TLS included).
    pub fn cluster(
        nodes: Vec<redis::Client>,
        certificates: Option<redis::TlsCertificates>,
    ) -> RedisResult<Self> {
        let infos = nodes
            .iter()
            .map(|node| node.get_connection_info().clone().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(CLUSTER_RETRIES);
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        Ok(Self::Cluster {
            client: builder.build()?,
            nodes,
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// The address(es), for logs: never the URL, which may hold a password.
    pub fn address(&self) -> String {
        self.subscribers()
            .iter()
            .map(|client| client.get_connection_info().addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Clients a pub/sub subscription may use, in the order to try them: the server,
    /// or every seed node of the cluster (each receives every classic message).
    pub fn subscribers(&self) -> Vec<redis::Client> {
        match self {
            Self::Single(client) => vec![client.clone()],
            Self::Cluster { nodes, .. } => nodes.clone(),
        }
    }

    /// Opens the process's shared connection: multiplexed and reconnecting by itself
    /// (a cluster one also follows slot moves and failovers).
    pub async fn connect(&self) -> RedisResult<RedisConnection> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(RedisConnection::Single)
            }
            Self::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map(RedisConnection::Cluster),
        }
    }
}

/// A multiplexed connection to a single server or to a cluster; cheap to clone.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs a keyless `command` (SCAN) on the primary that holds `key`'s slot: where
    /// the keys sharing its hash tag live.
    pub async fn query_where<T: FromRedisValue>(
        &mut self,
        key: &str,
        command: &Cmd,
    ) -> RedisResult<T> {
        match self {
            Self::Single(connection) => command.query_async(connection).await,
            Self::Cluster(connection) => {
                let route = Route::new(key_slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let reply = connection.route_command(command.clone(), routing).await?;
                Ok(redis::from_redis_value(reply)?)
            }
        }
    }

    /// Sends `commands` and returns one reply per command, in order; a command the
    /// server refused replies with its `Value::ServerError`. A single server gets them
    /// as one pipeline. A cluster gets one pipeline per slot, all at once: the commands
    /// between a `MULTI` and its `EXEC` stay together (they must share a slot), and
    /// each other command goes to its own key's slot.
    pub async fn send_grouped(&mut self, commands: &[Cmd]) -> RedisResult<Vec<Value>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let Self::Cluster(cluster) = self else {
            let mut pipeline = redis::pipe();
            for command in commands {
                pipeline.add_command(command.clone());
            }
            return self.req_packed_commands(&pipeline, 0, commands.len()).await;
        };
        let groups = slot_groups(commands);
        let sends = groups.iter().map(|(_, indices)| {
            let mut pipeline = redis::pipe();
            for index in indices {
                pipeline.add_command(commands[*index].clone());
            }
            let mut connection = cluster.clone();
            async move {
                connection
                    .req_packed_commands(&pipeline, 0, pipeline.len())
                    .await
            }
        });
        let replies = futures::future::try_join_all(sends).await?;
        let mut ordered = vec![Value::Nil; commands.len()];
        for ((_, indices), replies) in groups.iter().zip(replies) {
            for (index, reply) in indices.iter().zip(replies) {
                ordered[*index] = reply;
            }
        }
        Ok(ordered)
    }
}

/// Replies of [`RedisConnection::send_grouped`] (or a pipeline), unless the server refused
/// one of the commands: then the first refusal.
pub fn replies_or_refusal(replies: Vec<Value>) -> RedisResult<Vec<Value>> {
    match replies
        .iter()
        .find(|reply| matches!(reply, Value::ServerError(_)))
    {
        Some(Value::ServerError(error)) => Err(error.clone().into()),
        _ => Ok(replies),
    }
}

/// The indices of `commands` per slot, in order; a `MULTI`..`EXEC` run counts as one
/// command, in the slot of its first keyed command.
fn slot_groups(commands: &[Cmd]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    let mut transaction: Option<(Option<u16>, Vec<usize>)> = None;
    let mut place = |slot: Option<u16>, indices: Vec<usize>| {
        let slot = slot.unwrap_or(0);
        match groups.iter_mut().find(|(group, _)| *group == slot) {
            Some((_, group)) => group.extend(indices),
            None => groups.push((slot, indices)),
        }
    };
    for (index, command) in commands.iter().enumerate() {
        let name = command_name(command);
        let slot = command_key(command).map(key_slot);
        if let Some((first_slot, indices)) = transaction.as_mut() {
            indices.push(index);
            if first_slot.is_none() {
                *first_slot = slot;
            }
            if name.eq_ignore_ascii_case(b"EXEC") || name.eq_ignore_ascii_case(b"DISCARD") {
                let (slot, indices) = transaction.take().unwrap_or_default();
                place(slot, indices);
            }
        } else if name.eq_ignore_ascii_case(b"MULTI") {
            transaction = Some((None, vec![index]));
        } else {
            place(slot, vec![index]);
        }
    }
    if let Some((slot, indices)) = transaction {
        place(slot, indices);
    }
    groups
}

fn command_name(command: &Cmd) -> &[u8] {
    match command.args_iter().next() {
        Some(redis::Arg::Simple(name)) => name,
        _ => b"",
    }
}

/// The key a command is routed by: the first key of a script call, else its first
/// argument (every command we batch names its key first).
fn command_key(command: &Cmd) -> Option<&[u8]> {
    let name = command_name(command);
    let is_script = [&b"EVALSHA"[..], b"EVAL", b"FCALL"]
        .iter()
        .any(|script| name.eq_ignore_ascii_case(script));
    let is_keyless = [&b"MULTI"[..], b"EXEC", b"DISCARD", b"PING"]
        .iter()
        .any(|keyless| name.eq_ignore_ascii_case(keyless));
    if is_keyless {
        return None;
    }
    let position = if is_script { 3 } else { 1 };
    match command.args_iter().nth(position) {
        Some(redis::Arg::Simple(key)) => Some(key),
        _ => None,
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// What decides `key`'s slot: the text between its first `{` and the next `}` when
/// that is not empty, else the whole key. Keys with the same tag share a slot.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    key.iter()
        .position(|byte| *byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|byte| *byte == b'}')
                .filter(|close| *close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key)
}

/// Redis Cluster's slot of `key`: CRC16 (XMODEM) of its [`hash_tag`], mod 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in hash_tag(key) {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // `CLUSTER KEYSLOT` of a Redis 7 server.
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"somekey"), 11_058);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }

    #[test]
    fn transactions_stay_whole_and_other_commands_go_to_their_slot() {
        let commands = [
            redis::Cmd::set("{e:a}:u:1", 1),
            redis::cmd("MULTI"),
            redis::Cmd::set("{q1}:r:x", 1),
            redis::Cmd::get("{q1}:serving"),
            redis::cmd("EXEC"),
            redis::Cmd::incr("{c:ip}:rl:c", 1),
            redis::Cmd::incr("{e:a}:rl:e", 1),
        ];
        let groups = slot_groups(&commands);
        assert_eq!(
            groups,
            vec![
                (key_slot(b"e:a"), vec![0, 6]),
                (key_slot(b"q1"), vec![1, 2, 3, 4]),
                (key_slot(b"c:ip"), vec![5]),
            ]
        );
    }

    #[test]
    fn the_first_non_empty_braces_are_the_tag() {
        assert_eq!(hash_tag(b"wr:{q3}:serving"), b"q3");
        assert_eq!(hash_tag(b"wr:{q3}:t:{x}"), b"q3");
        assert_eq!(hash_tag(b"wr:{}:a"), b"wr:{}:a");
        assert_eq!(hash_tag(b"wr:{q3"), b"wr:{q3");
        assert_eq!(hash_tag(b"plain"), b"plain");
    }
}
