//! Wires the planes together: the capture and encode threads, the rtc
//! task, the HTTPS server, and an orderly shutdown.
//!
//! Capture and the encoders are plain threads (blocking V4L2 reads,
//! CPU-bound encoding); between them sits a one-frame mailbox per encoder
//! that drops rather than delays, so a slow encoder costs its own viewers
//! frame rate, never latency (`encode::pool`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

mod capture;
mod encoders;
pub mod record;
mod serial;

use capture::{open_source, start_capture};
use serial::start_serial;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::PasswordFile;
use crate::capture::controls::Saved;
use crate::capture::run::{Capture, ControlRefused, ControlRoad, SetControl};
use crate::capture::{Source, SourceInfo, Want};
use crate::config::Config;
use crate::encode::SdpParams;
use crate::encode::pool::{EncoderControl, Factory, FrameTap, Pool, StatusBoard};
use crate::frame::{EncodedFrame, VideoCodec};
use crate::http::guard::AuthState;
use crate::http::{self, AppState, tls};
use crate::log_limit::Throttle;
use crate::net::{Announce, Lan, PeersBoard};
use crate::notify::Notifier;
use crate::rtc::udp::{AddressMap, MediaSocket, RtcTask, SerialRoad};
use crate::rtc::whip::client::Endpoint;
use crate::rtc::whip::http::HttpClient;
use crate::rtc::whip::{WhipBoard, WhipTask};
use crate::rtc::{PublishSpec, RtcHandle, SessionConfig, Sessions};
use crate::serial::outbox::Outbox;
use crate::serial::port::SerialBridge;
use crate::serial::{SerialView, queue};

/// Encoder control messages in flight at most.
const CONTROL_QUEUE: usize = 64;
/// Camera settings waiting for the capture thread.
const SETTINGS_QUEUE: usize = 16;

/// Runs the appliance until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    first_start_password(&config.state_dir)?;
    log_board(&config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The HTTPS plane's sign of life, for the watchdog beside the media's.
    let http_alive = Arc::new(AtomicU64::new(0));
    let mut media = Media::start(&config, shutdown_rx.clone(), http_alive.clone()).await?;
    let whip = WhipBoard::default();
    // The WHIP targets stop first: each DELETE reaches its receiver while
    // the publish is still up (else the receiver may see the DTLS close
    // first and answer the DELETE 404).
    let (whip_stop, whip_stop_rx) = watch::channel(false);
    let publishing = start_whip(&config, &media, &whip, &whip_stop_rx);
    let peers = PeersBoard::default();
    let (mut server, http_addr) = start_http(
        &config,
        &media,
        whip,
        peers.clone(),
        shutdown_rx,
        http_alive,
    )
    .await?;
    let lan = start_lan(&config, &media, http_addr.port(), peers);
    tracing::info!(
        "listening on https://{http_addr}/ (media on udp {})",
        media.addr
    );
    let notifier = Notifier::from_env();
    notifier.ready(&format!("serving https://{http_addr}/"));

    let outcome = tokio::select! {
        _ = wait_for_signal() => Ok(()),
        dead = media.failure() => Err(dead),
        ended = &mut server => Err(match ended {
            Err(e) if e.is_panic() => {
                anyhow::anyhow!("the HTTPS server panicked: {}", panic_text(e.into_panic()))
            }
            _ => anyhow::anyhow!("the HTTPS server ended"),
        }),
    };
    match &outcome {
        Ok(()) => tracing::info!("shutting down"),
        // A camera server without its media plane is no camera: exit
        // non-zero, and systemd starts a fresh one.
        Err(e) => tracing::error!("{e}: stopping, to be started again"),
    }
    notifier.stopping();
    // Each target's DELETE (a receiver keeps an endpoint busy for minutes
    // without it), bounded; then everything else stops.
    let _ = whip_stop.send(true);
    let deleted =
        tokio::time::timeout(WHIP_DELETE_TIME, futures_util::future::join_all(publishing));
    let _ = deleted.await;
    let _ = shutdown_tx.send(true);
    // The LAN hears our goodbye, so the other rtcams drop us at once.
    let goodbye = tokio::task::spawn_blocking(move || lan.map(Lan::stop));
    let ((), _) = tokio::join!(media.stop(server), goodbye);
    outcome
}

/// Announces this rtcam on the LAN and browses for the others (`--mdns`).
/// Discovery failing is logged, never fatal: the camera works without it.
fn start_lan(config: &Config, media: &Media, port: u16, peers: PeersBoard) -> Option<Lan> {
    if !config.mdns {
        return None;
    }
    let source = media.source.borrow().clone();
    let announce = Announce {
        hostname: crate::net::host::hostname().unwrap_or_else(|| "rtcam".into()),
        id: crate::net::mdns::machine_tag(),
        port,
        board: config.board.name.clone(),
        camera: source.card.unwrap_or_else(|| source.kind.to_string()),
        codecs: media.codecs.iter().map(|c| c.to_string()).collect(),
    };
    match Lan::start(&announce, peers) {
        Ok(lan) => {
            tracing::info!(
                "announced on the LAN as {}.local ({}, _rtcam._tcp)",
                announce.hostname,
                announce.instance()
            );
            Some(lan)
        }
        Err(e) => {
            tracing::warn!("LAN discovery (mDNS) is off: {e}");
            None
        }
    }
}

/// How long shutdown waits for the WHIP targets' DELETEs.
const WHIP_DELETE_TIME: Duration = Duration::from_secs(2);

/// One task per `--whip` target.
fn start_whip(
    config: &Config,
    media: &Media,
    board: &WhipBoard,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    if config.whip.is_empty() {
        return Vec::new();
    }
    let http = Arc::new(HttpClient::new(Duration::from_secs(10)));
    let audio = media.audio.microphone.borrow().device.is_some();
    config
        .whip
        .iter()
        .map(|t| {
            tokio::spawn(
                WhipTask {
                    endpoint: Endpoint {
                        url: t.url.clone(),
                        token: t.token.as_ref().map(|s| s.0.clone()),
                        trickle: t.trickle,
                    },
                    spec: PublishSpec {
                        codec: t.codec,
                        audio,
                        keyframe_every: t.keyframe_every,
                    },
                    rtc: media.rtc.clone(),
                    http: http.clone(),
                    board: board.clone(),
                    shutdown: shutdown.clone(),
                }
                .run(),
            )
        })
        .collect()
}

/// The data plane: the capture thread, the encoder pool and the rtc task,
/// and what the HTTP plane needs of them.
struct Media {
    rtc: RtcHandle,
    source: watch::Receiver<SourceInfo>,
    encoders: StatusBoard,
    /// Frames the capture delivered (the watchdog's and `/metrics`').
    captured: Arc<AtomicU64>,
    snapshots: Arc<crate::encode::jpeg::Snapshots>,
    addr: std::net::SocketAddr,
    /// Taken once it has ended.
    rtc_task: Option<tokio::task::JoinHandle<()>>,
    capture: std::thread::JoinHandle<()>,
    pool: std::thread::JoinHandle<()>,
    serial: Option<std::thread::JoinHandle<()>>,
    /// The microphone's and the speaker's threads, and motion's and
    /// recording's.
    audio_threads: Vec<std::thread::JoinHandle<()>>,
    audio: crate::audio::plane::AudioStatus,
    record: crate::record::RecordView,
    /// Tells the capture thread to end.
    stop: Arc<AtomicBool>,
    /// What the encoders send (H.264, then VP8 when libvpx started).
    codecs: Vec<VideoCodec>,
}

impl Media {
    async fn start(
        config: &Config,
        shutdown: watch::Receiver<bool>,
        http_alive: Arc<AtomicU64>,
    ) -> anyhow::Result<Media> {
        let want = Want {
            width: config.size.width,
            height: config.size.height,
            fps: config.fps,
            format: config.capture_format,
        };
        let source = open_source(config, want).await;
        let size = source
            .as_ref()
            .map_or((want.width as usize, want.height as usize), |s| s.size());
        let passthrough = source.as_ref().and_then(|s| s.info().passthrough);
        let encoders =
            encoders::encoders(config, size.0 as u32, size.1 as u32, passthrough.as_deref())?;
        // The probe encoders are gone: give their memory back.
        crate::mem::give_back();

        let stop = Arc::new(AtomicBool::new(false));
        let board = StatusBoard::default();
        // Bounded: the rtc task never waits on it, and a flood of keyframe
        // asks cannot grow it (the throttle would drop them anyway).
        let (control_tx, control_rx) = std_mpsc::sync_channel::<EncoderControl>(CONTROL_QUEUE);
        let record = record::start(config, control_tx.clone(), &stop)?;
        let tap = Arc::new(FrameTap::new(board.clone(), record.pictures.clone()));
        let snapshots = tap.snapshots();
        let captured = Arc::new(AtomicU64::new(0));
        let camera = start_capture(config, want, size, source, &tap, &captured, &stop)?;
        let (frames_tx, frames_rx) = mpsc::channel::<EncodedFrame>(8);
        let codecs = encoders.sdp.iter().map(|p| p.codec()).collect();
        let (socket, map, sessions) = media_socket(config, &encoders.factory, encoders.sdp)?;
        let pool = Pool {
            factory: Arc::new(encoders.factory),
            tap,
            board: board.clone(),
            control: control_rx,
            frames: frames_tx,
            record: record.encoded.clone(),
        }
        .spawn()
        .context("starting the encoder pool")?;
        let serial = start_serial(config, stop.clone())?;
        let audio = crate::audio::plane::start(&config.audio, stop.clone(), record.audio.clone())?;
        let audio_status = audio.road.status.clone();
        let addr = socket.local_addr();
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let rtc_task = tokio::spawn(
            RtcTask {
                socket,
                map,
                sessions,
                commands: cmd_rx,
                frames: frames_rx,
                encoders: control_tx,
                captured: captured.clone(),
                shutdown,
                reply_from: Default::default(),
                heartbeat: watchdog_heartbeat(http_alive),
                camera: camera.status.clone(),
                set_control: camera.set_control,
                refusals: camera.refusals,
                serial: serial.road,
                audio: audio.road,
                motion: record.notices,
            }
            .run(),
        );
        Ok(Media {
            rtc: RtcHandle::new(cmd_tx),
            source: camera.status,
            encoders: board,
            captured,
            snapshots,
            addr,
            rtc_task: Some(rtc_task),
            capture: camera.thread,
            pool,
            serial: serial.thread,
            audio_threads: audio.threads.into_iter().chain(record.threads).collect(),
            audio: audio_status,
            record: record.view,
            stop,
            codecs,
        })
    }

    /// Resolves when a part of the data plane has died: the rtc task (a
    /// panic, which tokio would otherwise swallow), the capture thread or
    /// the encoder pool. Until the shutdown signal none of them ends.
    async fn failure(&mut self) -> anyhow::Error {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let Some(task) = self.rtc_task.as_mut() else {
                return anyhow::anyhow!("the media task is gone");
            };
            tokio::select! {
                ended = &mut *task => {
                    self.rtc_task = None;
                    return match ended {
                        Err(e) if e.is_panic() => {
                            anyhow::anyhow!("the media task panicked: {}", panic_text(e.into_panic()))
                        }
                        _ => anyhow::anyhow!("the media task ended"),
                    };
                }
                _ = tick.tick() => {
                    // A dead media task takes the pool with it: name the
                    // cause, which the other branch reports next turn.
                    if task.is_finished() {
                        continue;
                    }
                    if self.capture.is_finished() {
                        return anyhow::anyhow!("the capture thread ended");
                    }
                    if self.pool.is_finished() {
                        return anyhow::anyhow!("the encoder pool ended");
                    }
                }
            }
        }
    }

    /// After the shutdown signal: the rtc task ends (closing the encoders'
    /// control road, so the pool ends), the capture thread notices `stop`
    /// within one frame or read timeout; each is given a bounded time.
    async fn stop(self, server: tokio::task::JoinHandle<()>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.rtc_task {
            let _ = tokio::time::timeout(Duration::from_millis(800), task).await;
        }
        server.abort();
        let (pool, capture, serial) = (self.pool, self.capture, self.serial);
        let audio = self.audio_threads;
        let joined = tokio::task::spawn_blocking(move || {
            let _ = pool.join();
            let _ = capture.join();
            for thread in serial.into_iter().chain(audio) {
                let _ = thread.join();
            }
        });
        let _ = tokio::time::timeout(Duration::from_millis(500), joined).await;
    }
}

/// A panic's message, as `panic!` was given it.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map_or_else(|_| "(no message)".to_string(), |s| (*s).to_string()),
    }
}

/// The systemd watchdog, fed from the media loop while video flows and
/// the HTTPS plane's accept loop still turns (it ticks `http_alive`): a
/// camera whose page is dead is restarted as surely as one whose video is.
fn watchdog_heartbeat(http_alive: Arc<AtomicU64>) -> Box<dyn FnMut(bool) + Send> {
    let mut watchdog = Notifier::from_env();
    let mut http_seen = (0u64, Instant::now());
    Box::new(move |flowing| {
        let now = Instant::now();
        let ticks = http_alive.load(Ordering::Relaxed);
        if ticks != http_seen.0 {
            http_seen = (ticks, now);
        }
        if flowing && now.duration_since(http_seen.1) < HTTP_STALL_AFTER {
            watchdog.watchdog(now);
        }
    })
}

/// How long the HTTPS plane may go without a tick before the watchdog
/// starves (it ticks every `http::ALIVE_EVERY`).
const HTTP_STALL_AFTER: Duration = Duration::from_secs(10);

/// The control plane: TLS, the listener and the router, served until the
/// shutdown signal.
async fn start_http(
    config: &Config,
    media: &Media,
    whip: WhipBoard,
    peers: PeersBoard,
    shutdown: watch::Receiver<bool>,
    alive: Arc<AtomicU64>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, std::net::SocketAddr)> {
    let tls_config = tls::server_config(
        config.tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        &config.state_dir,
    )
    .context("setting up TLS")?;
    let listener = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTPS on {}", config.http))?;
    let http_addr = listener.local_addr()?;
    if config.trust_loopback {
        tracing::warn!("--trust-loopback: clients on loopback need no password");
    }
    let auth = AuthState::new(&config.state_dir, config.trust_loopback);
    let limits = Arc::new(http::metrics::LimitHits::default());
    tokio::spawn(auth.clone().end_logins_when_the_password_changes());
    let app = http::router(AppState {
        rtc: media.rtc.clone(),
        auth,
        source: media.source.clone(),
        encoders: media.encoders.clone(),
        whep: Default::default(),
        captured: media.captured.clone(),
        limits: limits.clone(),
        snapshots: media.snapshots.clone(),
        audio: media.audio.clone(),
        whip,
        peers,
        record: media.record.clone(),
    });
    let server = tokio::spawn(http::serve(
        listener, tls_config, app, shutdown, alive, limits,
    ));
    Ok((server, http_addr))
}

fn log_board(config: &Config) {
    tracing::info!(
        "board: {} ({}; {}); encoder threads {}, H.264 encoder {}, VP8 up to {}x{}, serial port {}, memory ceiling {}",
        config.board.name,
        config.board.description,
        config.board_note,
        config.board.encoder_threads,
        config.encoder,
        config.vp8_size.width,
        config.vp8_size.height,
        config.board.serial_port.as_deref().unwrap_or("none"),
        config.board.memory_max.as_deref().unwrap_or("none"),
    );
}

/// The candidates viewers are told about.
fn address_map(config: &Config, socket: &MediaSocket) -> anyhow::Result<AddressMap> {
    let map = AddressMap::new(
        socket.local_addr(),
        &config.advertise,
        &crate::net::host::local_ips(),
    );
    if map.candidates().is_empty() {
        anyhow::bail!("no address to offer viewers: give --advertise or bind --rtc to an address");
    }
    let list: Vec<String> = map.candidates().iter().map(|a| a.to_string()).collect();
    tracing::info!("ICE-lite candidates: {}", list.join(", "));
    Ok(map)
}

/// The one UDP socket, the addresses viewers are told, and the session
/// table with the codecs and their bitrate ranges.
fn media_socket(
    config: &Config,
    factory: &Factory,
    codecs: Vec<SdpParams>,
) -> anyhow::Result<(MediaSocket, AddressMap, Sessions)> {
    let socket = MediaSocket::bind(config.rtc)
        .with_context(|| format!("binding the media socket udp {}", config.rtc))?;
    let map = address_map(config, &socket)?;
    let rates = encoders::rate_ranges(factory, &codecs);
    let mut session_config =
        SessionConfig::new(map.candidates().to_vec(), config.max_viewers, codecs);
    session_config.max_per_address = config.max_viewers_per_address;
    session_config.rates = rates;
    session_config.mtu = config.mtu as usize;
    let sessions = Sessions::new(session_config, Instant::now());
    Ok((socket, map, sessions))
}

/// On first start there is no password yet: make one and show it once, in
/// the log and on the console, since the owner has no other way to learn it.
fn first_start_password(state_dir: &std::path::Path) -> anyhow::Result<()> {
    crate::state_dir::ensure_private_dir(state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let (_, shown) = PasswordFile::load_or_create(state_dir).context("the password store")?;
    if let Some(password) = shown {
        tracing::warn!(
            "first start: the password for the page is {password} (shown only this once; \
             change it with `rtcam passwd --state-dir {}`)",
            state_dir.display()
        );
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            println!("rtcam: first start: the password for the page is {password}");
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
