//! This machine on the LAN: its names and addresses (`host.rs`), and LAN
//! discovery by mDNS/DNS-SD: the sans-IO table of the other rtcams
//! (`peers.rs`) and the shell that announces and browses (`mdns.rs`).

pub mod host;
pub mod mdns;
pub mod peers;
pub mod tcp;

pub use mdns::{Announce, Lan, PeersBoard};
