//! Wires the planes together: the capture and encode threads, the rtc
//! task, the HTTPS server, and an orderly shutdown.
//!
//! Capture and encode are plain threads (blocking V4L2 reads, CPU-bound
//! encoding); between them sits a one-frame queue that drops rather than
//! delays, so a slow encoder costs frame rate, never latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError, TrySendError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::PasswordFile;
use crate::capture::{Source, SourceInfo, SourceSpec};
use crate::config::Config;
use crate::encode::{EncoderSettings, H264Encoder, level};
use crate::frame::{EncodedFrame, RawFrame};
use crate::http::guard::AuthState;
use crate::http::{self, AppState, tls};
use crate::notify::Notifier;
use crate::rtc::udp::{AddressMap, MediaSocket, RtcTask};
use crate::rtc::{RtcHandle, SessionConfig, Sessions};

/// Runs the appliance until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    first_start_password(&config.state_dir)?;
    tracing::info!(
        "board: {} ({}; {}); encoder threads {}, serial port {}, memory ceiling {}",
        config.board.name,
        config.board.description,
        config.board_note,
        config.board.encoder_threads,
        config.board.serial_port.as_deref().unwrap_or("none"),
        config.board.memory_max.as_deref().unwrap_or("none"),
    );

    let (w, h, fps) = (config.size.width, config.size.height, config.fps);
    let spec = config.source.clone();
    let source = tokio::task::spawn_blocking(move || Source::open(&spec, w, h, fps))
        .await
        .context("opening the video source")?
        .with_context(|| format!("opening video source '{}'", config.source))?;
    tracing::info!("video source: {}", source.describe());
    let (width, height) = source.size();
    let settings = EncoderSettings {
        width: width as u32,
        height: height as u32,
        fps,
        bitrate_kbps: config.bitrate_kbps,
        threads: config.board.encoder_threads,
    };
    let level_idc = level::level_idc(settings.width, settings.height, fps)
        .with_context(|| format!("H.264 cannot carry {width}x{height} at {fps} fps"))?;
    let encoder = H264Encoder::new(settings).context("starting the H.264 encoder")?;
    tracing::info!(
        "encoding H.264 constrained baseline {width}x{height} @ {fps} fps, {} kbit/s, profile-level-id {:06x}",
        config.bitrate_kbps,
        level::profile_level_id(level_idc)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (raw_tx, raw_rx) = std_mpsc::sync_channel::<RawFrame>(1);
    // Two buffers circulate (one filling, one encoding) plus the one queued.
    let (spare_tx, spare_rx) = std_mpsc::sync_channel::<RawFrame>(2);
    let (frames_tx, frames_rx) = mpsc::channel::<EncodedFrame>(8);
    let (key_tx, key_rx) = std_mpsc::channel::<()>();
    let (source_tx, source_rx) = watch::channel(source.info());
    let capture = spawn_capture(
        source,
        config.clone(),
        raw_tx,
        spare_rx,
        source_tx,
        stop.clone(),
    )?;
    let encode = spawn_encode(encoder, raw_rx, spare_tx, frames_tx, key_rx, stop.clone())?;

    let socket = MediaSocket::bind(config.rtc)
        .with_context(|| format!("binding the media socket udp {}", config.rtc))?;
    let map = AddressMap::new(socket.local_addr(), &config.advertise, &tls::local_ips());
    if map.candidates().is_empty() {
        anyhow::bail!("no address to offer viewers: give --advertise or bind --rtc to an address");
    }
    tracing::info!(
        "ICE-lite candidates: {}",
        map.candidates()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut session_config = SessionConfig::new(
        map.candidates().to_vec(),
        config.max_viewers,
        level::profile_level_id(level_idc),
    );
    session_config.max_per_address = config.max_viewers_per_address;
    let sessions = Sessions::new(session_config, Instant::now());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let media_addr = socket.local_addr();
    let rtc_task = tokio::spawn(
        RtcTask {
            socket,
            map,
            sessions,
            commands: cmd_rx,
            frames: frames_rx,
            keyframes: key_tx,
            shutdown: shutdown_rx.clone(),
            heartbeat: {
                let mut watchdog = Notifier::from_env();
                Box::new(move |flowing| {
                    if flowing {
                        watchdog.watchdog(Instant::now());
                    }
                })
            },
        }
        .run(),
    );

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
    let app = http::router(AppState {
        rtc: RtcHandle::new(cmd_tx),
        auth: AuthState::new(&config.state_dir, config.trust_loopback),
        source: source_rx,
    });
    let server = tokio::spawn(http::serve(listener, tls_config, app, shutdown_rx));
    tracing::info!("listening on https://{http_addr}/ (media on udp {media_addr})");
    let notifier = Notifier::from_env();
    notifier.ready(&format!("serving https://{http_addr}/"));

    wait_for_signal().await;
    tracing::info!("shutting down");
    notifier.stopping();
    let _ = shutdown_tx.send(true);
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_millis(800), rtc_task).await;
    server.abort();
    // The threads notice `stop` within one frame or read timeout.
    let joined = tokio::task::spawn_blocking(move || {
        let _ = encode.join();
        let _ = capture.join();
    });
    let _ = tokio::time::timeout(Duration::from_millis(500), joined).await;
    Ok(())
}

/// On first start there is no password yet: make one and show it once, in
/// the log and on the console, since the owner has no other way to learn it.
fn first_start_password(state_dir: &std::path::Path) -> anyhow::Result<()> {
    crate::auth::ensure_private_dir(state_dir)
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

/// The capture thread: frames into the one-frame queue. A camera that fails
/// (unplugged, driver error) is reopened every two seconds; viewers see the
/// picture freeze, not the appliance die.
fn spawn_capture(
    mut source: Source,
    config: Config,
    raw_tx: std_mpsc::SyncSender<RawFrame>,
    spare_rx: std_mpsc::Receiver<RawFrame>,
    info: watch::Sender<SourceInfo>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (want_w, want_h) = source.size();
    let spec = match &source {
        Source::Pattern(_) => SourceSpec::Test,
        Source::V4l2(_) => config.source.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let mut dropped = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut frame = spare_rx
                    .try_recv()
                    .unwrap_or_else(|_| RawFrame::black(want_w, want_h));
                if let Err(e) = source.next_frame(&mut frame) {
                    tracing::error!("capture: {e}; reopening in 2 s");
                    std::thread::sleep(Duration::from_secs(2));
                    match reopen(&spec, &config, (want_w, want_h)) {
                        Some(s) => {
                            tracing::info!("video source back: {}", s.describe());
                            info.send_replace(s.info());
                            source = s;
                        }
                        None => continue,
                    }
                    continue;
                }
                match raw_tx.try_send(frame) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!("encoder is behind: {dropped} frames dropped so far");
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })
        .context("starting the capture thread")?;
    Ok(thread)
}

fn reopen(spec: &SourceSpec, config: &Config, size: (usize, usize)) -> Option<Source> {
    let source = Source::open(spec, config.size.width, config.size.height, config.fps)
        .map_err(|e| tracing::warn!("reopening the source: {e}"))
        .ok()?;
    if source.size() != size {
        tracing::warn!(
            "the source came back at {:?} instead of {size:?}; waiting for the original size",
            source.size()
        );
        return None;
    }
    Some(source)
}

/// The encode thread: one encoder for every viewer.
fn spawn_encode(
    mut encoder: H264Encoder,
    raw_rx: std_mpsc::Receiver<RawFrame>,
    spare_tx: std_mpsc::SyncSender<RawFrame>,
    frames_tx: mpsc::Sender<EncodedFrame>,
    key_rx: std_mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let thread = std::thread::Builder::new()
        .name("encode".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let frame = match raw_rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(f) => f,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                while key_rx.try_recv().is_ok() {
                    encoder.request_keyframe();
                }
                match encoder.encode(&frame) {
                    Ok(Some(encoded)) => match frames_tx.try_send(encoded) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // A lost frame breaks the picture until the next IDR.
                            tracing::warn!("media loop is behind: frame dropped");
                            encoder.request_keyframe();
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Ok(None) => {}
                    Err(e) => tracing::error!("encode: {e}"),
                }
                let _ = spare_tx.try_send(frame);
            }
        })
        .context("starting the encode thread")?;
    Ok(thread)
}
