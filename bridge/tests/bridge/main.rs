//! Integration tests of the bridge: real bridge processes on real pipes, relays on loopback.

mod common;

mod chat;
#[cfg(unix)]
mod install;
#[cfg(unix)]
mod installer;
mod lifecycle;
mod reconnect;
mod transparent;
