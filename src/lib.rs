//! The wire contract of mcp-chat: everything the relay and the bridge must agree on.
//!
//! mcp-chat lets people chat anonymously with strangers from inside the AI desktop clients they
//! already use. The **relay** (`mcp-chat-relay`) matches participants and routes messages over MCP
//! Streamable HTTP; the **bridge** (`mcp-chat-bridge`) puts stdio-only desktop clients on a relay.
//! Both link this crate so that neither can drift from the other.
//!
//! # Layout
//! - [`tools`]: tool names, their input parameters, their structured outputs, and the
//!   [`tools::tool_definitions`] list that both programs serve.
//! - [`events`]: the events a participant receives (`chatroom.found`, `message.received`,
//!   `partner.disconnected`), which are both pushed as notifications and returned by
//!   `wait_for_message`.
//! - [`errors`]: the machine-readable error codes carried by failed tool calls.
//! - [`limits`]: default limits and the input sanitisers that enforce the contract's bounds.
//! - [`render`]: the short text renderings a model reads next to the structured results.
//! - [`protocol`]: MCP protocol versions and HTTP header names.
//! - [`secrets`]: the one rule for reading a token file (BOM, whitespace, empty file).
//! - [`pane`]: the chat pane (an MCP App view, also the relay's web page) and its tools, listed
//!   only to hosts that render MCP Apps.

pub mod errors;
pub mod events;
pub mod limits;
pub mod pane;
pub mod protocol;
pub mod render;
pub mod secrets;
pub mod tools;

pub use errors::{ErrorCode, ToolError};
pub use events::{ChatEvent, DisconnectReason, EventBody, RoomKind};
