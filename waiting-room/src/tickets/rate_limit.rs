//! Join rate limits shared by every instance: Redis counts a client's joins into one
//! event, its joins across the deployment, and (when set) every client's joins into
//! the event.
//!
//! Each limit is a fixed window of `burst / per_second` seconds that opens with the
//! first join it counts and allows `burst` joins: `INCR` of the window's counter,
//! `PEXPIRE NX` to open it, `PTTL` for the refusal's `Retry-After`. Native commands in
//! the join's batched write ([`RedisBatcher`]) and no script: the GCRA script this
//! replaced cost Redis about three times the CPU per join, on the hottest path, for a
//! smoothness a join limit does not need (a window lets at most twice `burst` through
//! across its edge, and `per_second` on average). Redis's clock opens and closes the
//! windows, so instances with skewed clocks still share one limit.
//!
//! The per-client windows count every attempt, refused ones too: a client that keeps
//! hammering only spends its own budget. The event's window counts only joins the
//! per-client limits let through, so one flooding client cannot use up everyone's.
//!
//! The client is the address [`client_address`] picks: the peer, or behind trusted
//! proxies the right-most `X-Forwarded-For` entry that is not one of them (a client can
//! prepend anything to that header, but not append after what its proxy wrote). IPv6
//! clients are grouped by /64, the block one subscriber gets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use contract::redis_schema::RedisKeys;
use ipnet::IpNet;
use redis::{Cmd, RedisResult};

use super::redis_batch::RedisBatcher;
use platform::redis_connection::replies_or_refusal;

const MAX_WINDOW_MS: u64 = 86_400_000;

/// One limit: `burst` joins per window of `burst / per_second` seconds.
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

    /// The window's length in milliseconds: `burst` joins at the sustained rate, at most
    /// a day (a tiny rate would otherwise ask Redis for an expiry it refuses).
    fn window_ms(self) -> u64 {
        (f64::from(self.burst) * 1_000.0 / self.per_second)
            .ceil()
            .clamp(1.0, MAX_WINDOW_MS as f64) as u64
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
    pub const ALL: [Self; 3] = [Self::ClientEvent, Self::Client, Self::Event];

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

/// One limit to charge: which it is, its setting, its window's key.
type Charge = (Scope, Limit, String);

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

    /// Charges one join of `client` into `event_id` to every limit that is on: the
    /// client's limits first, the event's only if those let the join through.
    pub async fn check(&self, client: IpAddr, event_id: &str) -> RedisResult<Result<(), Refusal>> {
        let client = client.to_string();
        let per_client: Vec<Charge> = [
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
        ]
        .into_iter()
        .filter_map(|(scope, limit, key)| Some((scope, limit?, key)))
        .collect();
        if let refused @ Err(_) = self.charge(&per_client).await? {
            return Ok(refused);
        }
        match self.event {
            Some(limit) => {
                let event = (Scope::Event, limit, self.keys.join_rate_event(event_id));
                self.charge(&[event]).await
            }
            None => Ok(Ok(())),
        }
    }

    /// Counts one join in each window, in one batched request; a window over its limit
    /// refuses, and the join may retry when every such window has closed.
    async fn charge(&self, limits: &[Charge]) -> RedisResult<Result<(), Refusal>> {
        if limits.is_empty() {
            return Ok(Ok(()));
        }
        let mut commands = Vec::with_capacity(limits.len() * 3);
        for (_, limit, key) in limits {
            let mut open = redis::cmd("PEXPIRE");
            open.arg(key).arg(limit.window_ms()).arg("NX");
            commands.extend([Cmd::incr(key, 1), open, Cmd::pttl(key)]);
        }
        let replies = replies_or_refusal(self.batcher.send(commands).await?)?;
        let mut refusal: Option<Refusal> = None;
        for ((scope, limit, _), window) in limits.iter().zip(replies.chunks(3)) {
            let [counted, _, remaining_ms] = window else {
                continue;
            };
            let counted: u64 = redis::from_redis_value(counted.clone())?;
            if counted > u64::from(limit.burst) {
                let remaining_ms: i64 = redis::from_redis_value(remaining_ms.clone())?;
                let retry_after_seconds = remaining_ms.max(0).unsigned_abs().div_ceil(1_000).max(1);
                // The first refusing limit names the scope; the longest wait is the answer.
                let scope = refusal.map_or(*scope, |first| first.scope);
                let longest = refusal.map_or(0, |first| first.retry_after_seconds);
                refusal = Some(Refusal {
                    scope,
                    retry_after_seconds: retry_after_seconds.max(longest),
                });
            }
        }
        Ok(refusal.map_or(Ok(()), Err))
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
        assert_eq!(limit.window_ms(), 250);
        // Ten at once, one a second on average: a ten-second window.
        assert_eq!(Limit::new(1.0, 10).expect("on").window_ms(), 10_000);
        assert_eq!(Limit::new(3.0, 1).expect("on").window_ms(), 334);
        assert_eq!(
            Limit::new(1e-12, 10).expect("on").window_ms(),
            MAX_WINDOW_MS
        );
    }
}
