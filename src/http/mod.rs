//! The control plane's door to the outside: HTTPS (rustls through
//! tokio-rustls), routed by axum: the page, `/ws` signaling and WHEP.
//!
//! Connections are accepted here rather than by `axum::serve` so that the
//! TLS handshake runs in each connection's own task, under a timeout, and a
//! plain-HTTP request on the HTTPS port gets an answer instead of a hang.

pub mod assets;
pub mod body;
pub mod churn;
pub mod conns;
pub mod guard;
pub mod login;
pub mod metrics;
pub mod recordings;
pub mod snapshot;
pub mod tls;
pub mod whep;
pub mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use crate::log_limit::{Throttle, more};
use crate::rtc::RtcHandle;
use crate::signal::MAX_MESSAGE_BYTES;
use conns::{Admission, ConnId, Connections, LeaseRefusal, Refusal};

/// How long a client may take for its TLS handshake and request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections served at once; more get 503.
const MAX_CONNECTIONS: usize = 128;
/// Connections one address may hold at once (a page uses a few, plus one
/// WebSocket); beyond it, its own idlest connection makes room.
const MAX_PER_ADDRESS: usize = 32;
/// WebSockets (one per open page) may hold three quarters of the table,
/// and one address (a household behind one NAT) 16 of them: the rest is
/// always there for the login page.
const MAX_SOCKETS: usize = 96;
const MAX_SOCKETS_PER_ADDRESS: usize = 16;
/// How often the accept loop says it is alive (the watchdog listens).
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);
/// The least time between two log lines of one kind a client can cause.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a request (headers, body, handler) may take: slow clients get 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub rtc: RtcHandle,
    pub auth: Arc<guard::AuthState>,
    /// What the camera delivers now (it changes when a camera comes back).
    pub source: tokio::sync::watch::Receiver<crate::capture::SourceInfo>,
    /// The encoders running now.
    pub encoders: crate::encode::pool::StatusBoard,
    /// Which token made each WHEP session.
    pub whep: Arc<whep::Owners>,
    /// Frames the capture delivered (for `/metrics`).
    pub captured: Arc<std::sync::atomic::AtomicU64>,
    /// Limits hit, by kind (for `/metrics`).
    pub limits: Arc<metrics::LimitHits>,
    /// The next picture, for `/api/snapshot.jpg`.
    pub snapshots: Arc<crate::encode::jpeg::Snapshots>,
    /// The microphone, the speaker and their counters.
    pub audio: crate::audio::plane::AudioStatus,
    /// Where the camera is published by WHIP.
    pub whip: crate::rtc::whip::WhipBoard,
    /// The other rtcams on the LAN.
    pub peers: crate::net::PeersBoard,
    /// Motion events, zones and recordings.
    pub record: crate::record::RecordView,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/whep", post(whep::create))
        .route(
            "/whep/{id}",
            axum::routing::patch(whep::patch).delete(whep::delete),
        )
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/snapshot.jpg", get(snapshot::snapshot))
        .route("/api/chat/images/{n}", get(snapshot::chat_image))
        .route("/api/recordings", get(recordings::list))
        .route(
            "/api/recordings/{file}",
            get(recordings::file).delete(recordings::delete),
        )
        .route("/api/events", get(recordings::events))
        .route("/api/events/{file}", get(recordings::event_snapshot))
        .route(
            "/api/motion/zones",
            get(recordings::zones).put(recordings::set_zones),
        )
        .route("/metrics", get(metrics::metrics))
        .route(
            "/login",
            get(|| async { assets::serve("/login") })
                .post(login::login)
                .layer(DefaultBodyLimit::max(login::MAX_BODY)),
        )
        .route("/logout", post(login::logout))
        .fallback(get(|req: Request| async move {
            assets::serve(req.uri().path())
        }))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_auth,
        ))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .with_state(state)
}

async fn status(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    #[derive(serde::Serialize)]
    struct Status {
        #[serde(flatten)]
        rtc: crate::rtc::RtcStats,
        source: crate::capture::SourceInfo,
        encoders: Vec<crate::encode::pool::EncoderStatus>,
        audio: crate::audio::plane::AudioReport,
        whip: Vec<WhipStatus>,
        record: crate::record::status::StatusView,
    }
    match state.rtc.stats().await {
        Ok(rtc) => {
            let source = state.source.borrow().clone();
            let encoders = state.encoders.snapshot();
            let whip = whip_status(&state.whip, &rtc, &encoders);
            let audio = state.audio.report_listed().await;
            axum::Json(Status {
                rtc,
                source,
                encoders,
                audio,
                whip,
                record: state.record.status.view(),
            })
            .into_response()
        }
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The other rtcams mDNS found on the LAN (`--mdns`).
async fn peers(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<Vec<crate::net::peers::PeerView>> {
    axum::Json(state.peers.snapshot())
}

/// A WHIP target in `/api/status`: where it is, and its link.
#[derive(serde::Serialize)]
struct WhipStatus {
    #[serde(flatten)]
    view: crate::rtc::whip::TargetView,
    /// The shared encoder's rate for its codec (kbit/s).
    bitrate_kbps: Option<u32>,
    /// The bandwidth estimate towards it, and the bytes sent this session.
    bwe_kbps: Option<u64>,
    bytes_sent: Option<u64>,
    rtt_ms: Option<f64>,
}

fn whip_status(
    board: &crate::rtc::whip::WhipBoard,
    rtc: &crate::rtc::RtcStats,
    encoders: &[crate::encode::pool::EncoderStatus],
) -> Vec<WhipStatus> {
    board
        .snapshot()
        .into_iter()
        .map(|view| {
            let link = rtc.publish(view.peer);
            let bitrate_kbps = encoders
                .iter()
                .find(|e| e.codec.to_string() == view.codec)
                .map(|e| e.bitrate_kbps);
            WhipStatus {
                bitrate_kbps,
                bwe_kbps: link.and_then(|s| s.bwe_kbps),
                bytes_sent: link.map(|s| s.bytes_sent),
                rtt_ms: link.and_then(|s| s.rtt_ms),
                view,
            }
        })
        .collect()
}

/// Accepts connections until `shutdown` turns true. Who gets a slot is
/// [`Connections`]'s call; a displaced connection is told through its
/// oneshot and closes at once.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    alive: Arc<std::sync::atomic::AtomicU64>,
    limits: Arc<metrics::LimitHits>,
) {
    let mut tick = tokio::time::interval(ALIVE_EVERY);
    let acceptor = TlsAcceptor::from(tls);
    let table: Table = Arc::new(Mutex::new(Connections::new(conns::Limits {
        total: MAX_CONNECTIONS,
        per_address: MAX_PER_ADDRESS,
        leases: MAX_SOCKETS,
        leases_per_address: MAX_SOCKETS_PER_ADDRESS,
    })));
    // Refused connections still get a 503, from a few refusers.
    let refusers = Arc::new(tokio::sync::Semaphore::new(16));
    let mut refused_log = Throttle::new(LOG_EVERY);
    let mut accept_log = Throttle::new(LOG_EVERY);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                alive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(held) = accept_log.allow(Instant::now()) {
                        tracing::warn!("accept failed: {e}; backing off{}", more(held));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (go, gone) = oneshot::channel();
        let admission = guard::lock(&table).admit(peer.ip(), Instant::now(), go);
        let id = match admission {
            Admission::In { id, evicted } => {
                for conn in evicted {
                    metrics::LimitHits::hit(&limits.connections_displaced);
                    let _ = conn.send(());
                }
                id
            }
            Admission::Refused(why) => {
                metrics::LimitHits::hit(&limits.connections_refused);
                if let Some(held) = refused_log.allow(Instant::now()) {
                    let why = match why {
                        Refusal::Full => format!("all {MAX_CONNECTIONS} connections are busy"),
                        Refusal::AddressFull => {
                            format!("its address holds {MAX_PER_ADDRESS} busy connections")
                        }
                    };
                    tracing::warn!(%peer, "connection refused with 503: {why}{}", more(held));
                }
                if let Ok(r) = refusers.clone().try_acquire_owned() {
                    tokio::spawn(refuse_busy(acceptor.clone(), tcp, r));
                }
                continue;
            }
        };
        let conn = Arc::new(Conn {
            id,
            peer,
            table: table.clone(),
            slow_body: AtomicBool::new(false),
            fd: std::os::fd::AsRawFd::as_raw_fd(&tcp),
        });
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = gone => tracing::debug!(%peer, "connection displaced by a newcomer"),
                _ = conn.serve(tcp, acceptor, app) => {}
            }
        });
    }
}

/// The connection table, shared by the accept loop and the connections.
type Table = Arc<Mutex<Connections<oneshot::Sender<()>>>>;

/// One admitted connection; leaves the table when the last holder drops
/// it: the connection's task, or the WebSocket it was upgraded to.
pub struct Conn {
    id: ConnId,
    peer: std::net::SocketAddr,
    table: Table,
    /// The request now in flight lost its body for being too slow (HTTP/1
    /// has one at a time): it is answered 408 whatever its handler said.
    slow_body: AtomicBool,
    /// The TCP socket, for its options: valid while a request or the
    /// WebSocket made from it lives (they own the stream).
    fd: std::os::fd::RawFd,
}

/// A WebSocket's hold on the connection it came from: counted in the
/// table (its address's share included) and never displaced, for as long
/// as the socket lives.
pub struct Lease(Arc<Conn>);

impl Lease {
    /// Takes the connection a request came on, if WebSockets have room.
    pub fn take(conn: &Arc<Conn>) -> Result<Lease, LeaseRefusal> {
        guard::lock(&conn.table).lease(conn.id)?;
        Ok(Lease(conn.clone()))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        guard::lock(&self.0.table).unlease(self.0.id, Instant::now());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        guard::lock(&self.table).closed(self.id);
    }
}

impl Conn {
    fn request_started(&self, has_body: bool) {
        self.slow_body.store(false, Ordering::Relaxed);
        guard::lock(&self.table).request_started(self.id, has_body, Instant::now());
    }

    fn body_done(&self) {
        guard::lock(&self.table).body_done(self.id);
    }

    fn body_too_slow(&self) {
        self.slow_body.store(true, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        guard::lock(&self.table).request_ended(self.id, Instant::now());
    }

    /// Whether the request in flight lost its body for being too slow.
    pub fn body_was_too_slow(&self) -> bool {
        self.slow_body.load(Ordering::Relaxed)
    }

    async fn serve(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        acceptor: TlsAcceptor,
        app: Router,
    ) {
        let peer = self.peer;
        // One deadline for the first byte and the whole handshake.
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        if !looks_like_tls(&tcp, deadline).await {
            refuse_plain_http(tcp).await;
            return;
        }
        let stream = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        guard::lock(&self.table).secured(self.id, Instant::now());
        let (started, ended) = (self.clone(), self.clone());
        let app = tower::ServiceExt::map_request(
            app,
            move |req: hyper::Request<hyper::body::Incoming>| {
                use http_body::Body as _;
                started.request_started(!req.body().is_end_stream());
                let conn = started.clone();
                let mut req = req.map(|b| body::Metered::new(b, conn, Instant::now()));
                req.extensions_mut().insert(guard::Peer(peer));
                req.extensions_mut().insert(started.clone());
                req
            },
        );
        let app = tower::ServiceExt::map_response(app, move |resp| {
            ended.request_ended();
            resp
        });
        let service = TowerToHyperService::new(app);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            tracing::debug!(%peer, "connection ended: {e}");
        }
    }
}

/// Over the connection limit: a 503 over TLS, then close.
async fn refuse_busy(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    const BODY: &str = "too many connections: try again shortly\n";
    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await
    else {
        return;
    };
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.write_all(response.as_bytes())).await;
    let _ = tls.shutdown().await;
}

/// A TLS connection starts with a handshake record (0x16). Waits briefly
/// for the first byte; a silent client is treated as TLS and left to the
/// handshake timeout.
async fn looks_like_tls(tcp: &tokio::net::TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => true,
    }
}

async fn refuse_plain_http(mut tcp: tokio::net::TcpStream) {
    const BODY: &str = "This is an HTTPS port: use https:// in the address.\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(response.as_bytes())).await;
    let _ = tcp.shutdown().await;
}
