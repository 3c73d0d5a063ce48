//! Join rate limits shared by every instance: one GCRA script in Redis checks a client's
//! joins into one event, its joins across the deployment, and (when set) every client's
//! joins into the event, all at once.
//!
//! GCRA keeps one number per key (the theoretical arrival time), so a limit costs one
//! small string per active client, and the script runs with the join's other Redis
//! commands in the same batched write ([`RedisBatcher`]). Redis's own clock decides, so
//! instances with skewed clocks still share one limit. Each limit allows `burst` joins
//! at once, then one per `1 / per_second`.
//!
//! The client is the address [`client_address`] picks: the peer, or behind trusted
//! proxies the right-most `X-Forwarded-For` entry that is not one of them (a client can
//! prepend anything to that header, but not append after what its proxy wrote). IPv6
//! clients are grouped by /64, the block one subscriber gets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;

use axum::http::HeaderMap;
use contract::redis_schema::RedisKeys;
use ipnet::IpNet;
use redis::{Cmd, RedisResult, Script, Value};

use super::redis_batch::{last_reply, RedisBatcher};

/// One limit: `burst` at once, then `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

impl Limit {
    /// `None` when `per_second` is 0 (this limit is off).
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        (per_second > 0.0).then_some(Self {
            per_second,
            burst: burst.max(1),
        })
    }

    /// Microseconds between two joins at the sustained rate.
    fn interval_us(self) -> u64 {
        (1_000_000.0 / self.per_second).ceil().max(1.0) as u64
    }
}

/// Which limit refused a join (the metric's `scope` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One client's joins into one event.
    ClientEvent,
    /// One client's joins into every event.
    Client,
    /// Every client's joins into one event.
    Event,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientEvent => "client_event",
            Self::Client => "client",
            Self::Event => "event",
        }
    }
}

/// A refused join: which limit, and how long until it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Scope,
    pub retry_after_seconds: u64,
}

/// KEYS: one per limit. ARGV: per key its interval (µs) and burst. All limits pass and
/// are charged together, or none is charged. Returns {0} or {refused key index (1-based),
/// retry after µs}.
const GCRA_SOURCE: &str = r"
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
        local next_tats = {}
        for i, key in ipairs(KEYS) do
          local interval = tonumber(ARGV[2 * i - 1])
          local burst = tonumber(ARGV[2 * i])
          local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
          local allowed_at = tat + interval - burst * interval
          if now < allowed_at then return {i, allowed_at - now} end
          next_tats[i] = tat + interval
        end
        for i, key in ipairs(KEYS) do
          redis.call('SET', key, next_tats[i], 'PX', math.ceil((next_tats[i] - now) / 1000) + 1)
        end
        return {0}
        ";

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_SOURCE));

/// The deployment's join limits.
#[derive(Clone)]
pub struct RateLimiter {
    client_event: Option<Limit>,
    client: Option<Limit>,
    event: Option<Limit>,
    keys: RedisKeys,
    batcher: RedisBatcher,
}

impl RateLimiter {
    pub fn new(
        client_event: Option<Limit>,
        client: Option<Limit>,
        event: Option<Limit>,
        keys: RedisKeys,
        batcher: RedisBatcher,
    ) -> Self {
        Self {
            client_event,
            client,
            event,
            keys,
            batcher,
        }
    }

    /// Charges one join of `client` into `event_id` to every limit that is on.
    pub async fn check(&self, client: IpAddr, event_id: &str) -> RedisResult<Result<(), Refusal>> {
        let client = client.to_string();
        let limits: Vec<(Scope, Limit, String)> = [
            (
                Scope::ClientEvent,
                self.client_event,
                self.keys.join_rate_client_event(&client, event_id),
            ),
            (
                Scope::Client,
                self.client,
                self.keys.join_rate_client(&client),
            ),
            (
                Scope::Event,
                self.event,
                self.keys.join_rate_event(event_id),
            ),
        ]
        .into_iter()
        .filter_map(|(scope, limit, key)| Some((scope, limit?, key)))
        .collect();
        if limits.is_empty() {
            return Ok(Ok(()));
        }
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(GCRA.get_hash()).arg(limits.len());
        for (_, _, key) in &limits {
            evalsha.arg(key);
        }
        for (_, limit, _) in &limits {
            evalsha.arg(limit.interval_us()).arg(limit.burst);
        }
        let reply: Vec<i64> = self.run(evalsha).await?;
        Ok(match reply.as_slice() {
            [refused, retry_after_us, ..] if *refused > 0 => {
                let scope = usize::try_from(*refused - 1)
                    .ok()
                    .and_then(|index| limits.get(index))
                    .map_or(Scope::Client, |(scope, _, _)| *scope);
                Err(Refusal {
                    scope,
                    retry_after_seconds: retry_after_us.unsigned_abs().div_ceil(1_000_000).max(1),
                })
            }
            _ => Ok(()),
        })
    }

    /// Runs the script with the join's other batched commands, loading it first when
    /// this Redis does not know it (a restart, a failover).
    async fn run(&self, evalsha: Cmd) -> RedisResult<Vec<i64>> {
        match last_reply(self.batcher.send(vec![evalsha.clone()]).await?) {
            Err(error) if error.code() == Some("NOSCRIPT") => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(GCRA_SOURCE);
                last_reply::<Value>(self.batcher.send(vec![load]).await?)?;
                last_reply(self.batcher.send(vec![evalsha]).await?)
            }
            reply => reply,
        }
    }
}

/// The client a request comes from: the peer, unless the peer is a trusted proxy; then
/// the right-most `X-Forwarded-For` address that is not a trusted proxy (the left-most
/// when every one is). Entries are read from the right, where the proxies wrote, and
/// reading stops at the first one that is not an address: nothing to its left (which
/// the client wrote) is believed, and the last trusted hop is the client. IPv4-mapped
/// IPv6 addresses count as IPv4; IPv6 is cut to /64.
pub fn client_address(headers: &HeaderMap, peer: SocketAddr, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer.ip());
    if trusted(&client) {
        // A header line that is not text counts as one unreadable entry.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("?").split(','))
            .collect();
        for entry in entries.iter().rev() {
            let Ok(address) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(address);
            if !trusted(&client) {
                break;
            }
        }
    }
    group(client)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One subscriber's addresses share a limit: an IPv6 /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("header"),
            );
        }
        headers
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), 40_000)
    }

    fn proxies() -> Vec<IpNet> {
        vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "fd00::/8".parse().expect("cidr"),
        ]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let spoofed = headers(&["1.2.3.4"]);
        assert_eq!(
            client_address(&spoofed, peer("203.0.113.7"), &proxies()),
            "203.0.113.7".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        // The client wrote "1.2.3.4" itself; its proxy appended the address it saw.
        let forwarded = headers(&["1.2.3.4, 198.51.100.9", "10.1.1.1"]);
        assert_eq!(
            client_address(&forwarded, peer("10.0.0.2"), &proxies()),
            "198.51.100.9".parse::<IpAddr>().expect("ip")
        );
        let all_trusted = headers(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(
            client_address(&all_trusted, peer("10.0.0.2"), &proxies()),
            "10.3.3.3".parse::<IpAddr>().expect("ip")
        );
        let garbage = headers(&["not-an-ip"]);
        assert_eq!(
            client_address(&garbage, peer("10.0.0.2"), &proxies()),
            "10.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn nothing_left_of_an_unreadable_entry_is_believed() {
        // The client wrote "6.6.6.6, x"; its proxy appended the address it saw.
        let appended = headers(&["6.6.6.6, x, 198.51.100.9"]);
        assert_eq!(
            client_address(&appended, peer("10.0.0.2"), &proxies()),
            "198.51.100.9".parse::<IpAddr>().expect("ip")
        );
        // Nothing readable after the junk: the last trusted hop is the client.
        let junk_last = headers(&["6.6.6.6, x", "10.1.1.1"]);
        assert_eq!(
            client_address(&junk_last, peer("10.0.0.2"), &proxies()),
            "10.1.1.1".parse::<IpAddr>().expect("ip")
        );
        let mut binary = HeaderMap::new();
        binary.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"6.6.6.6\xff").expect("header"),
        );
        assert_eq!(
            client_address(&binary, peer("10.0.0.2"), &proxies()),
            "10.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let none = HeaderMap::new();
        assert_eq!(
            client_address(&none, peer("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), &[]),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            client_address(&none, peer("::ffff:198.51.100.1"), &[]),
            "198.51.100.1".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn a_limit_is_off_at_zero_and_allows_at_least_one() {
        assert_eq!(Limit::new(0.0, 10), None);
        let limit = Limit::new(4.0, 0).expect("on");
        assert_eq!(limit.burst, 1);
        assert_eq!(limit.interval_us(), 250_000);
    }
}
