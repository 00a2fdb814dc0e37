//! The IO shell around [`Sessions`]: the one UDP socket, the command and
//! frame channels, and the timer, in one tokio task.
//!
//! The socket is bound once (usually to the wildcard address) and shared by
//! every viewer. str0m drops STUN whose destination is not one of its host
//! candidates, so each datagram's real destination is read with IP_PKTINFO
//! (quinn-udp does the cmsg work) and mapped to the candidate it stands for.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot, watch};

pub use super::socket::{AddressMap, MediaSocket, ReplyFrom};
use super::{Command, EndReason, PeerEvent, RtcStats, SessionEvent, Sessions, ViewerId};
use crate::audio::fec::LossPlan;
use crate::audio::plane::AudioRoad;
use crate::audio::{AudioStats, EncodedAudio};
use crate::capture::SourceInfo;
use crate::capture::controls::ControlError;
use crate::capture::run::{ControlRefused, SetControl};
use crate::control::{AudioTelemetry, CameraView};
use crate::encode::pool::EncoderControl;
use crate::frame::{EncodedFrame, VideoCodec};
use crate::log_limit::{Throttle, more};
use crate::serial::SerialView;
use crate::serial::outbox::Outbox;

/// The longest we sleep without looking at the session table.
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// No frame for this long means the pipeline is stalled.
const STALL_AFTER: Duration = Duration::from_secs(5);

/// What the watchdog check remembers between turns of the loop.
struct Liveness {
    captured: u64,
    camera_at: Instant,
    /// The capture count and time the frame rate was last taken at.
    rate_from: (u64, Instant),
    /// Since when someone has been watching (encoded frames are due).
    watched_since: Option<Instant>,
}

/// What the encoders were last told, per codec (`VideoCodec::ALL` order).
#[derive(Default)]
struct Demand {
    viewers: [usize; VideoCodec::ALL.len()],
    bitrate: [Option<u32>; VideoCodec::ALL.len()],
    /// The loss the microphone's encoder plans for, from the listeners'.
    loss: LossPlan,
}

/// Everything the rtc task owns.
pub struct RtcTask {
    pub socket: MediaSocket,
    pub map: AddressMap,
    pub sessions: Sessions,
    pub commands: mpsc::Receiver<Command>,
    pub frames: mpsc::Receiver<EncodedFrame>,
    /// Tells the encoders how many viewers each codec has and who needs a
    /// keyframe (they throttle).
    pub encoders: std::sync::mpsc::SyncSender<EncoderControl>,
    /// Frames the camera has delivered so far (the capture thread counts):
    /// with no viewer no encoder runs, yet the camera must be alive.
    pub captured: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
    pub reply_from: ReplyFrom,
    /// Called on every turn of the loop with whether video is flowing (a
    /// frame within the last few seconds): the systemd watchdog hangs here,
    /// so a stalled pipeline, not just a dead process, gets restarted.
    pub heartbeat: Box<dyn FnMut(bool) + Send>,
    /// The camera: its state and controls, told to viewers as they change.
    pub camera: watch::Receiver<SourceInfo>,
    /// Settings viewers ask for, to the capture thread (bounded: a full
    /// road refuses), and the camera's refusals back.
    pub set_control: std::sync::mpsc::SyncSender<SetControl>,
    pub refusals: mpsc::Receiver<ControlRefused>,
    pub serial: SerialRoad,
    pub audio: AudioRoad,
    /// Motion events, told to every viewer.
    pub motion: mpsc::Receiver<crate::record::MotionNotice>,
}

/// The serial bridge's side of the rtc task: its state, its bytes for the
/// viewers, and the holder's bytes for it (bounded in bytes: a full queue
/// refuses at once). With no bridge the senders are gone and these branches
/// go quiet.
pub struct SerialRoad {
    pub status: watch::Receiver<SerialView>,
    pub received: mpsc::Receiver<Vec<u8>>,
    pub writes: Outbox,
    /// The log line a viewer's dropped writes cause (a client can).
    pub drops_log: Throttle,
}

/// When an injected media-task panic fires (tests: the process must exit).
const FAULT_AFTER: Duration = Duration::from_secs(1);

/// What woke the media task.
enum Wake {
    Shutdown,
    /// The camera's state or controls changed (false: its sender is gone).
    Camera(bool),
    Serial(bool),
    SerialBytes(Option<Vec<u8>>),
    Refused(Option<ControlRefused>),
    Readable,
    Frame(Option<EncodedFrame>),
    Audio(Option<EncodedAudio>),
    Motion(Option<crate::record::MotionNotice>),
    /// The microphone's or the speaker's state changed (false: that
    /// thread is gone, or was never started).
    Mic(bool),
    Speaker(bool),
    Command(Option<Command>),
    Timeout,
}

/// Which of the task's roads still have a sender: a closed one is not
/// polled again (it would be ready at once, forever).
struct Open {
    frames: bool,
    camera: bool,
    refusals: bool,
    serial: bool,
    serial_bytes: bool,
    audio: bool,
    mic: bool,
    speaker: bool,
    motion: bool,
}

/// Who is told about a session: a viewer's signaling (its end), or a
/// publish's WHIP task (its connection and its end).
enum Watcher {
    Viewer(oneshot::Sender<EndReason>),
    Publisher(mpsc::Sender<PeerEvent>),
}

/// The media loop's own state.
struct Turns {
    watchers: HashMap<ViewerId, Watcher>,
    buf: Vec<u8>,
    frames_in: u64,
    last_frame: Instant,
    live: Liveness,
    demand: Demand,
    open: Open,
}

impl RtcTask {
    pub async fn run(mut self) {
        let now = Instant::now();
        let mut t = Turns {
            watchers: HashMap::new(),
            buf: vec![0u8; 65_536],
            frames_in: 0,
            last_frame: now,
            live: Liveness {
                captured: 0,
                camera_at: now,
                rate_from: (0, now),
                watched_since: None,
            },
            demand: Demand::default(),
            open: Open {
                frames: true,
                camera: true,
                refusals: true,
                serial: true,
                serial_bytes: true,
                audio: true,
                mic: true,
                speaker: true,
                motion: true,
            },
        };
        self.camera_changed();
        self.serial_changed();
        self.audio_changed();
        let fault_at =
            crate::fault::armed("media-task-panic").then(|| Instant::now() + FAULT_AFTER);
        loop {
            let now = Instant::now();
            if fault_at.is_some_and(|at| now >= at) {
                panic!("injected fault: media-task-panic");
            }
            let flowing = self.flowing(now, &mut t.live, t.last_frame);
            self.measure_capture(now, &mut t.live);
            (self.heartbeat)(flowing);
            let deadline = self
                .sessions
                .poll_timeout()
                .unwrap_or(now + MAX_SLEEP)
                .min(now + MAX_SLEEP)
                .max(now);
            let wake = self.next_wake(&t.open, deadline).await;
            if !self.on_wake(wake, &mut t) {
                self.sessions.end_all(EndReason::Shutdown);
                self.flush(&mut t.watchers).await;
                break;
            }
            // Datagrams that queued up while we were busy (or stopped) count
            // as signs of life before any idle timeout is judged.
            self.receive(&mut t.buf);
            let now = Instant::now();
            self.sessions.handle_timeout(now);
            // Targets before the keyframe asks `flush` passes on: a joiner's
            // first keyframe is made at the rate its measurement set.
            self.report_demand(&mut t.demand, now);
            self.flush(&mut t.watchers).await;
        }
    }

    async fn next_wake(&mut self, open: &Open, deadline: Instant) -> Wake {
        tokio::select! {
            _ = self.shutdown.changed() => Wake::Shutdown,
            c = self.camera.changed(), if open.camera => Wake::Camera(c.is_ok()),
            c = self.serial.status.changed(), if open.serial => Wake::Serial(c.is_ok()),
            b = self.serial.received.recv(), if open.serial_bytes => Wake::SerialBytes(b),
            r = self.refusals.recv(), if open.refusals => Wake::Refused(r),
            r = self.socket.socket.readable() => match r {
                Ok(()) => Wake::Readable,
                Err(_) => Wake::Timeout,
            },
            f = self.frames.recv(), if open.frames => Wake::Frame(f),
            a = self.audio.packets.recv(), if open.audio => Wake::Audio(a),
            m = self.motion.recv(), if open.motion => Wake::Motion(m),
            c = self.audio.status.microphone.changed(), if open.mic => Wake::Mic(c.is_ok()),
            c = self.audio.status.speaker.changed(), if open.speaker => Wake::Speaker(c.is_ok()),
            c = self.commands.recv() => Wake::Command(c),
            _ = tokio::time::sleep_until(deadline.into()) => Wake::Timeout,
        }
    }

    /// Handles what woke the task; false when it is to stop.
    fn on_wake(&mut self, wake: Wake, t: &mut Turns) -> bool {
        match wake {
            Wake::Shutdown => return false,
            Wake::Camera(open) => {
                t.open.camera = open;
                self.camera_changed();
            }
            Wake::Serial(open) => {
                t.open.serial = open;
                self.serial_changed();
            }
            Wake::SerialBytes(Some(b)) => self.sessions.serial_received(&b),
            Wake::SerialBytes(None) => t.open.serial_bytes = false,
            Wake::Refused(Some(r)) => self.sessions.control_refused(ViewerId(r.from), r.error),
            Wake::Refused(None) => t.open.refusals = false,
            Wake::Readable => self.receive(&mut t.buf),
            Wake::Frame(Some(frame)) => {
                t.frames_in += 1;
                t.last_frame = Instant::now();
                self.sessions.write_frame(&frame);
            }
            Wake::Frame(None) => {
                tracing::error!("the encoder stopped: no more video");
                t.open.frames = false;
            }
            Wake::Audio(Some(packet)) => self.sessions.write_audio(&packet),
            Wake::Audio(None) => t.open.audio = false,
            Wake::Motion(Some(notice)) => self.sessions.motion(&notice),
            Wake::Motion(None) => t.open.motion = false,
            // A closed watch keeps the state it last said.
            Wake::Mic(open) => {
                t.open.mic = open;
                self.audio_changed();
            }
            Wake::Speaker(open) => {
                t.open.speaker = open;
                self.audio_changed();
            }
            Wake::Command(Some(cmd)) => self.command(cmd, &mut t.watchers, t.frames_in),
            // The HTTP server stops on the same signal and drops the
            // senders; whichever of the two this loop sees first, the
            // viewers are told before it ends.
            Wake::Command(None) => return false,
            Wake::Timeout => {}
        }
        true
    }

    fn camera_changed(&mut self) {
        let view = CameraView::from(&*self.camera.borrow_and_update());
        self.sessions.set_camera(view);
    }

    fn audio_changed(&mut self) {
        self.audio.status.microphone.borrow_and_update();
        self.audio.status.speaker.borrow_and_update();
        let view = self.audio.status.view();
        self.sessions.set_audio(view);
    }

    fn serial_changed(&mut self) {
        let view = self.serial.status.borrow_and_update().clone();
        self.sessions.set_serial(view);
    }

    /// The floor's holder's bytes into the serial port's queue, never
    /// waiting: a full queue drops them and the writer is told (once until
    /// one of its writes is queued again).
    fn serial_write(&mut self, from: ViewerId, bytes: Vec<u8>) {
        if let Err(full) = self.serial.writes.push(bytes) {
            self.sessions.serial_overflow(from, full);
            return;
        }
        let dropped = self.sessions.serial_queued(from);
        if dropped > 0
            && let Some(held) = self.serial.drops_log.allow(Instant::now())
        {
            tracing::info!(
                viewer = %from,
                "serial: {dropped} writes dropped while the port's queue was full{}",
                more(held)
            );
        }
    }

    /// Video flows when the camera delivered a frame lately and, while
    /// anyone watches, encoded frames arrive too.
    fn flowing(&self, now: Instant, live: &mut Liveness, last_frame: Instant) -> bool {
        let n = self.captured.load(Ordering::Relaxed);
        if n != live.captured {
            (live.captured, live.camera_at) = (n, now);
        }

        live.watched_since = match (self.sessions.is_empty(), live.watched_since) {
            (true, _) => None,
            (false, None) => Some(now),
            (false, since) => since,
        };
        let camera_ok = now.saturating_duration_since(live.camera_at) < STALL_AFTER;
        let encoders_ok = live
            .watched_since
            .is_none_or(|t| now.saturating_duration_since(t.max(last_frame)) < STALL_AFTER);
        camera_ok && encoders_ok
    }

    /// The camera's frame rate over the last second or so, for the
    /// viewers' telemetry.
    fn measure_capture(&mut self, now: Instant, live: &mut Liveness) {
        let (from, at) = live.rate_from;
        let span = now.saturating_duration_since(at);
        if span >= Duration::from_secs(1) {
            let n = self.captured.load(Ordering::Relaxed);
            let fps = n.saturating_sub(from) as f64 / span.as_secs_f64();
            self.sessions.set_capture_fps(fps);
            live.rate_from = (n, now);
            self.sessions.set_speaker_stats(self.speaker_stats());
        }
    }

    /// The speaker's side of the viewers' audio telemetry.
    fn speaker_stats(&self) -> AudioTelemetry {
        let s = &self.audio.status.stats;
        let speaker_on = self.audio.talk.is_some();
        AudioTelemetry {
            jitter_ms: speaker_on.then(|| AudioStats::get(&s.jitter_target_ms)),
            concealed: AudioStats::get(&s.concealed),
            underruns: AudioStats::get(&s.underruns),
            echo: self.audio.status.echo.name(),
            echo_erle_db: Some(s.echo_erle_db.get()).filter(|e| !e.is_nan()),
            ..Default::default()
        }
    }

    /// The loss the microphone's encoder plans for: the listeners' reports,
    /// smoothed over seconds (`audio::fec`). A change is logged, rate-limited
    /// (a viewer's reports move it).
    fn plan_loss(&self, plan: &mut LossPlan, now: Instant) {
        let before = plan.planned();
        let planned = plan.observe(now, self.sessions.audio_loss());
        if planned != before {
            crate::info_limited!(
                smoothed_loss_percent = format_args!("{:.1}", plan.smoothed()),
                "microphone: the encoder now plans for {planned} % loss (in-band FEC {})",
                if planned > 0 { "on" } else { "off" }
            );
        }
        let stats = &self.audio.status.stats;
        stats
            .fec_loss_percent
            .store(planned.into(), Ordering::Relaxed);
    }

    /// Tells the encoders when a codec's viewer count or bitrate target
    /// changed. What was told is remembered only once sent: a full queue is
    /// tried again on the next turn, so the pool never misses a change.
    fn report_demand(&self, told: &mut Demand, now: Instant) {
        let listeners = self.sessions.audio_listeners();
        self.audio.listeners.store(listeners, Ordering::Relaxed);
        self.plan_loss(&mut told.loss, now);
        // The target first: an encoder that starts for a first viewer starts
        // at the start rate, not at the ceiling.
        for (i, codec) in VideoCodec::ALL.into_iter().enumerate() {
            let target = self.sessions.bitrate_target(codec);
            if let Some(kbps) = target.filter(|_| target != told.bitrate[i])
                && self
                    .encoders
                    .try_send(EncoderControl::Bitrate(codec, kbps))
                    .is_ok()
            {
                told.bitrate[i] = target;
            }
            let n = self.sessions.viewers_of(codec);
            if n != told.viewers[i]
                && self
                    .encoders
                    .try_send(EncoderControl::Viewers(codec, n))
                    .is_ok()
            {
                told.viewers[i] = n;
            }
        }
    }

    /// Reads every datagram waiting on the socket.
    fn receive(&mut self, buf: &mut [u8]) {
        loop {
            let mut meta = [RecvMeta::default()];
            let r = self.socket.socket.try_io(Interest::READABLE, || {
                self.socket.state.recv(
                    (&self.socket.socket).into(),
                    &mut [IoSliceMut::new(buf)],
                    &mut meta,
                )
            });
            match r {
                Ok(n) if n > 0 => {
                    let now = Instant::now();
                    let m = &meta[0];
                    let dst = SocketAddr::new(
                        m.dst_ip.unwrap_or(self.socket.local.ip()),
                        self.socket.local.port(),
                    );
                    let dst = self.map.to_candidate(dst);
                    // With GRO one buffer may hold several datagrams.
                    let stride = m.stride.max(1);
                    for d in buf[..m.len].chunks(stride) {
                        if self.sessions.handle_receive(now, m.addr, dst, d) {
                            if let Some(ip) = m.dst_ip {
                                self.reply_from.learn(m.addr, ip);
                            }
                        } else {
                            tracing::trace!("no viewer takes {} bytes from {}", d.len(), m.addr);
                        }
                    }
                }
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here (ECONNREFUSED): not fatal.
                    tracing::debug!("UDP receive: {e}");
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command, watchers: &mut HashMap<ViewerId, Watcher>, frames_in: u64) {
        let now = Instant::now();
        match cmd {
            Command::AddViewer {
                offer,
                from,
                grant,
                ended,
                reply,
            } => {
                let result = self.sessions.add_viewer(now, &offer, from);
                match &result {
                    Ok((id, _)) => {
                        tracing::info!(viewer = %id, viewers = self.sessions.len(), "viewer joining");
                        self.sessions.grant(*id, grant);
                        watchers.insert(*id, Watcher::Viewer(ended));
                    }
                    Err(e) => crate::info_limited!("viewer refused: {e}"),
                }
                let _ = reply.send(result);
            }
            Command::Candidate {
                id,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.sessions.add_remote_candidate(id, &candidate));
            }
            Command::End { id, reason, reply } => {
                let _ = reply.send(self.sessions.end(id, reason));
            }
            Command::Stats { reply } => {
                let _ = reply.send(RtcStats {
                    viewers: self.sessions.len(),
                    frames_in,
                    largest_datagram: self.sessions.largest_datagram(),
                    uploads_cancelled: self.sessions.uploads_cancelled(),
                    links: self.sessions.viewer_stats(),
                    publishes: self.sessions.publish_stats(),
                });
            }
            Command::AddPublisher {
                spec,
                events,
                reply,
            } => {
                let result = self.sessions.add_publisher(now, spec);
                if let Ok((id, _)) = &result {
                    tracing::info!(publish = %id, codec = %spec.codec, "WHIP publish offering");
                    watchers.insert(*id, Watcher::Publisher(events));
                }
                let _ = reply.send(result);
            }
            Command::PublisherAnswer { id, answer, reply } => {
                let _ = reply.send(self.sessions.publisher_answer(now, id, &answer));
            }
            Command::ChatImage { n, reply } => {
                let _ = reply.send(self.sessions.chat_image(n));
            }
        }
    }

    async fn flush(&mut self, watchers: &mut HashMap<ViewerId, Watcher>) {
        while let Some(t) = self.sessions.poll_transmit() {
            let from = self
                .reply_from
                .get(t.destination)
                .or_else(|| self.map.source_ip(t.source));
            self.socket.send(t.destination, from, &t.contents).await;
        }
        while let Some(e) = self.sessions.poll_event() {
            match e {
                SessionEvent::Connected(id) => match watchers.get(&id) {
                    Some(Watcher::Publisher(tx)) => {
                        tracing::info!(publish = %id, "WHIP publish connected");
                        let _ = tx.try_send(PeerEvent::Connected(id));
                    }
                    _ => tracing::info!(viewer = %id, "viewer connected"),
                },
                SessionEvent::KeyframeWanted(_, codec) => {
                    // A full queue already holds asks; this one can go.
                    let _ = self.encoders.try_send(EncoderControl::Keyframe(codec));
                }
                // `report_demand` passes targets on, retrying a full queue.
                SessionEvent::Bitrate(..) => {}
                SessionEvent::SerialWrite(from, bytes) => self.serial_write(from, bytes),
                SessionEvent::SetControl {
                    from,
                    control,
                    value,
                } => {
                    let ask = SetControl {
                        control: control.clone(),
                        value,
                        from: from.0,
                    };
                    if self.set_control.try_send(ask).is_err() {
                        let why = "too many settings at once; try again".to_string();
                        let error = ControlError::Failed { id: control, why };
                        self.sessions.control_refused(from, error);
                    }
                }
                SessionEvent::Talk(packet) => {
                    let sent = self.audio.talk.as_ref().map(|t| t.try_send(packet));
                    if matches!(sent, Some(Err(_))) {
                        AudioStats::add(&self.audio.status.stats.talk_dropped, 1);
                    } else if sent.is_some() {
                        AudioStats::add(&self.audio.status.stats.talk_packets, 1);
                    }
                }
                SessionEvent::Ended(id, reason) => match watchers.remove(&id) {
                    Some(Watcher::Viewer(w)) => {
                        let _ = w.send(reason);
                    }
                    Some(Watcher::Publisher(tx)) => {
                        let _ = tx.try_send(PeerEvent::Ended(id, reason));
                    }
                    None => {}
                },
            }
        }
    }
}
