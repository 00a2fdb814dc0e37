//! Every route, every way in: no credentials, wrong ones, an ended session,
//! a foreign Origin; each is refused while the right credentials work.

use crate::common;

use common::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cred {
    None,
    WrongCookie,
    EndedSession,
    WrongToken,
    Session,
    Token,
}

/// Method, path, content type, body, the credential that works, and the
/// status it gets.
type Route<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, Cred, u16);
/// Extra headers for the WebSocket handshake, and what it should get.
type WsCase<'a> = (Vec<(&'a str, &'a str)>, Result<(), u16>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_strangers_and_admits_the_owner() {
    let server = Server::start(&["--size", "640x360"]);
    let session = server.login().await;
    let ended = server.login().await;
    let r = https_raw(server.http, "POST", "/logout", &[("Cookie", &ended)], b"").await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));

    let offer = Client::new().offer;
    let routes: Vec<Route> = vec![
        ("GET", "/", None, vec![], Cred::Session, 200),
        ("GET", "/index.html", None, vec![], Cred::Session, 200),
        ("GET", "/app.js", None, vec![], Cred::Session, 200),
        ("GET", "/stripe.js", None, vec![], Cred::Session, 200),
        ("GET", "/nonexistent", None, vec![], Cred::Session, 404),
        ("GET", "/api/status", None, vec![], Cred::Session, 200),
        ("GET", "/api/status", None, vec![], Cred::Token, 200),
        (
            "POST",
            "/whep",
            Some("application/sdp"),
            offer.into_bytes(),
            Cred::Token,
            201,
        ),
        (
            "PATCH",
            "/whep/0000000000000001",
            Some("application/trickle-ice-sdpfrag"),
            b"a=candidate:1 1 udp 1 10.0.0.1 9 typ host".to_vec(),
            Cred::Token,
            404,
        ),
        (
            "DELETE",
            "/whep/0000000000000001",
            None,
            vec![],
            Cred::Token,
            404,
        ),
    ];
    for (method, path, ct, body, good, ok_status) in &routes {
        for cred in [
            Cred::None,
            Cred::WrongCookie,
            Cred::EndedSession,
            Cred::WrongToken,
            *good,
        ] {
            let cookie;
            let bearer;
            let mut headers: Vec<(&str, &str)> = Vec::new();
            match cred {
                Cred::None => {}
                Cred::WrongCookie => headers.push(("Cookie", "rtcam_session=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")),
                Cred::EndedSession => headers.push(("Cookie", &ended)),
                Cred::WrongToken => headers.push(("Authorization", "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")),
                Cred::Session => {
                    cookie = session.clone();
                    headers.push(("Cookie", &cookie));
                }
                Cred::Token => {
                    bearer = format!("Bearer {}", server.token);
                    headers.push(("Authorization", &bearer));
                }
            }
            if let Some(ct) = ct {
                headers.push(("Content-Type", ct));
            }
            let r = https_raw(server.http, method, path, &headers, body).await;
            let want_ok = cred == *good;
            if want_ok {
                assert_eq!(r.status, *ok_status, "{method} {path} with {cred:?}: {r:?}");
            } else if *method == "GET" && (*path == "/" || *path == "/index.html") {
                assert_eq!(r.status, 303, "{method} {path} with {cred:?}");
                assert_eq!(r.header("location"), Some("/login"));
            } else {
                assert_eq!(r.status, 401, "{method} {path} with {cred:?}: {r:?}");
            }
            // Security headers on every answer, refusals included.
            let csp = r.header("content-security-policy").unwrap_or("");
            assert!(
                csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
                "{csp}"
            );
            assert!(r.header("strict-transport-security").is_some());
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        }
    }
    // The WHEP session made above is real: a token is the owner's key.
    assert_eq!(server.status().await["viewers"], 1);

    // The login page and what it needs are public.
    for path in ["/login", "/login.js", "/style.css"] {
        let r = https_raw(server.http, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}");
    }

    // /ws: session and same origin both required.
    let origin = format!("https://localhost:{}", server.http.port());
    let cases: Vec<WsCase> = vec![
        (vec![("Origin", &origin)], Err(401)),
        (vec![("Cookie", &ended), ("Origin", &origin)], Err(401)),
        (vec![("Cookie", &session)], Err(403)),
        (
            vec![("Cookie", &session), ("Origin", "https://evil.example")],
            Err(403),
        ),
        (vec![("Cookie", &session), ("Origin", &origin)], Ok(())),
    ];
    for (headers, want) in cases {
        let got = ws_connect_with(server.http, &headers).await.map(|_| ());
        assert_eq!(got, want, "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_slow_down_and_the_log_says_so() {
    let server = Server::start(&["--size", "640x360"]);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = https_raw(
            server.http,
            "POST",
            "/login",
            &form,
            b"password=guess-guess",
        )
        .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
    }
    // Three free mistakes, then the fourth sets a wait: the fifth is refused
    // even before its password is looked at.
    assert_eq!(statuses, vec![401, 401, 401, 401, 429]);
    // Even the right password waits its turn.
    let body = format!("password={PASSWORD}");
    let r = https_raw(server.http, "POST", "/login", &form, body.as_bytes()).await;
    assert_eq!(r.status, 429);
    assert!(server.log_shows("throttled"), "{}", server.log());
    let log = server.log();
    assert!(log.contains("failed login from 127.0.0.1"), "{log}");
    assert!(log.contains("throttled"), "{log}");
    assert!(
        !log.contains("guess-guess"),
        "passwords never reach the log"
    );
    assert!(!log.contains(PASSWORD), "passwords never reach the log");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = https_raw(server.http, "POST", "/login", &form, body.as_bytes()).await;
    assert_eq!(r.status, 204, "after the wait the owner gets in");
}

/// Wrong passwords sent at once, each on its own connection: from one
/// address (30), one is checked at a time and each is counted before its
/// password is checked, so only the first few are hashed; from forty addresses all are hashed, but at
/// most two at a time, so memory stays where it was (before: all forty
/// hashed together, 7 MiB each, RSS up to 300 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_wrong_logins_is_not_all_checked_and_memory_stays_bounded() {
    let server = Server::start(&["--size", "640x360"]);
    let before = server.peak_rss_kib();
    let http = server.http;
    let crowd = |spread: bool| async move {
        // From one address, fewer than its share of connections (32).
        let n = if spread { 40 } else { 30 };
        let logins: Vec<_> = (0..n)
            .map(|i| {
                let from = spread.then(|| std::net::IpAddr::from([127, 0, 1, 10 + i]));
                tokio::spawn(async move {
                    let form = [("Content-Type", "application/x-www-form-urlencoded")];
                    let body = format!("password=wrong-{i}");
                    https_raw_from(http, from, "POST", "/login", &form, body.as_bytes())
                        .await
                        .status
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for login in logins {
            statuses.push(login.await.unwrap());
        }
        statuses
    };
    let statuses = crowd(false).await;
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    // 429: throttled; 503: another login of its address was being checked.
    let refused = statuses.iter().filter(|&&s| s == 429 || s == 503).count();
    eprintln!("30 at once from one address: {checked} checked, {refused} refused");
    assert!(
        checked <= 4,
        "only the attempts before the first wait are hashed: {statuses:?}"
    );
    assert_eq!(checked + refused, 30, "{statuses:?}");

    let statuses = crowd(true).await;
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    eprintln!(
        "40 at once from 40 addresses: {checked} checked; peak RSS {before:?} -> {:?} KiB",
        server.peak_rss_kib()
    );
    assert!(
        statuses.iter().all(|&s| s == 401 || s == 503),
        "each checked, or told to come back: {statuses:?}"
    );
    if let (Some(before), Some(after)) = (before, server.peak_rss_kib()) {
        assert!(
            after < before + 40 * 1024,
            "peak RSS grew from {before} to {after} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_token_commands() {
    let server = Server::start(&["--size", "640x360"]);
    let dir = server.state_dir.display().to_string();
    // A new password works at once; the old one no longer does.
    let (ok, _, err) = rtcam_command(
        &["passwd", "--password-stdin", "--state-dir", &dir],
        "second-password-xyz\n",
    );
    assert!(ok, "{err}");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = https_raw(
        server.http,
        "POST",
        "/login",
        &form,
        b"password=second-password-xyz",
    )
    .await;
    assert_eq!(r.status, 204);
    let (ok, _, err) = rtcam_command(
        &["passwd", "--password-stdin", "--state-dir", &dir],
        "short\n",
    );
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, _, err) = rtcam_command(&["passwd", "--state-dir", &dir], "");
    assert!(!ok && err.contains("--password-stdin"), "{err}");

    // Tokens: a second one works live; revoking it refuses it live.
    let (ok, token, err) = rtcam_command(&["token", "create", "player-2", "--state-dir", &dir], "");
    assert!(ok, "{err}");
    let auth = format!("Bearer {token}");
    let r = https_raw(
        server.http,
        "GET",
        "/api/status",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let (_, names, _) = rtcam_command(&["token", "list", "--state-dir", &dir], "");
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        vec!["tests\twatch", "player-2\twatch"]
    );
    let stored = std::fs::read_to_string(server.state_dir.join("tokens")).unwrap();
    assert!(!stored.contains(&token), "only digests are stored");
    let (ok, _, _) = rtcam_command(&["token", "create", "player-2", "--state-dir", &dir], "");
    assert!(!ok, "names are unique");
    let (ok, _, err) = rtcam_command(&["token", "revoke", "player-2", "--state-dir", &dir], "");
    assert!(ok, "{err}");
    let r = https_raw(
        server.http,
        "GET",
        "/api/status",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    // The state dir is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&server.state_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    for f in ["password", "tokens", "key.pem"] {
        let mode = std::fs::metadata(server.state_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_loopback_is_off_by_default() {
    let locked = Server::start(&["--size", "640x360"]);
    let r = https_raw(locked.http, "GET", "/api/status", &[], b"").await;
    assert_eq!(r.status, 401, "by default loopback needs credentials too");
    drop(locked);
    let open = Server::start(&["--size", "640x360", "--trust-loopback"]);
    let r = https_raw(open.http, "GET", "/api/status", &[], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(open.log_shows("--trust-loopback"), "the log says so");
}

/// A state dir others can read is refused with what to do, and left as it
/// was (rtcam used to chmod it to 0700 without a word).
#[test]
fn an_open_state_dir_is_refused_not_chmodded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rtcam-it-open-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.display().to_string();
    let (ok, _, err) = rtcam_command(&["--state-dir", &d, "--source", "bars"], "");
    assert!(!ok, "refused");
    assert!(
        err.contains("open to other users (mode 0755)") && err.contains("chmod 700"),
        "{err}"
    );
    let (ok, _, err) = rtcam_command(
        &["passwd", "--password-stdin", "--state-dir", &d],
        "a new password\n",
    );
    assert!(!ok && err.contains("mode 0755"), "{err}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing written there"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `rtcam board` names the profile; `--memory-max` prints just its ceiling,
/// which the package's postinst turns into systemd's MemoryMax=.
#[test]
fn the_board_command_gives_the_memory_ceiling() {
    let (ok, out, err) = rtcam_command(&["board"], "");
    assert!(ok && out.contains("memory ceiling"), "{out}{err}");
    let (ok, out, err) = rtcam_command(&["board", "--memory-max"], "");
    assert!(ok, "{err}");
    let value = out.trim();
    assert!(
        value.is_empty()
            || (value.ends_with('M') && value[..value.len() - 1].parse::<u32>().is_ok()),
        "a systemd size: {out:?}"
    );
}
