//! Integration tests of the bridge: real bridge processes on real pipes, relays on loopback.

mod common;

mod apps;
mod bundle;
mod capabilities;
mod chat;
mod failover;
mod fault_proxy;
mod faults;
#[cfg(unix)]
mod install;
#[cfg(unix)]
mod installer;
mod lifecycle;
mod pane;
mod reconnect;
mod resume;
mod transparent;
