#![allow(deprecated)] // MCP logging is deprecated (SEP-2577) but is what desktop hosts show.

//! Integration tests of the relay: real HTTP on 127.0.0.1, rmcp clients as participants.
//!
//! One test binary (one link) with a module per behaviour.

mod common;

mod abuse;
mod addresses;
mod capabilities;
mod chat;
mod conformance;
mod deploy;
mod labels;
mod liveness;
mod matching;
mod moderation;
mod pane;
mod redis;
mod redis_harness;
mod redis_tls;
mod redis_tls_harness;
mod session_layer;
mod shutdown;
mod store_parity;
mod streams;
mod waiting;
