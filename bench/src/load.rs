//! Driving participants: connecting a crowd, pacing senders, waiting for deliveries, closing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ledger::{Account, Clock, Sent, Stamp, Tally, encode, tally};
use crate::participant::{Clients, Pairing, Participant};

/// The pace every sender follows, changeable while they run.
#[derive(Debug)]
pub struct Pace {
    /// Time between two sends of one sender, ns; 0 sends back to back (closed loop).
    period_ns: AtomicU64,
    senders: usize,
    stop: CancellationToken,
    /// `send_message` calls started so far, by all senders.
    pub started: AtomicU64,
    /// Calls that failed so far.
    pub failed: AtomicU64,
    /// When the pace was created: `changed_ns` counts from here.
    base: Instant,
    /// When the rate last changed, ns after `base`.
    changed_ns: AtomicU64,
    /// How many times the rate changed: senders re-spread their start times when it moves.
    generation: AtomicU64,
}

impl Pace {
    /// A pace of `rate` messages per second in total over `senders` senders (`None`: each
    /// sender sends again as soon as its previous call returns).
    pub fn new(rate: Option<f64>, senders: usize) -> Arc<Self> {
        let pace = Arc::new(Self {
            period_ns: AtomicU64::new(0),
            senders: senders.max(1),
            stop: CancellationToken::new(),
            started: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            base: Instant::now(),
            changed_ns: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        pace.set_rate(rate);
        pace
    }

    /// Changes the total rate.
    pub fn set_rate(&self, rate: Option<f64>) {
        let period = match rate {
            Some(rate) if rate > 0.0 => (self.senders as f64 / rate * 1e9) as u64,
            _ => 0,
        };
        self.period_ns.store(period, Ordering::Relaxed);
        self.changed_ns
            .store(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Sender `k` of `count`'s next send time after a change of rate: its share of one period
    /// after the change, so that the senders stay evenly spread at every rate (carrying on
    /// from the old schedule would bunch them up after a few changes).
    fn respread(&self, k: u32, count: u32) -> Instant {
        let period = self.period();
        let mut next = self.base
            + Duration::from_nanos(self.changed_ns.load(Ordering::Relaxed))
            + period * k / count;
        // A sender that noticed the change late keeps its slot: the first one still ahead.
        let now = Instant::now();
        if !period.is_zero() && next < now {
            let behind = (now - next).as_nanos() / period.as_nanos();
            next += period * (behind as u32 + 1);
        }
        next
    }

    fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.load(Ordering::Relaxed))
    }

    /// Makes every sender stop after its current call.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Participants connected (and paired), and what went wrong on the way.
pub struct Crowd {
    /// Connected participants whose partner is connected too, by index.
    pub participants: Vec<Arc<Participant>>,
    /// Connection and pairing failures.
    pub errors: Tally,
    /// How long connecting (and pairing) took.
    pub ramp: Duration,
}

/// How a crowd connects.
#[derive(Debug, Clone, Copy)]
pub struct Ramp {
    /// How participants pair up; `None` leaves them unpaired (the baseline has no rooms).
    pub pairing: Option<Pairing>,
    /// Participants connecting at once.
    pub concurrency: usize,
    /// Ask the relay not to mirror events as logging notifications.
    pub mute_log_pushes: bool,
}

/// Connects `n` participants to `url` as `ramp` says, participant `i` with `clients.of(i)`.
/// Participants that fail, or whose partner failed, are counted and left out.
pub async fn gather(
    clients: &Clients,
    url: &str,
    n: usize,
    ramp: Ramp,
    clock: Clock,
    run_id: &str,
) -> Crowd {
    let Ramp {
        pairing,
        concurrency,
        mute_log_pushes,
    } = ramp;
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let progress_every = if n >= 2000 { n / 10 } else { usize::MAX };
    let results: Vec<Result<Participant, String>> = futures::stream::iter(0..n as u32)
        .map(|index| {
            let done = &done;
            async move {
                let p = Participant::connect_as(
                    clients.kind(),
                    clients.of(index),
                    url,
                    index,
                    clock,
                    mute_log_pushes,
                )
                .await?;
                if let Some(pairing) = pairing {
                    p.pair(pairing, run_id).await?;
                }
                if mute_log_pushes {
                    p.mute_log_pushes().await?;
                }
                let count = done.fetch_add(1, Ordering::Relaxed) + 1;
                if count.is_multiple_of(progress_every) {
                    eprintln!(
                        "  {count}/{n} participants connected ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(p)
            }
        })
        .buffer_unordered(concurrency.max(2))
        .collect()
        .await;
    let ramp = started.elapsed();
    let mut errors = Tally::default();
    let mut connected = Vec::with_capacity(n);
    for result in results {
        match result {
            Ok(p) => connected.push(p),
            Err(kind) => errors.error(kind, 1),
        }
    }
    connected.sort_by_key(|p| p.index);
    let mut participants: Vec<Arc<Participant>> = Vec::with_capacity(connected.len());
    if pairing.is_some() {
        let partner_of: std::collections::HashMap<u32, Option<u32>> =
            connected.iter().map(|p| (p.index, p.partner())).collect();
        for p in connected {
            // Keep only mutual pairs: a message to someone who is not there is not a loss.
            let mutual = p
                .partner()
                .and_then(|q| partner_of.get(&q).copied().flatten())
                == Some(p.index);
            if mutual {
                participants.push(Arc::new(p));
            } else {
                errors.error("unpaired", 1);
            }
        }
    } else {
        participants.extend(connected.into_iter().map(Arc::new));
    }
    Crowd {
        participants,
        errors,
        ramp,
    }
}

/// Sends one stamped message from `p`, recording it in `sent` (and counting it in `pace`).
pub async fn send_stamped(
    p: &Participant,
    sent: &mut Sent,
    size: usize,
    clock: Clock,
    pace: Option<&Pace>,
) {
    let seq = sent.starts.len() as u64;
    let start = clock.now_ns();
    let text = encode(
        Stamp {
            sender: p.index,
            seq,
            sent_ns: start,
        },
        size,
    );
    sent.starts.push(start);
    if let Some(pace) = pace {
        pace.started.fetch_add(1, Ordering::Relaxed);
    }
    let result = p.send(text).await;
    sent.call_ns.push(clock.now_ns() - start);
    if let Err(kind) = result {
        sent.failed.push((seq, kind));
        if let Some(pace) = pace {
            pace.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts one sender task per participant, following `pace` until it is stopped. Their start
/// times are spread evenly over one period so that the total rate is smooth.
pub fn start_senders(
    participants: &[Arc<Participant>],
    pace: &Arc<Pace>,
    size: usize,
    clock: Clock,
) -> Vec<JoinHandle<Sent>> {
    let count = participants.len().max(1) as u32;
    participants
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let p = p.clone();
            let pace = pace.clone();
            tokio::spawn(async move {
                let mut sent = Sent {
                    sender: p.index,
                    ..Sent::default()
                };
                let mut generation = pace.generation.load(Ordering::Acquire);
                let mut next = Instant::now() + pace.period() * k as u32 / count;
                loop {
                    if pace.period().is_zero() {
                        if pace.stop.is_cancelled() {
                            break;
                        }
                    } else {
                        tokio::select! {
                            _ = pace.stop.cancelled() => break,
                            _ = tokio::time::sleep_until(next) => {}
                        }
                    }
                    send_stamped(&p, &mut sent, size, clock, Some(&pace)).await;
                    let period = pace.period();
                    let now_generation = pace.generation.load(Ordering::Acquire);
                    if now_generation == generation {
                        next += period;
                    } else {
                        generation = now_generation;
                        next = pace.respread(k as u32, count);
                    }
                    // Fallen behind by more than a period (a slow call): carry on from now
                    // rather than bursting to catch up. The report shows the rate achieved.
                    let now = Instant::now();
                    if next + period < now {
                        next = now;
                    }
                }
                sent
            })
        })
        .collect()
}

/// Stops the senders and collects what they sent.
pub async fn stop_senders(pace: &Pace, senders: Vec<JoinHandle<Sent>>) -> Vec<Sent> {
    pace.stop();
    futures::future::join_all(senders)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// Waits until the participants have received `expected` distinct messages, or `patience` ran
/// out.
pub async fn drain(participants: &[Arc<Participant>], expected: u64, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let got: u64 = participants.iter().map(|p| p.received().unique()).sum();
        if got >= expected || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages accepted by the relay, according to the senders.
pub fn accepted(sent: &[Sent]) -> u64 {
    sent.iter()
        .map(|s| (s.starts.len() - s.failed.len()) as u64)
        .sum()
}

/// The books: what every sender sent against what its partner received, plus `setup` errors.
pub fn settle(participants: &[Arc<Participant>], sent: &[Sent], setup: &Tally) -> Tally {
    let guards: Vec<_> = participants.iter().map(|p| p.received()).collect();
    let accounts: Vec<Account<'_>> = participants
        .iter()
        .zip(&guards)
        .map(|(p, received)| Account {
            index: p.index,
            partner: p.partner(),
            received,
        })
        .collect();
    let mut out = tally(sent, &accounts);
    out.merge(setup);
    out
}

/// Ends every session (DELETE), `concurrency` at a time. The senders must have been stopped.
pub async fn close_all(participants: Vec<Arc<Participant>>, concurrency: usize) {
    futures::stream::iter(participants)
        .filter_map(|p| async move { Arc::into_inner(p) })
        .for_each_concurrent(concurrency.max(1), Participant::close)
        .await;
}
