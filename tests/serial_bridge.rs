//! The serial bridge against a pty pair (`socat`): bytes both ways between
//! the device and viewers' `serial` channels, the floor rule (the first
//! writer holds the port; another is told who), and the device vanishing
//! and coming back while the video goes on. Skipped, saying so, where
//! socat is missing or under qemu-user (which cannot run rtcam's pty
//! ioctls); scripts/setup.sh installs socat.

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::Server;
use common::channels::ChannelViewer;

const WAIT: Duration = Duration::from_secs(10);

/// `socat` joining two ptys: `dev` (rtcam's) and `peer` (the test's end).
struct PtyPair {
    child: Child,
    dev: PathBuf,
    peer: PathBuf,
}

impl PtyPair {
    fn start(dir: &Path) -> PtyPair {
        let (dev, peer) = (dir.join("ttyRTCAM"), dir.join("ttyPEER"));
        let _ = std::fs::remove_file(&dev);
        let _ = std::fs::remove_file(&peer);
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", dev.display()))
            .arg(format!("pty,raw,echo=0,link={}", peer.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        let until = Instant::now() + WAIT;
        while !(dev.exists() && peer.exists()) {
            assert!(Instant::now() < until, "socat made no ptys");
            std::thread::sleep(Duration::from_millis(20));
        }
        PtyPair { child, dev, peer }
    }

    /// The test's end, non-blocking: a read never outlives its deadline.
    fn open_peer(&self) -> std::fs::File {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.peer)
            .expect("the peer pty")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.stop();
    }
}

fn skip_reason() -> Option<&'static str> {
    if common::emulated() {
        return Some("under qemu-user");
    }
    if Command::new("socat").arg("-V").output().is_err() {
        return Some("no socat (scripts/setup.sh --test installs it)");
    }
    None
}

fn serial_state(m: &serde_json::Value) -> (&str, &str, bool) {
    (
        m["state"].as_str().unwrap_or(""),
        m["holder"].as_str().unwrap_or(""),
        m["you_hold"].as_bool().unwrap_or(false),
    )
}

fn read_peer(peer: &mut std::fs::File, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let until = Instant::now() + WAIT;
    while got.len() < want && Instant::now() < until {
        match peer.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_go_both_ways_with_one_writer_and_survive_the_device_vanishing() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rtcam-serial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut pty = PtyPair::start(&dir);
    let dev = pty.dev.display().to_string();
    let server = Server::start(&[
        "--size",
        "640x360",
        "--serial",
        &dev,
        "--serial-baud",
        "9600",
    ]);
    let second = server.token("rover", true);
    let third = server.token("hall", false);

    let first = server.token("desk", true);
    let mut a = ChannelViewer::join(server.http, &first).await;
    let mut b = ChannelViewer::join(server.http, &second).await;
    let mut watcher = ChannelViewer::join(server.http, &third).await;
    for v in [&mut a, &mut b, &mut watcher] {
        assert!(v.wait_serial_open(WAIT), "the serial channel opens");
        let m = v.wait_for(WAIT, |m| m["type"] == "serial" && m["state"] == "open");
        let m = m.expect("the bridge is open");
        assert_eq!(m["path"], dev.as_str());
        assert_eq!(m["baud"], 9600);
    }

    // Device to every viewer.
    let mut peer = pty.open_peer();
    peer.write_all(b"hello from the rover\n").unwrap();
    for v in [&a, &b, &watcher] {
        assert_eq!(v.read_serial(21, WAIT), b"hello from the rover\n");
    }
    // A watch-only token reads, but may not write even a free port.
    watcher.write_serial(b"STOP\n");
    let refused = watcher.wait_type("error", WAIT).expect("refused");
    assert_eq!(refused["reason"], "not_allowed");

    // The first writer holds the port; the other is told who.
    a.write_serial(b"FWD 10\n");
    assert_eq!(read_peer(&mut peer, 7), b"FWD 10\n");
    let held = a.wait_for(WAIT, |m| m["type"] == "serial" && m["you_hold"] == true);
    assert_eq!(serial_state(&held.unwrap()).0, "open");
    let seen_by_b = b.wait_for(WAIT, |m| m["type"] == "serial" && m["holder"] == "desk");
    assert!(seen_by_b.is_some(), "b sees that a holds it");
    b.write_serial(b"STOP\n");
    let refused = b.wait_type("error", WAIT).expect("b is refused");
    assert_eq!(refused["reason"], "serial_busy");
    assert!(
        refused["message"].as_str().unwrap().contains("desk"),
        "{refused}"
    );
    std::thread::sleep(Duration::from_millis(300));
    peer.write_all(b"ok\n").unwrap();
    assert_eq!(
        read_peer_until_quiet(&mut peer),
        b"",
        "b's bytes never reached the device"
    );

    // The device vanishes: every viewer is told, the video goes on.
    drop(peer);
    pty.stop();
    for v in [&mut a, &mut b] {
        let m = v.wait_for(WAIT, |m| m["type"] == "serial" && m["state"] == "absent");
        let m = m.expect("told the device is gone");
        assert!(!m["problem"].as_str().unwrap_or("").is_empty(), "{m}");
    }
    let frames = a.frames.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.frames.load(Ordering::Relaxed) > frames, "video goes on");
    a.write_serial(b"FWD 1\n");
    assert_eq!(
        a.wait_type("error", WAIT).unwrap()["reason"],
        "serial_unavailable"
    );

    // It comes back (retried every 2 s) and bytes flow again.
    let pty2 = PtyPair::start(&dir);
    for v in [&mut a, &mut b] {
        let m = v.wait_for(WAIT, |m| m["type"] == "serial" && m["state"] == "open");
        assert!(m.is_some(), "the bridge reopens");
    }
    let mut peer = pty2.open_peer();
    a.write_serial(b"BACK\n");
    assert_eq!(read_peer(&mut peer, 5), b"BACK\n");
    assert!(server.log_shows("serial:"), "log lines about the port");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the device end reads within half a second, minus the "ok" it
/// wrote itself (a pty in raw mode does not echo).
fn read_peer_until_quiet(peer: &mut std::fs::File) -> Vec<u8> {
    let until = Instant::now() + Duration::from_millis(500);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < until {
        match peer.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    got
}
