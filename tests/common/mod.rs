//! Test harness: the real rtcam binary on loopback, an HTTPS/WSS client,
//! and a str0m viewer that receives, decodes and checks the video.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use rtcam::capture::stripe;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub mod audio_peer;
pub mod channels;
pub mod clips;
mod https;
pub mod link;
mod server;
pub mod sim;
mod viewer;

pub use https::*;
pub use server::*;
pub use viewer::*;

/// The largest datagram rtcam may send by default (`--mtu`): a VPN
/// (WireGuard, Tailscale) drops packets over about 1280 bytes, less its own
/// overhead. The simulated-time harnesses check every datagram against it.
pub const MTU: usize = 1150;

/// Fails the test if rtcam sent a datagram over [`MTU`].
#[track_caller]
pub fn assert_fits_mtu(datagram: &[u8]) {
    let len = datagram.len();
    assert!(
        len <= MTU,
        "rtcam sent a {len}-byte {} datagram: over the {MTU}-byte MTU",
        datagram_kind(datagram)
    );
}

/// What a datagram on a WebRTC port is (RFC 7983's demultiplexing).
pub fn datagram_kind(datagram: &[u8]) -> &'static str {
    match datagram.first() {
        Some(0..=3) => "STUN",
        Some(20..=63) => "DTLS",
        Some(128..=191) if matches!(datagram.get(1), Some(192..=223)) => "RTCP",
        Some(128..=191) => "RTP",
        _ => "unknown",
    }
}
