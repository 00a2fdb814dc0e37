//! A WHEP viewer over real UDP that also makes the `rtcam` and `serial`
//! data channels, as the page does: it speaks the JSON protocol and the
//! serial bridge's raw bytes from a test. Its str0m runs on a thread of its
//! own; the test talks to it through channels.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::media::{Direction, MediaKind};
use str0m::{Event, Output, Rtc};

use super::{h264_peer, https_raw, udp_input};

enum Ask {
    Text(String),
    Bytes(Vec<u8>),
}

pub struct ChannelViewer {
    asks: Sender<Ask>,
    texts: Receiver<serde_json::Value>,
    bytes: Receiver<Vec<u8>>,
    /// Every text message seen so far, in order.
    pub seen: Vec<serde_json::Value>,
    pub frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Its `serial` channel is open.
    pub serial_open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub location: String,
    /// The peer's thread, joined when the viewer is dropped: none outlives
    /// its test (a thread still in str0m's crypto when the process exits
    /// is a crash waiting to happen).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ChannelViewer {
    fn drop(&mut self) {
        // Its road closing tells the peer to close and end.
        let (closed, _) = channel();
        drop(std::mem::replace(&mut self.asks, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ChannelViewer {
    /// Offers recvonly video with both channels to `http`'s /whep with
    /// `token`, and runs the peer until the test drops it.
    pub async fn join(http: SocketAddr, token: &str) -> ChannelViewer {
        let (socket, local, mut rtc) = h264_peer();
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let control = api.add_channel_with_config(ChannelConfig {
            label: "rtcam".into(),
            ..Default::default()
        });
        let serial = api.add_channel_with_config(ChannelConfig {
            label: "serial".into(),
            ..Default::default()
        });
        let (offer, pending) = api.apply().expect("an offer");
        let auth = format!("Bearer {}", token.trim());
        let r = https_raw(
            http,
            "POST",
            "/whep",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/sdp"),
            ],
            offer.to_sdp_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 201, "WHEP POST: {r:?}");
        let answer = SdpAnswer::from_sdp_string(&r.body).expect("answer parses");
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let (asks, asks_rx) = channel();
        let (texts_tx, texts) = channel();
        let (bytes_tx, bytes) = channel();
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let serial_open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peer = Peer {
            serial_open: serial_open.clone(),
            rtc,
            socket,
            local,
            control,
            serial,
            asks: asks_rx,
            texts: texts_tx,
            bytes: bytes_tx,
            frames: frames.clone(),
        };
        let thread = std::thread::spawn(move || peer.run());
        ChannelViewer {
            asks,
            texts,
            bytes,
            seen: Vec::new(),
            frames,
            serial_open,
            location: r.header("location").unwrap_or_default().to_string(),
            thread: Some(thread),
        }
    }

    pub fn send(&self, json: &str) {
        let _ = self.asks.send(Ask::Text(json.into()));
    }

    pub fn write_serial(&self, bytes: &[u8]) {
        let _ = self.asks.send(Ask::Bytes(bytes.to_vec()));
    }

    /// The next text message (after those seen) that `pred` likes.
    pub fn wait_for(
        &mut self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let until = Instant::now() + limit;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let Ok(m) = self.texts.recv_timeout(left) else {
                break;
            };
            self.seen.push(m.clone());
            if pred(&m) {
                return Some(m);
            }
        }
        None
    }

    /// The next message of this type.
    pub fn wait_type(&mut self, t: &str, limit: Duration) -> Option<serde_json::Value> {
        self.wait_for(limit, |m| m["type"] == t)
    }

    /// Waits until its `serial` channel is open.
    pub fn wait_serial_open(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while !self.serial_open.load(std::sync::atomic::Ordering::Relaxed) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Bytes from the serial channel until `want` arrived or `limit`.
    pub fn read_serial(&self, want: usize, limit: Duration) -> Vec<u8> {
        let until = Instant::now() + limit;
        let mut got = Vec::new();
        while got.len() < want {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.bytes.recv_timeout(left) {
                Ok(b) => got.extend(b),
                Err(_) => break,
            }
        }
        got
    }
}

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    control: ChannelId,
    serial: ChannelId,
    asks: Receiver<Ask>,
    texts: Sender<serde_json::Value>,
    bytes: Sender<Vec<u8>>,
    frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    serial_open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Peer {
    fn run(mut self) {
        let mut buf = vec![0u8; 2000];
        let mut open = (false, false);
        let mut waiting: Vec<Ask> = Vec::new();
        while self.rtc.is_alive() {
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::ChannelOpen(id, _) if id == self.control => open.0 = true,
                        Event::ChannelOpen(id, _) if id == self.serial => {
                            open.1 = true;
                            self.serial_open
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        Event::ChannelData(d) if d.id == self.control => {
                            let parsed = serde_json::from_slice(&d.data);
                            if let Ok(v) = parsed
                                && self.texts.send(v).is_err()
                            {
                                return; // the test is done
                            }
                        }
                        Event::ChannelData(d) if d.id == self.serial => {
                            let _ = self.bytes.send(d.data);
                        }
                        Event::MediaData(_) => {
                            self.frames
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        _ => {}
                    },
                    Err(_) => return,
                }
            };
            loop {
                match self.asks.try_recv() {
                    Ok(a) => waiting.push(a),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        let _ = self.rtc.close();
                        return;
                    }
                }
            }
            waiting.retain(|a| !self.write(a, open));
            let wait = Duration::from_millis(20);
            let Some(input) = udp_input(&self.socket, self.local, &mut buf, timeout, wait) else {
                continue;
            };
            if self.rtc.handle_input(input).is_err() {
                return;
            }
        }
    }

    /// Writes what the test asked, once its channel is open.
    fn write(&mut self, ask: &Ask, open: (bool, bool)) -> bool {
        let (id, binary, data, ready) = match ask {
            Ask::Text(t) => (self.control, false, t.as_bytes(), open.0),
            Ask::Bytes(b) => (self.serial, true, &b[..], open.1),
        };
        if !ready {
            return false;
        }
        // Ok(false): its buffer is full; kept for the next turn.
        match self.rtc.channel(id) {
            Some(mut c) => matches!(c.write(binary, data), Ok(true)),
            None => false,
        }
    }
}
