//! Integration tests of the bridge: real bridge processes on real pipes, relays on loopback.

mod common;

mod chat;
mod install;
mod installer;
mod lifecycle;
mod reconnect;
mod transparent;
