//! A WHEP player over real UDP that hears the device's microphone and talks
//! back, as an independent client: its str0m runs on a thread of its own,
//! keeps every audio packet with its arrival time, and sends the audio
//! stamp (libopus, 20 ms) while the test asks it to talk.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtcam::audio::opus::{VoiceDecoder, VoiceEncoder};
use rtcam::audio::stamp::{self, StampSource};
use rtcam::audio::{FRAME, FRAME_TIME, RATE, jitter::Playout, unix_ns};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::{Candidate, Event, Output, Rtc};

use super::{https_raw, udp_input};

/// One audio packet as it arrived.
#[derive(Clone)]
pub struct Heard {
    pub data: Vec<u8>,
    /// Wall-clock arrival, Unix ns.
    pub at_ns: u64,
}

pub struct AudioPeer {
    pub heard: Arc<Mutex<Vec<Heard>>>,
    pub talking: Arc<AtomicBool>,
    pub video_frames: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AudioPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A stamp the player found in what it heard: its slot and latency
/// (arrival of the packet holding its first sample, plus its place in it,
/// minus the slot's start).
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub slot: u16,
    pub latency_ms: f64,
}

impl AudioPeer {
    /// Offers sendrecv audio and recvonly video to `http`'s /whep.
    pub async fn join(http: SocketAddr, token: &str, audio: Direction) -> AudioPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, audio, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let auth = format!("Bearer {}", token.trim());
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/sdp"),
        ];
        let body = offer.to_sdp_string();
        let r = https_raw(http, "POST", "/whep", &headers, body.as_bytes()).await;
        assert_eq!(r.status, 201, "WHEP POST: {r:?}");
        assert!(
            r.body.contains("m=audio"),
            "the answer has audio: {}",
            r.body
        );
        let answer = SdpAnswer::from_sdp_string(&r.body).expect("answer parses");
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let mut peer = AudioPeer {
            heard: Default::default(),
            talking: Default::default(),
            video_frames: Default::default(),
            stop: Default::default(),
            thread: None,
        };
        let run = Run {
            rtc,
            socket,
            local,
            mid,
            heard: peer.heard.clone(),
            talking: peer.talking.clone(),
            video_frames: peer.video_frames.clone(),
            stop: peer.stop.clone(),
        };
        peer.thread = Some(std::thread::spawn(move || run.run()));
        peer
    }

    /// Waits (at most `limit`) for the first audio packet: connecting takes
    /// seconds on an emulated CPU, and the listening window starts then.
    pub async fn first_audio(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if !self.heard.lock().unwrap().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Decodes what it heard and reads the stamps in it.
    pub fn stamps(&self) -> Vec<Found> {
        self.stamps_with_offset(0.0)
    }

    /// [`Self::stamps`] from a sender whose wall clock runs `offset_ms`
    /// ahead of ours (negative: behind): each arrival is dated on the
    /// sender's clock.
    #[allow(dead_code)] // one test binary's
    pub fn stamps_with_offset(&self, offset_ms: f64) -> Vec<Found> {
        let heard = self.heard.lock().unwrap().clone();
        let mut decoder = VoiceDecoder::new().unwrap();
        let mut pcm: Vec<i16> = Vec::new();
        let mut starts: Vec<(usize, u64)> = Vec::new();
        for h in &heard {
            starts.push((pcm.len(), h.at_ns));
            pcm.extend_from_slice(decoder.decode(&Playout::Packet(h.data.clone())));
        }
        stamp::detect_i16(&pcm, RATE)
            .into_iter()
            .filter_map(|d| {
                let i = starts.partition_point(|(s, _)| (*s as f64) <= d.pos);
                let (start, at_ns) = *starts.get(i.checked_sub(1)?)?;
                // On the sender's clock.
                let arrival =
                    at_ns as f64 + (d.pos - start as f64) * 1e9 / RATE as f64 + offset_ms * 1e6;
                let slot_start = stamp::slot_start_ns(d.slot, arrival as u64) as f64;
                Some(Found {
                    slot: d.slot,
                    latency_ms: (arrival - slot_start) / 1e6,
                })
            })
            .collect()
    }
}

struct Run {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    heard: Arc<Mutex<Vec<Heard>>>,
    talking: Arc<AtomicBool>,
    video_frames: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Run {
    fn run(mut self) {
        let mut buf = vec![0u8; 2000];
        let mut encoder = VoiceEncoder::new(32).unwrap();
        let t0 = Instant::now();
        let mut source = StampSource::new(unix_ns(), RATE);
        let mut sent = 0u64;
        let mut pcm = vec![0i16; FRAME];
        while self.rtc.is_alive() && !self.stop.load(Ordering::Relaxed) {
            let Some(timeout) = self.drain() else { return };
            // A frame is due each 20 ms: rendered from the wall clock
            // while talking, skipped (as a muted track sends nothing)
            // while not.
            let due = t0 + FRAME_TIME * (sent as u32 + 1);
            if Instant::now() >= due {
                source.next_frame(&mut pcm);
                if self.talking.load(Ordering::Relaxed) {
                    self.talk(&mut encoder, &pcm, sent);
                }
                sent += 1;
                continue;
            }
            // udp_input waits at least 1 ms.
            let wait = due
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            let Some(input) = udp_input(&self.socket, self.local, &mut buf, timeout, wait) else {
                continue;
            };
            if let Err(e) = self.rtc.handle_input(input) {
                eprintln!("audio peer input: {e}");
                return;
            }
        }
        let _ = self.rtc.close();
    }

    fn talk(&mut self, encoder: &mut VoiceEncoder, pcm: &[i16], n: u64) {
        let data = encoder.encode(pcm).unwrap();
        let Some(writer) = self.rtc.writer(self.mid) else {
            return;
        };
        let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else {
            return;
        };
        let level = -(rtcam::audio::level_dbov(pcm) as i8);
        let time = MediaTime::new(n * FRAME as u64, Frequency::FORTY_EIGHT_KHZ);
        let _ =
            writer
                .audio_level(level, level > -60)
                .write(pt, Instant::now(), time, data.to_vec());
    }

    /// Polls str0m until it waits; `None` when it is done.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::MediaData(d))) if d.mid == self.mid => {
                    self.heard.lock().unwrap().push(Heard {
                        data: d.data.to_vec(),
                        at_ns: unix_ns(),
                    });
                }
                Ok(Output::Event(Event::MediaData(_))) => {
                    self.video_frames.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    eprintln!("audio peer: {e}");
                    return None;
                }
            }
        }
    }
}

/// Checks that at least `least` stamps were heard, in order, with at most
/// one lost between them (a CI run on a loaded 2-core machine lost one of
/// eight once; how well audio plays is bench/audio.sh's to judge); their
/// latencies, ms. `log` is shown when they were not.
pub fn heard_in_order(found: &[Found], least: usize, log: &str) -> Vec<f64> {
    assert!(found.len() >= least, "stamps heard: {found:?}\n{log}");
    let mut lost = 0;
    for pair in found.windows(2) {
        let step = pair[1].slot.wrapping_sub(pair[0].slot);
        assert!((1..=2).contains(&step), "in order, none misread: {found:?}");
        lost += usize::from(step - 1);
    }
    assert!(lost <= 1, "{lost} lost: {found:?}");
    found.iter().map(|f| f.latency_ms).collect()
}

/// Like [`heard_in_order`] where some stamps may be lost (an emulated
/// board's first seconds are choppy): at least `least`, none misread (slots
/// only ever increase, and every latency is under 2 s: a misread slot
/// would put its start seconds or hours away).
pub fn heard_increasing(found: &[Found], least: usize, log: &str) -> Vec<f64> {
    assert!(found.len() >= least, "stamps heard: {found:?}\n{log}");
    for pair in found.windows(2) {
        assert!(pair[1].slot > pair[0].slot, "misread: {found:?}");
    }
    let latency: Vec<f64> = found.iter().map(|f| f.latency_ms).collect();
    assert!(
        latency.iter().all(|l| (0.0..2_000.0).contains(l)),
        "{found:?}"
    );
    latency
}

/// Percentile `p` (0..1) of `xs`.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}
