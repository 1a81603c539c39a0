//! A fault case that exposes an open RELAY bug (see "Open problems" in docs/reliability.md):
//! after an RST of A's SSE stream, the one to three events the relay pushes right after it are
//! occasionally never pushed (later ones are). Kept out of the suite (not declared in `main.rs`)
//! until the relay is fixed; declare it with `mod faults_relay_pending;` to run it.

use crate::faults::{Rng, chat_through_resets, logged, received};

/// Strict form of `faults::sse_stream_cut_at_random_points_loses_and_repeats_nothing`: every
/// message reaches A's host exactly once *by push*, in order. Fails about one run in five
/// under load: one push is missed for good after a reset (later ones arrive).
#[tokio::test]
async fn sse_stream_cut_at_random_points_pushes_every_message_once() {
    let (mut rng, seed) = Rng::from_env();
    let (_relay, proxy, a, _b, sent, cut_after, seen) =
        chat_through_resets(&mut rng, seed, "cutstrict").await;
    let diag = format!(
        "\nseed {seed}, resets after {cut_after:?}, proxy resets {}\n--- A ---\n{}",
        proxy.resets(),
        a.stderr()
    );
    assert_eq!(received(&seen), sent, "pushed once each, in order{diag}");
    assert_eq!(logged(&seen), sent, "log mirror once each{diag}");
}
