//! Counting every message by (sender, sequence number), and timing its delivery.
//!
//! A message's text starts with `sender:seq:sent_ns:` (then padding up to the message size):
//! the receiver learns who sent it, which one it was and when its `send_message` call started,
//! on the one monotonic [`Clock`] of this process. Nothing has to be looked up on the hot path,
//! and lost, duplicated and misrouted messages are found by comparing what each sender sent
//! with what its partner received.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::Instant;

use serde::Serialize;

/// The monotonic clock of the generator: nanoseconds since the run started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What a message's text says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sending participant's index.
    pub sender: u32,
    /// The sender's message number (0, 1, 2, ...).
    pub seq: u64,
    /// When the `send_message` call started, on the [`Clock`].
    pub sent_ns: u64,
}

/// The text of message `stamp`, padded with `x` to `size` bytes (never shorter than its stamp).
pub fn encode(stamp: Stamp, size: usize) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(size.max(48));
    let _ = write!(text, "{}:{}:{}:", stamp.sender, stamp.seq, stamp.sent_ns);
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Reads the stamp of a message text made by [`encode`].
pub fn decode(text: &str) -> Option<Stamp> {
    let mut parts = text.splitn(4, ':');
    Some(Stamp {
        sender: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        sent_ns: parts.next()?.parse().ok()?,
    })
}

/// A set of sequence numbers (a growable bit set: senders number their messages densely).
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    bits: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; false when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask != 0 {
            return false;
        }
        self.bits[word] |= mask;
        self.len += 1;
        true
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        self.bits
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The numbers at or above `bound`, counted.
    pub fn count_from(&self, bound: u64) -> u64 {
        (bound..self.bits.len() as u64 * 64)
            .filter(|&s| self.contains(s))
            .count() as u64
    }
}

/// One delivered message's timing.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When its `send_message` call started ([`Clock`] nanoseconds).
    pub sent_ns: u64,
    /// From then until the partner's `message.received` notification arrived.
    pub latency_ns: u64,
}

/// Everything one participant received.
#[derive(Debug, Default)]
pub struct Received {
    /// Sequence numbers seen, per sender (normally just the partner).
    from: Vec<(u32, SeqSet)>,
    /// Timing of every first receipt, in arrival order.
    pub samples: Vec<Sample>,
    /// Receipts of a message already received.
    pub duplicates: u64,
    /// `message.received` notifications whose text was not made by [`encode`].
    pub garbled: u64,
    /// `partner.disconnected` notifications (nobody leaves during a measurement).
    pub disconnects: u64,
}

impl Received {
    /// Records the receipt of `stamp` at `now_ns`.
    pub fn record(&mut self, stamp: Stamp, now_ns: u64) {
        let set = match self.from.iter_mut().position(|(s, _)| *s == stamp.sender) {
            Some(i) => &mut self.from[i].1,
            None => {
                self.from.push((stamp.sender, SeqSet::default()));
                &mut self.from.last_mut().expect("just pushed").1
            }
        };
        if set.insert(stamp.seq) {
            self.samples.push(Sample {
                sent_ns: stamp.sent_ns,
                latency_ns: now_ns.saturating_sub(stamp.sent_ns),
            });
        } else {
            self.duplicates += 1;
        }
    }

    /// Whether message `seq` of `sender` was received.
    pub fn has(&self, sender: u32, seq: u64) -> bool {
        self.from
            .iter()
            .find(|(s, _)| *s == sender)
            .is_some_and(|(_, set)| set.contains(seq))
    }

    /// Distinct messages received, from anyone.
    pub fn unique(&self) -> u64 {
        self.from.iter().map(|(_, set)| set.len()).sum()
    }
}

/// What one sender did.
#[derive(Debug, Default)]
pub struct Sent {
    /// The sender's index.
    pub sender: u32,
    /// Start of each `send_message` call ([`Clock`] nanoseconds); the position is the message's
    /// sequence number.
    pub starts: Vec<u64>,
    /// How long each call took until its answer, ns (same positions as `starts`).
    pub call_ns: Vec<u64>,
    /// Calls that failed: sequence number and error kind.
    pub failed: Vec<(u64, String)>,
}

/// Messages and errors, counted.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    /// `send_message` calls made.
    pub sent: u64,
    /// Calls that succeeded.
    pub accepted: u64,
    /// Accepted messages that reached the partner.
    pub delivered: u64,
    /// Accepted messages that never reached the partner.
    pub lost: u64,
    /// Extra copies received of messages already received.
    pub duplicated: u64,
    /// Messages whose call failed but which arrived anyway.
    pub delivered_after_error: u64,
    /// Errors by kind (failed calls, connection and pairing failures, anomalies on receipt).
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds `n` errors of `kind`.
    pub fn error(&mut self, kind: impl Into<String>, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.into()).or_default() += n;
        }
    }

    /// True when every accepted message arrived exactly once and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.delivered_after_error == 0
            && self.errors.is_empty()
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.delivered_after_error += other.delivered_after_error;
        for (kind, n) in &other.errors {
            self.error(kind.clone(), *n);
        }
    }
}

/// One participant's side of the books: who its partner is and what it received.
pub struct Account<'a> {
    /// The participant's index.
    pub index: u32,
    /// Its partner's index.
    pub partner: Option<u32>,
    /// What it received.
    pub received: &'a Received,
}

/// Compares what every sender sent with what its partner received.
pub fn tally(sent: &[Sent], accounts: &[Account<'_>]) -> Tally {
    let mut out = Tally::default();
    let by_index: HashMap<u32, &Account<'_>> = accounts.iter().map(|a| (a.index, a)).collect();
    let sent_by: HashMap<u32, &Sent> = sent.iter().map(|s| (s.sender, s)).collect();
    for s in sent {
        let failed: HashMap<u64, &str> = s.failed.iter().map(|(q, k)| (*q, k.as_str())).collect();
        let seen = by_index
            .get(&s.sender)
            .and_then(|a| a.partner)
            .and_then(|p| by_index.get(&p))
            .and_then(|p| p.received.from.iter().find(|(from, _)| *from == s.sender))
            .map(|(_, set)| set);
        for seq in 0..s.starts.len() as u64 {
            let arrived = seen.is_some_and(|set| set.contains(seq));
            out.sent += 1;
            match failed.get(&seq) {
                Some(kind) => {
                    out.error(*kind, 1);
                    out.delivered_after_error += u64::from(arrived);
                }
                None => {
                    out.accepted += 1;
                    if arrived {
                        out.delivered += 1;
                    } else {
                        out.lost += 1;
                    }
                }
            }
        }
    }
    for account in accounts {
        let r = account.received;
        out.duplicated += r.duplicates;
        out.error("garbled_message", r.garbled);
        out.error("partner_disconnected", r.disconnects);
        for (from, set) in &r.from {
            let partner_of_sender = by_index.get(from).and_then(|a| a.partner);
            if partner_of_sender != Some(account.index) {
                out.error("misrouted", set.len());
            } else if let Some(s) = sent_by.get(from) {
                out.error("never_sent", set.count_from(s.starts.len() as u64));
            } else {
                out.error("never_sent", set.len());
            }
        }
    }
    out
}

/// Delivery latency percentiles.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LatencySummary {
    /// Messages timed.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
}

impl LatencySummary {
    /// Summarises latencies in nanoseconds (sorted here).
    pub fn of(mut latencies: Vec<u64>) -> Self {
        if latencies.is_empty() {
            return Self::default();
        }
        latencies.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        // Nearest rank: the smallest value with at least p of the samples at or below it.
        let at = |p: f64| {
            let rank = (p * latencies.len() as f64).ceil() as usize;
            ms(latencies[rank.clamp(1, latencies.len()) - 1])
        };
        Self {
            count: latencies.len() as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(*latencies.last().expect("not empty")),
            mean_ms: ms(latencies.iter().sum::<u64>() / latencies.len() as u64),
        }
    }
}

/// Latencies (ns) of the messages whose `send_message` call started within `window`.
pub fn window_latencies<'a>(
    received: impl IntoIterator<Item = &'a Received>,
    window: &Range<u64>,
) -> Vec<u64> {
    received
        .into_iter()
        .flat_map(|r| r.samples.iter())
        .filter(|s| window.contains(&s.sent_ns))
        .map(|s| s.latency_ns)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_survive_the_text() {
        let stamp = Stamp {
            sender: 17,
            seq: 4242,
            sent_ns: 123_456_789,
        };
        let text = encode(stamp, 100);
        assert_eq!(text.len(), 100);
        assert_eq!(decode(&text), Some(stamp));
        assert!(encode(stamp, 1).len() > 1, "never cut below the stamp");
        assert_eq!(decode("hello"), None);
    }

    #[test]
    fn tally_finds_lost_duplicated_and_misrouted_messages() {
        let mut a = Received::default();
        let mut b = Received::default();
        let stamp = |sender, seq| Stamp {
            sender,
            seq,
            sent_ns: 0,
        };
        // 0 sent 0..4 to 1; 1 got 0, 1 twice, 3 (2 lost); 2 failed and never arrived.
        for seq in [0, 1, 1, 3] {
            b.record(stamp(0, seq), 10);
        }
        // 1 sent 0..1 to 0 and it arrived; 0 also got one from 9, who is not its partner.
        a.record(stamp(1, 0), 5);
        a.record(stamp(9, 0), 5);
        let sent = vec![
            Sent {
                sender: 0,
                starts: vec![0; 5],
                call_ns: vec![0; 5],
                failed: vec![(4, "tool:rate_limited".to_owned())],
            },
            Sent {
                sender: 1,
                starts: vec![0; 1],
                call_ns: vec![0; 1],
                failed: vec![],
            },
        ];
        let accounts = [
            Account {
                index: 0,
                partner: Some(1),
                received: &a,
            },
            Account {
                index: 1,
                partner: Some(0),
                received: &b,
            },
        ];
        let t = tally(&sent, &accounts);
        assert_eq!((t.sent, t.accepted, t.delivered), (6, 5, 4));
        assert_eq!((t.lost, t.duplicated), (1, 1));
        assert_eq!(t.errors.get("tool:rate_limited"), Some(&1));
        assert_eq!(t.errors.get("misrouted"), Some(&1));
        assert!(!t.is_clean());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = LatencySummary::of((1..=1000).map(|ms| ms * 1_000_000).collect());
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_ms, 500.0);
        assert_eq!(s.p99_ms, 990.0);
        assert_eq!(s.p999_ms, 999.0);
        assert_eq!(s.max_ms, 1000.0);
    }
}
