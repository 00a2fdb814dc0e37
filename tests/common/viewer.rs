//! A str0m viewer: offers, receives, decodes and checks the video.

use super::*;

/// A browser stand-in: str0m as the offerer, recvonly H.264.
pub struct Client {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    pub offer: String,
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub connected: bool,
    pub frames: usize,
    pub decoded: usize,
    pub stamped: usize,
    pub unstamped: usize,
    pub sizes: Vec<(usize, usize)>,
    pub stamps: Vec<u64>,
    pub latencies_ms: Vec<i64>,
    pub first_frame_after: Option<Duration>,
    /// Each frame's RTP media time, in seconds: the sender's capture clock.
    pub media_times: Vec<f64>,
    /// The last decoded picture, kept by `run_decoded`.
    pub picture: Option<Picture>,
    /// Datagrams received, and the ICE states passed (for diagnosis).
    pub datagrams_in: usize,
    pub ice_states: Vec<String>,
}

/// A decoded I420 picture without row padding.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Picture {
    /// Mean (Y, U, V) over a rectangle given in luma pixels.
    pub fn mean(&self, x0: usize, y0: usize, w: usize, h: usize) -> (f64, f64, f64) {
        let (mut sy, mut su, mut sv, mut n, mut nc) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                sy += u64::from(self.y[y * self.width + x]);
                n += 1;
                if x % 2 == 0 && y % 2 == 0 {
                    let c = (y / 2) * (self.width / 2) + x / 2;
                    su += u64::from(self.u[c]);
                    sv += u64::from(self.v[c]);
                    nc += 1;
                }
            }
        }
        (
            sy as f64 / n as f64,
            su as f64 / nc as f64,
            sv as f64 / nc as f64,
        )
    }

    /// As a binary PGM of the luma plane, for looking at by eye.
    pub fn to_pgm(&self) -> Vec<u8> {
        let mut out = format!("P5\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.y);
        out
    }
}

/// When `Client::run_until` stops.
#[derive(Debug, Clone)]
pub enum Until {
    /// While `stop` is false, counting frames into `frames` without
    /// decoding them (a light viewer, for benchmarks with many).
    Counted {
        stop: Arc<std::sync::atomic::AtomicBool>,
        frames: Arc<std::sync::atomic::AtomicU64>,
    },
    /// This many frames carried a valid timestamp stripe.
    Stamped(usize),
    /// This many frames decoded (for sources without a stripe).
    Decoded(usize),
}

impl Report {
    pub fn latency_p50(&self) -> Option<i64> {
        let mut l = self.latencies_ms.clone();
        l.sort();
        l.get(l.len() / 2).copied()
    }
}

/// A loopback socket and an H.264 receiver whose host candidate it is.
pub fn h264_peer() -> (UdpSocket, SocketAddr, Rtc) {
    h264_peer_at("127.0.0.1")
}

/// [`h264_peer`] on another local address (a veth's: Janus ignores
/// loopback).
pub fn h264_peer_at(ip: &str) -> (UdpSocket, SocketAddr, Rtc) {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    (socket, local, rtc)
}

impl Client {
    pub fn new() -> Client {
        let (socket, local, mut rtc) = h264_peer();
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        Client {
            rtc,
            socket,
            local,
            pending: Some(pending),
            offer: offer.to_sdp_string(),
        }
    }

    /// A receiver standing in for an SFU: it answers `offer` (a WHIP
    /// publish; rtcam is the controlling ICE agent). Returns it and its
    /// answer.
    pub fn answering(offer: &str) -> (Client, String) {
        Client::answering_at(offer, "127.0.0.1")
    }

    /// [`Client::answering`] from another local address.
    pub fn answering_at(offer: &str, ip: &str) -> (Client, String) {
        let (socket, local, mut rtc) = h264_peer_at(ip);
        let offer = str0m::change::SdpOffer::from_sdp_string(offer).expect("offer parses");
        let answer = rtc.sdp_api().accept_offer(offer).expect("offer accepted");
        let client = Client {
            rtc,
            socket,
            local,
            pending: None,
            offer: String::new(),
        };
        (client, answer.to_sdp_string())
    }

    pub fn candidate_line(&self) -> String {
        Candidate::host(self.local, "udp").unwrap().to_sdp_string()
    }

    pub fn accept_answer(&mut self, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).expect("answer parses");
        let pending = self.pending.take().expect("offer pending");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    /// Receives until `want` frames carried a valid stamp, or `limit`
    /// passes. Then goes silent (or closes politely when `close`).
    pub fn run(self, want: usize, limit: Duration, close: bool) -> Report {
        self.run_until(Until::Stamped(want), limit, close)
    }

    /// Receives until `want` frames decoded, keeping the last picture.
    pub fn run_decoded(self, want: usize, limit: Duration) -> Report {
        self.run_until(Until::Decoded(want), limit, false)
    }

    pub fn run_until(mut self, until: Until, limit: Duration, close: bool) -> Report {
        let keep_picture = matches!(until, Until::Decoded(_));
        let start = Instant::now();
        let mut report = Report::default();
        let mut decoder = Decoder::new().unwrap();
        let mut buf = vec![0u8; 2000];
        loop {
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::Connected => report.connected = true,
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            report.ice_states.push("disconnected".into());
                            return report;
                        }
                        Event::IceConnectionStateChange(s) => {
                            report.ice_states.push(format!("{s:?}"));
                        }
                        Event::MediaData(_) if matches!(until, Until::Counted { .. }) => {
                            if let Until::Counted { frames, .. } = &until {
                                frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Event::MediaData(m) => {
                            report.frames += 1;
                            report.first_frame_after.get_or_insert(start.elapsed());
                            report.media_times.push(m.time.as_seconds());
                            if let Ok(Some(yuv)) = decoder.decode(&m.data) {
                                report.decoded += 1;
                                let (w, h) = yuv.dimensions();
                                if keep_picture {
                                    report.picture = Some(picture_of(&yuv));
                                }
                                if !report.sizes.contains(&(w, h)) {
                                    report.sizes.push((w, h));
                                }
                                match stripe::decode_luma(yuv.y(), w, h, yuv.strides().0) {
                                    Some(d) => {
                                        report.stamped += 1;
                                        report.stamps.push(d.stamp_ms);
                                        report
                                            .latencies_ms
                                            .push(now_ms() as i64 - d.stamp_ms as i64);
                                    }
                                    None => report.unstamped += 1,
                                }
                            }
                        }
                        _ => {}
                    },
                    Err(e) => panic!("client rtc failed: {e}"),
                }
            };
            let done = match &until {
                Until::Stamped(n) => report.stamped >= *n,
                Until::Decoded(n) => report.decoded >= *n,
                Until::Counted { stop, .. } => stop.load(std::sync::atomic::Ordering::Relaxed),
            };
            if done || start.elapsed() > limit || !self.rtc.is_alive() {
                break;
            }
            let wait = Duration::from_millis(50);
            let Some(input) = udp_input(&self.socket, self.local, &mut buf, timeout, wait) else {
                continue;
            };
            if matches!(input, Input::Receive(..)) {
                report.datagrams_in += 1;
            }
            self.rtc.handle_input(input).expect("client input");
        }
        if close {
            let _ = self.rtc.close();
            while let Ok(out) = self.rtc.poll_output() {
                match out {
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
        }
        report
    }
}

fn picture_of(yuv: &impl YUVSource) -> Picture {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let rows = |plane: &[u8], stride: usize, width: usize, height: usize| {
        (0..height)
            .flat_map(|r| plane[r * stride..r * stride + width].iter().copied())
            .collect::<Vec<u8>>()
    };
    Picture {
        width: w,
        height: h,
        y: rows(yuv.y(), sy, w, h),
        u: rows(yuv.u(), su, w / 2, h / 2),
        v: rows(yuv.v(), sv, w / 2, h / 2),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the socket gives by str0m's `timeout` (waiting 1 ms to `most`): a
/// datagram to `local`, or the timeout; `None` for one str0m cannot take.
pub fn udp_input<'b>(
    socket: &UdpSocket,
    local: SocketAddr,
    buf: &'b mut [u8],
    timeout: Instant,
    most: Duration,
) -> Option<Input<'b>> {
    let wait = timeout
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(1), most);
    socket.set_read_timeout(Some(wait)).unwrap();
    match socket.recv_from(buf) {
        Ok((n, source)) => Some(Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents: (&buf[..n]).try_into().ok()?,
            },
        )),
        Err(_) => Some(Input::Timeout(Instant::now())),
    }
}

/// POSTs the client's offer to /whep and applies the answer. Returns the
/// session resource path.
pub async fn whep_connect(server: &Server, client: &mut Client) -> String {
    let r = server
        .https(
            "POST",
            "/whep",
            Some("application/sdp"),
            client.offer.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "WHEP POST: {r:?}");
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let location = r.header("location").expect("Location").to_string();
    client.accept_answer(&r.body);
    location
}

/// PATCHes the client's host candidate to a WHEP session (trickle ICE).
pub async fn whep_trickle(server: &Server, location: &str, client: &Client) -> HttpResponse {
    let frag = format!(
        "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na={}\r\n",
        client.candidate_line()
    );
    server
        .https(
            "PATCH",
            location,
            Some("application/trickle-ice-sdpfrag"),
            frag.as_bytes(),
        )
        .await
}
