//! The real rtcam binary on loopback: started with a fresh state directory,
//! its log read for the ports it serves, killed and cleaned up when dropped.

use super::*;

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
