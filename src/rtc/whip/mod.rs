//! Publishing to an SFU by WHIP (RFC 9725): the publish itself is a row of
//! the session table (`sessions/publish.rs`); here is its HTTP side, a
//! sans-IO client per target (`client.rs`), and the thin shell that runs it
//! (`task.rs`, `http.rs`).

pub mod client;
pub mod exchange;
pub mod http;
pub mod sdp;
pub mod task;
pub mod url;

pub use client::{Endpoint, Phase, WhipClient, WhipError};
pub use task::{TargetView, WhipBoard, WhipTask};
pub use url::Url;
