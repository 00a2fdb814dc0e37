//! Every datagram rtcam sends fits `--mtu`: a VPN (WireGuard, Tailscale)
//! silently drops larger ones. Large keyframes, VP8, the serial bridge's
//! bursts on a data channel and the DTLS handshake, on simulated time with
//! str0m peers; the harness checks each datagram against the default
//! 1150 bytes in every other simulated test too.

use crate::common;

use std::time::Duration;

use common::sim::{SERVER, Sim, codecs};
use rtcam::frame::VideoCodec;
use rtcam::rtc::SessionConfig;
use rtcam::serial::{SerialState, SerialView};

fn sim_with_mtu(mtu: Option<usize>) -> Sim {
    let mut config = SessionConfig::new(vec![SERVER.parse().unwrap()], 4, codecs());
    if let Some(mtu) = mtu {
        config.mtu = mtu;
    }
    Sim::with_config(config)
}

/// A viewer of each codec with both data channels, then big frames of both
/// codecs and 64 KiB from the serial port.
fn send_everything_big(sim: &mut Sim) {
    sim.sessions.set_serial(SerialView {
        state: SerialState::Open,
        path: Some("/dev/ttyUSB0".into()),
        baud: 115_200,
        problem: None,
    });
    sim.join_with_serial();
    sim.join_as(common::sim::Browser::FirefoxOffline);
    sim.connect_all();
    for _ in 0..100 {
        sim.step(Duration::from_millis(10));
    }
    for i in 0..30 {
        // A keyframe as one 40 KB NAL (a camera's own H.264 does that).
        sim.frame_sized(VideoCodec::H264, i == 0, 40_000);
        sim.frame_sized(VideoCodec::Vp8, i == 0, 30_000);
        sim.step(Duration::from_millis(33));
    }
    let burst: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    sim.sessions.serial_received(&burst);
    for _ in 0..100 {
        sim.step(Duration::from_millis(10));
    }
    assert!(
        sim.peers[0].frames.len() >= 20 && sim.peers[1].frames.len() >= 20,
        "frames arrive whole: {} H.264, {} VP8",
        sim.peers[0].frames.len(),
        sim.peers[1].frames.len()
    );
    assert!(
        sim.peers[0].serial_bytes.len() >= 60 * 1024,
        "the serial burst arrives: {} bytes",
        sim.peers[0].serial_bytes.len()
    );
}

#[test]
fn by_default_no_datagram_is_over_1150_bytes_and_packets_are_filled() {
    let mut sim = sim_with_mtu(None);
    send_everything_big(&mut sim);
    // The harness fails on anything over 1150; packets are not needlessly
    // small either (the media is cut close to the limit).
    assert!(
        (1050..=1150).contains(&sim.largest_datagram),
        "largest datagram {} bytes",
        sim.largest_datagram
    );
}

#[test]
fn a_smaller_mtu_holds_for_media_and_data_channels() {
    let mut sim = sim_with_mtu(Some(800));
    send_everything_big(&mut sim);
    assert!(
        (700..=800).contains(&sim.largest_datagram),
        "--mtu 800: largest datagram {} bytes",
        sim.largest_datagram
    );
}
