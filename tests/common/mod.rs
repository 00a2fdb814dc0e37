//! Test harness: the real rtcam binary on loopback, an HTTPS/WSS client,
//! and a str0m viewer that receives, decodes and checks the video.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use rtcam::capture::stripe;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The largest datagram rtcam may send by default (`--mtu`): a VPN
/// (WireGuard, Tailscale) drops packets over about 1280 bytes, less its own
/// overhead. The simulated-time harnesses check every datagram against it.
pub const MTU: usize = 1150;

/// Fails the test if rtcam sent a datagram over [`MTU`].
#[track_caller]
pub fn assert_fits_mtu(datagram: &[u8]) {
    let len = datagram.len();
    assert!(
        len <= MTU,
        "rtcam sent a {len}-byte {} datagram: over the {MTU}-byte MTU",
        datagram_kind(datagram)
    );
}

/// What a datagram on a WebRTC port is (RFC 7983's demultiplexing).
pub fn datagram_kind(datagram: &[u8]) -> &'static str {
    match datagram.first() {
        Some(0..=3) => "STUN",
        Some(20..=63) => "DTLS",
        Some(128..=191) if matches!(datagram.get(1), Some(192..=223)) => "RTCP",
        Some(128..=191) => "RTP",
        _ => "unknown",
    }
}

pub struct Server {
    /// None when attached to an rtcam this harness did not start.
    child: Option<Child>,
    pub http: SocketAddr,
    pub rtc: SocketAddr,
    pub log: Arc<Mutex<String>>,
    /// Where an attached rtcam's log goes (the guest's serial console).
    log_file: Option<std::path::PathBuf>,
    pub state_dir: std::path::PathBuf,
    /// A WHEP bearer token made with `rtcam token create`.
    pub token: String,
}

pub const PASSWORD: &str = "integration-test-password";

/// The rtcam binary as a command; under qemu-user (the ARM targets' cargo
/// runner, scripts/qemu-runner.sh) it is started through the same emulator.
pub fn rtcam() -> Command {
    let bin = env!("CARGO_BIN_EXE_rtcam");
    match std::env::var("RTCAM_TEST_WRAPPER") {
        Ok(wrapper) if emulated() => {
            let mut words = wrapper.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or_default());
            cmd.args(words).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// Whether the tests run under qemu-user (scripts/qemu-runner.sh), where the
/// CPU is several times slower: tests that need a machine to keep up with
/// live video choose a lower rate there, and check the same property.
pub fn emulated() -> bool {
    std::env::var("RTCAM_TEST_WRAPPER").is_ok_and(|w| !w.trim().is_empty())
}

/// Runs an rtcam subcommand to completion; returns its stdout.
pub fn rtcam_command(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut cmd = rtcam();
    cmd.args(args);
    run_with_stdin(cmd, stdin)
}

/// Runs `cmd` to completion with `stdin` as its input: (success, stdout
/// trimmed, stderr).
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A duration in seconds from the environment variable `name`, else `default`.
pub fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

pub fn free_port() -> u16 {
    // A port free for both TCP and UDP.
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Server {
    /// Starts rtcam with the test source on loopback plus `extra` flags, and
    /// waits for its "listening on https://" line.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// [`Server::start`] with extra environment for rtcam (and so for the
    /// children it starts, such as a stand-in `rpicam-vid` found through a
    /// `PATH` given here). A `--source` in `extra` replaces the test source.
    pub fn start_with_env(extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let state_dir =
            std::env::temp_dir().join(format!("rtcam-it-{}-{}", std::process::id(), http.port()));
        let dir = state_dir.display().to_string();
        let (ok, _, err) = rtcam_command(
            &["passwd", "--password-stdin", "--state-dir", &dir],
            PASSWORD,
        );
        assert!(ok, "passwd: {err}");
        let (ok, token, err) =
            rtcam_command(&["token", "create", "tests", "--state-dir", &dir], "");
        assert!(ok && token.len() == 64, "token create: {err}");
        // The camera-like scene natively; the cheap bars on an emulated CPU.
        let source = if emulated() { "bars" } else { "test" };
        let own_source = extra
            .iter()
            .any(|a| *a == "--source" || a.starts_with("--source="));
        let mut args = Vec::new();
        if !own_source {
            args.extend(["--source".to_string(), source.into()]);
        }
        // Nothing a test starts is announced on this machine's LAN (the
        // mDNS test turns it on inside a network namespace of its own).
        if !extra.iter().any(|a| a.starts_with("--mdns")) {
            args.extend(["--mdns".to_string(), "off".into()]);
        }
        args.extend([
            "--http".into(),
            http.to_string(),
            "--state-dir".into(),
            state_dir.display().to_string(),
        ]);
        // A caller's own media socket wins (a wildcard one reachable from a
        // network namespace's veth, say).
        let rtc = match extra.iter().position(|a| *a == "--rtc") {
            Some(i) => extra[i + 1].parse().expect("--rtc ADDR:PORT"),
            None => {
                args.extend(["--rtc".into(), rtc.to_string()]);
                rtc
            }
        };
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = rtcam()
            .args(&args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rtcam");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on https://") {
                    let _ = ready_tx.send(());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!("rtcam did not start:\n{}", log.lock().unwrap());
        }
        Server {
            child: Some(child),
            http,
            rtc,
            log,
            log_file: None,
            state_dir,
            token,
        }
    }

    /// Attaches to an rtcam running elsewhere (the QEMU guest of
    /// `scripts/qemu-test.sh`), named by `{PREFIX}_HTTP`, `{PREFIX}_RTC`,
    /// `{PREFIX}_TOKEN` and `{PREFIX}_LOG` (a file its log goes to).
    pub fn attach(prefix: &str) -> Server {
        let var = |name: &str| {
            std::env::var(format!("{prefix}_{name}"))
                .unwrap_or_else(|_| panic!("{prefix}_{name} is not set: run scripts/qemu-test.sh"))
        };
        let addr = |name: &str| -> SocketAddr {
            var(name)
                .parse()
                .unwrap_or_else(|e| panic!("{prefix}_{name}: want host:port ({e})"))
        };
        let log_file = std::path::PathBuf::from(var("LOG"));
        Server {
            child: None,
            http: addr("HTTP"),
            rtc: addr("RTC"),
            log: Arc::new(Mutex::new(String::new())),
            log_file: Some(log_file),
            state_dir: std::path::PathBuf::new(),
            token: var("TOKEN"),
        }
    }

    /// Makes another WHEP token, `--control` or watch-only; the token.
    pub fn token(&self, name: &str, control: bool) -> String {
        let dir = self.state_dir.display().to_string();
        let mut args = vec!["token", "create", name, "--state-dir", &dir];
        if control {
            args.push("--control");
        }
        let (ok, token, err) = rtcam_command(&args, "");
        assert!(ok, "token create {name}: {err}");
        token
    }

    /// A request with the WHEP bearer token.
    pub async fn https(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: &[u8],
    ) -> HttpResponse {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(ct) = ct {
            headers.push(("Content-Type", ct));
        }
        https_raw(self.http, method, path, &headers, body).await
    }

    /// Logs in with the password; returns the session cookie (`name=value`).
    pub async fn login(&self) -> String {
        let body = format!("password={PASSWORD}");
        let r = https_raw(
            self.http,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 204, "login: {r:?}");
        let cookie = r.header("set-cookie").expect("Set-Cookie");
        cookie.split(';').next().unwrap().to_string()
    }

    /// A logged-in, same-origin signaling socket.
    pub async fn ws(&self) -> Ws {
        let cookie = self.login().await;
        ws_connect_with(
            self.http,
            &[
                ("Cookie", cookie.as_str()),
                ("Origin", &format!("https://localhost:{}", self.http.port())),
            ],
        )
        .await
        .expect("websocket handshake")
    }

    pub async fn status(&self) -> serde_json::Value {
        let r = self.https("GET", "/api/status", None, b"").await;
        serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null)
    }

    /// `/api/status` with another bearer token.
    pub async fn status_with(&self, token: &str) -> serde_json::Value {
        let auth = format!("Bearer {}", token.trim());
        let r = https_raw(
            self.http,
            "GET",
            "/api/status",
            &[("Authorization", &auth)],
            b"",
        )
        .await;
        serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn log(&self) -> String {
        match &self.log_file {
            None => self.log.lock().unwrap().clone(),
            Some(file) => String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into(),
        }
    }

    /// Whether the log shows `needle` within 5 s: rtcam's stderr is read by
    /// another thread, so a line can trail the answer it belongs to.
    pub fn log_shows(&self, needle: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGTERM (as systemd does to stop the service) and waits for the
    /// exit; returns the exit status and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let child = self
            .child
            .as_mut()
            .expect("terminate: not started by this harness");
        let pid = i32::try_from(child.id()).expect("pid");
        let start = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "rtcam ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The most memory rtcam has held so far (VmHWM, KiB), when it runs here.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    /// The memory rtcam holds now (VmRSS, KiB).
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The benchmarks' rtcam: the camera-like scene at 1280x720@30, room for
    /// `max_viewers` from one address (every viewer is on loopback).
    pub fn start_bench(max_viewers: usize) -> Server {
        Server::start_bench_with(max_viewers, &[])
    }

    /// [`Server::start_bench`] with more flags.
    pub fn start_bench_with(max_viewers: usize, extra: &[&str]) -> Server {
        let max = max_viewers.to_string();
        let mut args = vec![
            "--source",
            "test",
            "--size",
            "1280x720",
            "--fps",
            "30",
            "--max-viewers",
            &max,
            "--max-viewers-per-address",
            &max,
        ];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    /// rtcam's process id (none when attached).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// File descriptors rtcam holds open now, from /proc.
    pub fn fd_count(&self) -> Option<usize> {
        let pid = self.child.as_ref()?.id();
        Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
    }

    /// CPU time rtcam has used so far (user + system), from /proc.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) are split.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_millis(ticks * 1000 / hz))
    }

    /// How rtcam exited, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn still_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

// ---------------------------------------------------------------- HTTPS

#[derive(Debug)]
struct AcceptAnyCert;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub async fn tls_connect(addr: SocketAddr) -> TlsStream<TcpStream> {
    tls_connect_from(addr, None).await
}

/// A TLS connection from `from` (another loopback address, 127.0.0.N).
pub async fn tls_connect_from(addr: SocketAddr, from: Option<IpAddr>) -> TlsStream<TcpStream> {
    let tcp = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => tcp_from(addr, ip).await.unwrap(),
    };
    tls_over(tcp).await.unwrap()
}

/// A TCP connection to `addr` from `from` (another loopback address).
pub async fn tcp_from(addr: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// The TLS handshake on a TCP connection already made (any certificate).
pub async fn tls_over(tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as sent (a JPEG is not text).
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over TLS, `Connection: close`.
pub async fn https_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    https_raw_from(addr, None, method, path, headers, body).await
}

/// [`https_raw`] from another loopback address.
pub async fn https_raw_from(
    addr: SocketAddr,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = tls_connect_from(addr, from).await;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A server may answer (413) before reading a large body.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let bytes = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |at| raw[at + 4..].to_vec());
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
        bytes,
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

/// A WebSocket to /ws with these extra headers; the HTTP status on refusal.
pub async fn ws_connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    ws_over(tls_connect(addr).await, addr, headers).await
}

/// The WebSocket handshake on a TLS connection already made; `Err(status)`
/// when refused (0 when the connection was closed instead).
pub async fn ws_over(
    tls: TlsStream<TcpStream>,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{}/ws", addr.port())
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Io(_))
        | Err(tokio_tungstenite::tungstenite::Error::Protocol(_)) => Err(0),
        Err(e) => panic!("websocket: {e}"),
    }
}

// ---------------------------------------------------------------- viewer

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

pub mod audio_peer;
pub mod channels;
pub mod clips;
pub mod link;
pub mod sim;
