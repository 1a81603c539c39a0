//! Limits per client address: what one machine (or one NAT) may cost the relay, however many
//! sessions it opens.
//!
//! Sessions have budgets of their own (`sessions`: POSTs; `rate_limit`: chat tool calls), but
//! creating sessions, requests that carry no session, and connections belong to no session: one
//! client looping on them took most of a CPU in the abuse benchmark (docs/reliability.md). So,
//! per address:
//!
//! - **connections** open at once, checked when a connection is accepted (not behind a trusted
//!   proxy, where every connection comes from the proxy);
//! - **new sessions** per second, a token bucket, and **sessions** open at once: without it one
//!   address could, at its allowed rate, take every session the relay may hold;
//! - **refused requests** per second (4xx other than 429), a token bucket: once an address has
//!   used it up, its requests that carry no session of this node are refused before their body
//!   is read. Requests on a live session go on: a neighbour behind the same NAT keeps chatting.
//!
//! An address is an IPv4 address, or the /64 prefix of an IPv6 one (what one subscriber gets;
//! a client can pick any address inside it). Entries are kept only while they hold something
//! (a connection, a bucket not yet refilled), and at most [`MAX_TRACKED_ADDRESSES`]: past that,
//! new addresses are not limited, so the table cannot grow without bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::rate_limit::{Rate, TokenBucket};

/// Most addresses tracked at once.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// The peer address of the connection a request arrived on (a request extension set by the
/// listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub IpAddr);

/// The client address a request counts against (the peer, or the forwarded address when
/// trusted): a request extension set by the HTTP guard, read by the tool handler for bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

/// The per-address limits of one relay node, and what each address has used of them.
#[derive(Debug)]
pub struct AddressLimits {
    max_connections: usize,
    max_sessions: usize,
    sessions: Option<Rate>,
    refusals: Option<Rate>,
    entries: Mutex<HashMap<IpAddr, AddressEntry>>,
    /// Set once the relay has warned that it seems to be behind a proxy it does not trust.
    warned_about_proxy: AtomicBool,
}

#[derive(Debug)]
struct AddressEntry {
    connections: usize,
    open_sessions: usize,
    sessions: Option<TokenBucket>,
    refusals: Option<TokenBucket>,
}

/// The address holds as many connections as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressBusy;

/// Why an address may not open a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// It opened too many lately: a token comes back after this long.
    TooFast(Duration),
    /// It holds as many sessions as it may.
    TooMany,
}

/// A connection or session counted against its address; uncounted when dropped.
pub struct AddressSlot {
    limits: Arc<AddressLimits>,
    key: IpAddr,
    session: bool,
}

impl std::fmt::Debug for AddressSlot {
    // Not derived: that would print the whole table of addresses.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressSlot")
            .field("key", &self.key)
            .field("session", &self.session)
            .finish()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(entry) = self.limits.lock().get_mut(&self.key) {
            let count = if self.session {
                &mut entry.open_sessions
            } else {
                &mut entry.connections
            };
            *count = count.saturating_sub(1);
        }
    }
}

/// Turns a rate per second into a bucket rate with bursts of ten seconds' worth; `None`
/// (no limit) for 0.
fn bucket_rate(per_sec: f64) -> Option<Rate> {
    (per_sec > 0.0).then(|| Rate::new(per_sec, (per_sec * 10.0).max(1.0)))
}

/// The address limits apply to: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AddressLimits {
    /// Limits of `max_connections` open connections and `max_sessions` open sessions,
    /// `sessions_per_sec` new sessions and `refusals_per_sec` refused requests per address,
    /// the rates with bursts of ten seconds' worth. 0: no such limit.
    pub fn new(
        max_connections: usize,
        max_sessions: usize,
        sessions_per_sec: f64,
        refusals_per_sec: f64,
    ) -> Self {
        Self {
            max_connections,
            max_sessions,
            sessions: bucket_rate(sessions_per_sec),
            refusals: bucket_rate(refusals_per_sec),
            entries: Mutex::new(HashMap::new()),
            warned_about_proxy: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, AddressEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the entry of `ip`, created if there is room; `None` when the table is full.
    fn with_entry<T>(&self, ip: IpAddr, f: impl FnOnce(&mut AddressEntry) -> T) -> Option<T> {
        let mut entries = self.lock();
        let room = entries.len() < MAX_TRACKED_ADDRESSES;
        let entry = match entries.entry(address_key(ip)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(vacant) if room => {
                vacant.insert(AddressEntry {
                    connections: 0,
                    open_sessions: 0,
                    sessions: None,
                    refusals: None,
                })
            }
            std::collections::hash_map::Entry::Vacant(_) => return None,
        };
        Some(f(entry))
    }

    /// Counts a new connection from `ip`: `None` when the address already holds as many as it
    /// may (close the connection). Without a connection limit, or with the table full, the
    /// connection is let in uncounted.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddressSlot>, AddressBusy> {
        if self.max_connections == 0 {
            return Ok(None);
        }
        let max = self.max_connections;
        let admitted = self.with_entry(ip, |entry| {
            if entry.connections >= max {
                false
            } else {
                entry.connections += 1;
                true
            }
        });
        match admitted {
            Some(true) => Ok(Some(AddressSlot {
                limits: self.clone(),
                key: address_key(ip),
                session: false,
            })),
            Some(false) => Err(AddressBusy),
            None => Ok(None),
        }
    }

    /// Lets `ip` open a session: takes a new-session token and counts the session as open
    /// until the returned slot is dropped (keep it as long as the session lives). `Ok(None)`
    /// when nothing is counted (no limits, or the table is full).
    pub fn admit_session(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<Option<AddressSlot>, SessionRefusal> {
        if self.sessions.is_none() && self.max_sessions == 0 {
            return Ok(None);
        }
        let (rate, max) = (self.sessions, self.max_sessions);
        let now = Instant::now();
        let admitted = self.with_entry(ip, |entry| {
            if max > 0 && entry.open_sessions >= max {
                return Err(SessionRefusal::TooMany);
            }
            if let Some(rate) = rate {
                entry
                    .sessions
                    .get_or_insert_with(|| TokenBucket::full(rate, now))
                    .take(rate, now)
                    .map_err(SessionRefusal::TooFast)?;
            }
            if max > 0 {
                entry.open_sessions += 1;
            }
            Ok(max > 0)
        });
        match admitted {
            Some(Ok(true)) => Ok(Some(AddressSlot {
                limits: self.clone(),
                key: address_key(ip),
                session: true,
            })),
            Some(Ok(false)) | None => Ok(None),
            Some(Err(refusal)) => Err(refusal),
        }
    }

    /// Whether `ip` may still be refused a request: `Err(wait)` once it used up its refusals, until
    /// one comes back.
    pub fn check_refusals(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(rate) = self.refusals else {
            return Ok(());
        };
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(bucket) = entries
            .get_mut(&address_key(ip))
            .and_then(|entry| entry.refusals.as_mut())
        else {
            return Ok(());
        };
        if bucket.has_token(rate, now) {
            Ok(())
        } else {
            // What taking a token would have to wait for, without taking one.
            let mut probe = *bucket;
            probe.take(rate, now)
        }
    }

    /// Counts a request refused to `ip` (a 4xx answer).
    pub fn count_refusal(&self, ip: IpAddr) {
        let Some(rate) = self.refusals else {
            return;
        };
        let now = Instant::now();
        self.with_entry(ip, |entry| {
            // An empty bucket stays empty: the error is the count.
            let _ = entry
                .refusals
                .get_or_insert_with(|| TokenBucket::full(rate, now))
                .take(rate, now);
        });
    }

    /// Forgets addresses that hold nothing any more: no connection, and buckets back to full.
    pub fn prune(&self) {
        let now = Instant::now();
        let (sessions, refusals) = (self.sessions, self.refusals);
        self.lock().retain(|_, entry| {
            let refilled =
                |bucket: &mut Option<TokenBucket>, rate: Option<Rate>| match (bucket, rate) {
                    (Some(bucket), Some(rate)) => bucket.is_full(rate, now),
                    _ => true,
                };
            entry.connections > 0
                || entry.open_sessions > 0
                || !refilled(&mut entry.sessions, sessions)
                || !refilled(&mut entry.refusals, refusals)
        });
    }

    /// Number of addresses tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// Returns true the first time only: the relay should warn that requests arrive from a
    /// loopback proxy it does not trust.
    pub fn first_untrusted_proxy(&self) -> bool {
        !self.warned_about_proxy.swap(true, Ordering::Relaxed)
    }
}

/// The client's address as the last proxy saw it: the rightmost entry of the last
/// `X-Forwarded-For` header (the one our proxy appended; entries further left are whatever
/// the client claimed). `None` if there is none or it is not an IP address.
pub fn forwarded_for(headers: &http::HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn connections_are_capped_per_address_and_given_back() {
        let limits = Arc::new(AddressLimits::new(2, 0, 0.0, 0.0));
        let first = limits.connect(ip("192.0.2.1")).unwrap();
        let _second = limits.connect(ip("192.0.2.1")).unwrap();
        assert!(
            limits.connect(ip("192.0.2.1")).is_err(),
            "third from one address"
        );
        assert!(limits.connect(ip("192.0.2.2")).is_ok(), "another address");
        drop(first);
        assert!(limits.connect(ip("192.0.2.1")).is_ok(), "a slot came back");
    }

    #[test]
    fn sessions_run_out_and_refusals_block_after_their_burst() {
        let limits = Arc::new(AddressLimits::new(0, 0, 1.0, 1.0));
        for _ in 0..10 {
            assert!(limits.admit_session(ip("192.0.2.1")).is_ok());
        }
        assert!(matches!(
            limits.admit_session(ip("192.0.2.1")),
            Err(SessionRefusal::TooFast(_))
        ));
        assert!(limits.admit_session(ip("192.0.2.9")).is_ok());

        for _ in 0..10 {
            assert!(limits.check_refusals(ip("192.0.2.1")).is_ok());
            limits.count_refusal(ip("192.0.2.1"));
        }
        let wait = limits.check_refusals(ip("192.0.2.1")).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(limits.check_refusals(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn open_sessions_are_capped_until_their_slots_are_dropped() {
        let limits = Arc::new(AddressLimits::new(0, 2, 0.0, 0.0));
        let first = limits.admit_session(ip("192.0.2.1")).unwrap();
        let _second = limits.admit_session(ip("192.0.2.1")).unwrap();
        assert_eq!(
            limits.admit_session(ip("192.0.2.1")).unwrap_err(),
            SessionRefusal::TooMany
        );
        drop(first);
        assert!(limits.admit_session(ip("192.0.2.1")).unwrap().is_some());
    }

    #[test]
    fn idle_addresses_are_forgotten_and_zero_means_no_limit() {
        let limits = Arc::new(AddressLimits::new(1, 1, 1000.0, 0.0));
        let permit = limits.connect(ip("192.0.2.1")).unwrap();
        let session = limits.admit_session(ip("192.0.2.2")).unwrap();
        drop(limits.admit_session(ip("192.0.2.4")).unwrap());
        limits.count_refusal(ip("192.0.2.3"));
        assert_eq!(
            limits.tracked(),
            3,
            "refusals are not tracked when unlimited"
        );
        std::thread::sleep(Duration::from_millis(20));
        limits.prune();
        assert_eq!(
            limits.tracked(),
            2,
            "only addresses holding something are left"
        );
        drop((permit, session));
        limits.prune();
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn the_rightmost_forwarded_entry_is_the_client() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(forwarded_for(&headers), None);
        headers.append("x-forwarded-for", "10.9.9.9".parse().unwrap());
        headers.append(
            "x-forwarded-for",
            "203.0.113.5, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(forwarded_for(&headers), Some(ip("198.51.100.7")));
        headers.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(forwarded_for(&headers), Some(ip("2001:db8::1")));
        headers.insert("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }
}
