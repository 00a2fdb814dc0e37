//! A floor holder flooding the serial port cannot make the bridge deaf. The
//! device is a 9600-baud pty whose far end (the master) the test holds and,
//! for a while, does not read: a line that takes nothing. The holder writes
//! until the port's queue is full; then the device's own line still reaches
//! a watcher within a second (today's read never waits behind a write), the
//! flood gets one `serial_queue_full` error, not one per dropped message,
//! and once the device reads again the queued bytes arrive in order and
//! the holder's next write goes through. Skipped under qemu-user, which
//! cannot run rtcam's pty ioctls.

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::Server;
use common::channels::ChannelViewer;
use serialport::{SerialPort, TTYPort};

const WAIT: Duration = Duration::from_secs(10);
/// The size of each flooding message.
const MESSAGE: usize = 1024;
/// Flooding messages sent at most before the queue must have overflowed
/// (the pty holds some 70 KiB, rtcam's queue 4 KiB at 9600 baud).
const MOST: usize = 600;
/// How late the device's line may reach a watcher.
const PROMPT: Duration = Duration::from_secs(1);

/// Flooding message `i`: "msg 0007 ....\n", [`MESSAGE`] bytes.
fn message(i: usize) -> Vec<u8> {
    let mut m = format!("msg {i:04} ").into_bytes();
    m.resize(MESSAGE - 1, b'.');
    m.push(b'\n');
    m
}

/// What the device reads until `done` likes it all or `limit` passes.
fn device_reads(master: &mut TTYPort, limit: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got[..]) && Instant::now() < until {
        // Times out after the port's 100 ms when nothing comes.
        if let Ok(n) = master.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    got
}

/// What the device reads until nothing more comes for `quiet`.
fn device_drains(master: &mut TTYPort, quiet: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut last = Instant::now();
    let until = Instant::now() + WAIT;
    while last.elapsed() < quiet && Instant::now() < until {
        if let Ok(n) = master.read(&mut buf)
            && n > 0
        {
            got.extend_from_slice(&buf[..n]);
            last = Instant::now();
        }
    }
    got
}

fn errors(v: &ChannelViewer) -> Vec<serde_json::Value> {
    v.seen
        .iter()
        .filter(|m| m["type"] == "error")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_neither_deafens_the_bridge_nor_earns_an_error_per_message() {
    if common::emulated() {
        eprintln!("skipped: under qemu-user");
        return;
    }
    // The test holds `slave` open too (and never reads it), so the master
    // never sees a hang-up while rtcam opens and closes its end.
    let (mut master, slave) = TTYPort::pair().expect("a pty pair");
    let dev = slave.name().expect("the pty's path");
    let server = Server::start(&[
        "--size",
        "640x360",
        "--serial",
        &dev,
        "--serial-baud",
        "9600",
    ]);
    let mut a = ChannelViewer::join(server.http, &server.token("desk", true)).await;
    let mut watcher = ChannelViewer::join(server.http, &server.token("hall", false)).await;
    for v in [&mut a, &mut watcher] {
        assert!(v.wait_serial_open(WAIT), "the serial channel opens");
        let open = v.wait_for(WAIT, |m| m["type"] == "serial" && m["state"] == "open");
        assert!(open.is_some(), "the bridge is open");
    }
    master.write_all(b"ready\n").unwrap();
    assert_eq!(watcher.read_serial(6, WAIT), b"ready\n");

    // The device takes nothing: the holder writes, paced so that only a
    // full line (not a slow thread) fills the queue, until it is told.
    let mut sent = 0;
    let mut told = None;
    while told.is_none() && sent < MOST {
        a.write_serial(&message(sent));
        sent += 1;
        told = a.wait_for(Duration::from_millis(20), |m| m["type"] == "error");
    }
    let told = told.unwrap_or_else(|| panic!("no error after {sent} messages of {MESSAGE}"));

    // Writes are pending and the line takes none: the device's own line
    // still reaches the watcher at once.
    let asked = Instant::now();
    master.write_all(b"battery 87%\n").unwrap();
    let line = watcher.read_serial(12, WAIT);
    let took = asked.elapsed();
    assert_eq!(line, b"battery 87%\n", "the device's line arrives");
    assert!(
        took < PROMPT,
        "the device's line took {took:?} behind the writes"
    );

    // More of the flood: every message is dropped, and none is told again.
    for i in sent..sent + 100 {
        a.write_serial(&message(i));
    }
    a.wait_for(Duration::from_millis(1500), |_| false);
    assert_eq!(told["reason"], "serial_queue_full", "{told}");
    let text = told["message"].as_str().unwrap_or("");
    assert!(text.contains("serial queue full"), "{text}");
    let all = errors(&a);
    assert_eq!(
        all.len(),
        1,
        "one error for the flood, not one per dropped message: {all:?}"
    );

    // The device reads again: what was queued comes out first, in order,
    // and the holder's next write goes through.
    let backlog = device_drains(&mut master, Duration::from_millis(300));
    assert!(backlog.starts_with(&message(0)), "the oldest bytes first");
    assert!(
        backlog.len() >= 2 * MESSAGE && backlog[MESSAGE..].starts_with(&message(1)),
        "then the next message"
    );
    a.write_serial(b"STOP\n");
    let tail = device_reads(&mut master, WAIT, |got| got.ends_with(b"STOP\n"));
    assert!(
        tail.ends_with(b"STOP\n"),
        "the next write reaches the device"
    );
    a.wait_for(Duration::from_millis(300), |_| false);
    let absent = a
        .seen
        .iter()
        .any(|m| m["type"] == "serial" && m["state"] == "absent");
    assert!(!absent, "the device was never taken for failed");
    assert_eq!(errors(&a).len(), 1, "a write taken again tells nothing");
    assert!(
        server.log_shows("writes dropped while the port's queue was full"),
        "the log counts the dropped writes"
    );
    drop(slave);
}
