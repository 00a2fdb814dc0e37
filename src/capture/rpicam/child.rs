//! The running child: started in a process group of its own, its stderr
//! forwarded to the log, its stdout read against a deadline, and stopped
//! with SIGTERM, then SIGKILL, always reaped.

use super::*;

/// How long a child gets between SIGTERM and SIGKILL.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(1);

/// Lines of the child's stderr kept for the error that reports its exit.
pub(super) const STDERR_TAIL: usize = 12;

/// What the stderr thread learnt, shared with the reader.
#[derive(Debug, Default)]
pub(super) struct Diagnostics {
    pub(super) tail: VecDeque<String>,
    pub(super) configured: Option<Configured>,
}

pub(super) type Shared = Arc<Mutex<Diagnostics>>;

/// Starts the tool in a process group of its own (so stopping it stops
/// what it started), stdout and stderr piped, no stdin.
pub(super) fn spawn_piped(cmd: &mut Command) -> Result<Child, RpicamError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(RpicamError::Spawn)
}

/// How rpicam-vid is started: the tool, its environment, rtcam's
/// arguments and the image options viewers set.
pub(super) struct Spawn {
    pub(super) tool: PathBuf,
    pub(super) envs: Vec<(String, String)>,
    pub(super) args: Vec<String>,
    pub(super) options: BTreeMap<String, i64>,
}

impl Spawn {
    pub(super) fn start(&self) -> Result<(Child, Shared, Option<JoinHandle<()>>), RpicamError> {
        let mut child = spawn_piped(
            Command::new(&self.tool)
                .args(&self.args)
                .args(controls::rpicam_args(&self.options))
                .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )?;
        let shared = Shared::default();
        let stderr_thread = child
            .stderr
            .take()
            .map(|e| forward_stderr(e, tool_name(&self.tool), shared.clone()));
        Ok((child, shared, stderr_thread))
    }
}

/// The log prefix: the tool's file name.
pub(super) fn tool_name(tool: &Path) -> String {
    tool.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rpicam-vid".into())
}

/// Forwards each line of the child's stderr to the log, keeping the last
/// few for errors and noting what libcamera configured.
pub(super) fn forward_stderr(stderr: ChildStderr, name: String, shared: Shared) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if line.contains("ERROR") || line.contains(" WARN ") {
                tracing::warn!("{name}: {line}");
            } else {
                tracing::info!("{name}: {line}");
            }
            let Ok(mut d) = shared.lock() else { break };
            if let Some(c) = parse_configured(line) {
                d.configured = Some(c);
            }
            if d.tail.len() == STDERR_TAIL {
                d.tail.pop_front();
            }
            d.tail.push_back(line.to_string());
        }
    })
}

pub(super) enum ReadError {
    Eof,
    Stalled,
    Io(std::io::Error),
}

/// Fills `buf` from the pipe, giving up when `timeout` passes first.
pub(super) fn read_frame(
    src: &mut ChildStdout,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<(), ReadError> {
    let deadline = Instant::now() + timeout;
    let mut filled = 0;
    while filled < buf.len() {
        filled += read_before(src, &mut buf[filled..], deadline)?;
    }
    Ok(())
}

/// One read of what the pipe has (at least a byte, at most `buf.len()`),
/// giving up when `timeout` passes first.
pub(super) fn read_some(
    src: &mut ChildStdout,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize, ReadError> {
    read_before(src, buf, Instant::now() + timeout)
}

/// Waits (poll) until the pipe is readable or `deadline`, then reads once.
pub(super) fn read_before(
    src: &mut ChildStdout,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Stalled);
        }
        let mut pfd = libc::pollfd {
            fd: src.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: poll(2) on one valid pollfd that lives across the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ReadError::Io(e));
        }
        if ready == 0 {
            continue;
        }
        match src.read(buf) {
            Ok(0) => return Err(ReadError::Eof),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Waits for the child up to `timeout`; `None` if it is still running.
pub(super) fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM to the child's group, SIGKILL after [`STOP_GRACE`], then reaps it.
pub(super) fn stop_group(child: &mut Child) -> ExitStatus {
    signal_child_and_group(child, libc::SIGTERM);
    if let Ok(Some(status)) = wait_timeout(child, STOP_GRACE) {
        return status;
    }
    signal_child_and_group(child, libc::SIGKILL);
    match child.wait() {
        Ok(status) => status,
        // Only if it was reaped already (it cannot be: try_wait would have
        // said). A stand-in status keeps the error path simple.
        Err(_) => std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL),
    }
}

/// Signals the child's process group (it leads one: `process_group(0)`).
/// Safe after the child was reaped: a group outlives its leader.
pub(super) fn signal_group(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // ESRCH (already gone) is fine.
        unsafe { libc::kill(-pid, signal) };
    }
}

/// [`signal_group`], and the child itself, which is not reaped yet (so its
/// pid is still ours): a child that never got as far as its setpgid (a
/// fork that hung before exec: qemu-user's did once in CI) leads no group,
/// and signalling only the group left `child.wait()` waiting forever.
pub(super) fn signal_child_and_group(child: &Child, signal: libc::c_int) {
    signal_group(child, signal);
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our unreaped child; ESRCH is fine.
        unsafe { libc::kill(pid, signal) };
    }
}
