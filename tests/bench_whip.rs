//! A benchmark, not a test (ignored; `bench/whip.sh` runs it in a release
//! build inside a network namespace with Janus): what publishing once to an
//! SFU saves the device. For N = 1, 10, 50 light subscribers (str0m, no
//! decoding) it prints rtcam's CPU (% of one core, /proc) and upload (its
//! own byte counters, /metrics) with N direct viewers against one WHIP
//! publish into Janus plus N subscribers of Janus; then stamp-to-decoded
//! latency of one decoding viewer direct against one through Janus. The
//! subscribers and Janus run on the same machine, so its load is printed
//! too. Asserts nothing.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/whip.sh"))
}

fn steps() -> Vec<usize> {
    std::env::var("RTCAM_BENCH_VIEWERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 50])
}

/// One HTTP/1.0 exchange with Janus's REST API (plain HTTP, JSON).
fn janus_http(method: &str, url: &str, body: Option<&Value>) -> Value {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority).expect("Janus reachable");
    stream
        .set_read_timeout(Some(Duration::from_secs(35)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let json = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("Janus said {response:?}: {e}"))
}

/// A Janus session with a VideoRoom handle.
struct JanusHandle {
    session: String,
    handle: String,
}

impl JanusHandle {
    fn new(api: &str) -> JanusHandle {
        let t = || format!("{:x}", rand::random::<u64>());
        let created = janus_http(
            "POST",
            api,
            Some(&json!({"janus": "create", "transaction": t()})),
        );
        let session = format!("{api}/{}", created["data"]["id"]);
        let attached = janus_http(
            "POST",
            &session,
            Some(
                &json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": t()}),
            ),
        );
        let handle = format!("{session}/{}", attached["data"]["id"]);
        JanusHandle { session, handle }
    }

    fn message(&self, body: Value, jsep: Option<Value>) -> Value {
        let mut m = json!({"janus": "message", "body": body, "transaction": format!("{:x}", rand::random::<u64>())});
        if let Some(jsep) = jsep {
            m["jsep"] = jsep;
        }
        janus_http("POST", &self.handle, Some(&m))
    }

    /// Long-polls the session until an event carries an SDP.
    fn next_jsep(&self) -> String {
        for _ in 0..10 {
            let ev = janus_http("GET", &format!("{}?maxev=1", self.session), None);
            let events = if ev.is_array() { ev } else { json!([ev]) };
            for e in events.as_array().unwrap() {
                if let Some(sdp) = e["jsep"]["sdp"].as_str() {
                    return sdp.to_string();
                }
            }
        }
        panic!("Janus sent no offer");
    }

    fn keepalive(&self) {
        let t = format!("{:x}", rand::random::<u64>());
        janus_http(
            "POST",
            &self.session,
            Some(&json!({"janus": "keepalive", "transaction": t})),
        );
    }
}

/// The publisher's feed in the room, once it is there.
fn feed(api: &str, room: u64) -> u64 {
    let h = JanusHandle::new(api);
    for _ in 0..100 {
        let r = h.message(json!({"request": "listparticipants", "room": room}), None);
        let participants = &r["plugindata"]["data"]["participants"];
        if let Some(p) = participants
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["publisher"] == true))
        {
            return p["id"].as_u64().expect("feed id");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no publisher in room {room}");
}

/// A subscriber of Janus: str0m answering Janus's offer.
fn subscribe(api: &str, room: u64, feed: u64) -> (JanusHandle, Client) {
    let h = JanusHandle::new(api);
    h.message(
        json!({"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}),
        None,
    );
    let offer = h.next_jsep();
    // On Janus's own address, as a browser in this namespace is: libnice
    // ties each of Janus's sockets to its interface (IP_UNICAST_IF, libnice
    // socket/udp-bsd.c), so what Janus sends to any other address never
    // arrives, even one local to the namespace (the other veth end).
    let janus_ip = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=candidate:"))
        .and_then(|c| c.split_whitespace().nth(4))
        .expect("Janus offers a host candidate")
        .to_string();
    let (client, answer) = Client::answering_at(&offer, &janus_ip);
    // Our candidate goes by trickle, then "completed", as janus.js does.
    let candidates: Vec<String> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .map(|l| l.split(" ufrag ").next().unwrap_or(l).to_string())
        .collect();
    let answer: String = answer
        .lines()
        .filter(|l| !l.starts_with("a=candidate:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let started = h.message(
        json!({"request": "start"}),
        Some(json!({"type": "answer", "sdp": answer})),
    );
    let trickle = |candidate: Value| {
        let t = format!("{:x}", rand::random::<u64>());
        janus_http(
            "POST",
            &h.handle,
            Some(&json!({"janus": "trickle", "candidate": candidate, "transaction": t})),
        )
    };
    for c in &candidates {
        trickle(json!({"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}));
    }
    let trickled = trickle(json!({"completed": true}));
    if std::env::var("RTCAM_BENCH_DEBUG").is_ok() {
        eprintln!(
            "Janus offer:\n{offer}\nour answer:\n{answer}\nstart: {started}; trickle: {trickled}"
        );
    }
    (h, client)
}

/// rtcam's bytes sent to viewers and WHIP targets so far (its counters).
async fn bytes_sent(server: &Server) -> f64 {
    let r = server.https("GET", "/metrics", None, b"").await;
    r.body
        .lines()
        .filter(|l| {
            l.starts_with("rtcam_viewer_sent_bytes_total{")
                || l.starts_with("rtcam_whip_sent_bytes_total{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_default()
}

struct Viewers {
    stop: Arc<AtomicBool>,
    counters: Vec<Arc<AtomicU64>>,
    threads: Vec<std::thread::JoinHandle<Report>>,
    janus: Vec<JanusHandle>,
}

impl Viewers {
    fn new() -> Viewers {
        Viewers {
            stop: Arc::new(AtomicBool::new(false)),
            counters: Vec::new(),
            threads: Vec::new(),
            janus: Vec::new(),
        }
    }

    fn run(&mut self, client: Client) {
        let frames = Arc::new(AtomicU64::new(0));
        self.counters.push(frames.clone());
        let until = Until::Counted {
            stop: self.stop.clone(),
            frames,
        };
        self.threads.push(std::thread::spawn(move || {
            client.run_until(until, Duration::from_secs(3600), true)
        }));
    }

    fn end(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Measures one step: rtcam's CPU and upload, and the viewers' frame rate.
async fn measure(server: &Server, v: &Viewers, window: Duration) -> (f64, f64, f64) {
    for h in &v.janus {
        h.keepalive();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: Vec<u64> = v
        .counters
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let (cpu0, bytes0, t0) = (
        server.cpu_time().unwrap_or_default(),
        bytes_sent(server).await,
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (server.cpu_time().unwrap_or_default() - cpu0).as_secs_f64() / secs * 100.0;
    let mbps = (bytes_sent(server).await - bytes0) * 8.0 / secs / 1e6;
    let fps = v
        .counters
        .iter()
        .zip(&before)
        .map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 / secs)
        .fold(f64::INFINITY, f64::min);
    (cpu, mbps, fps)
}

fn server(extra: &[&str]) -> Server {
    let advertise = env("RTCAM_BENCH_ADVERTISE");
    let rtc = format!("0.0.0.0:{}", free_port());
    let mut args = vec![
        "--audio-in",
        "off",
        "--rtc",
        &rtc,
        "--advertise",
        &advertise,
    ];
    args.extend_from_slice(extra);
    Server::start_bench_with(128, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/whip.sh"]
async fn publish_once_against_direct_viewers() {
    let window = env_secs("RTCAM_BENCH_SECONDS", 8);
    let (api, endpoint, token_file) = (
        env("RTCAM_BENCH_JANUS_API"),
        env("RTCAM_BENCH_WHIP"),
        env("RTCAM_BENCH_WHIP_TOKEN_FILE"),
    );
    let room: u64 = env("RTCAM_BENCH_ROOM").parse().unwrap();
    println!(
        "rtcam 1280x720@30, light subscribers, {window:?} a step (release build: bench/whip.sh)"
    );
    println!(
        "{:>6} {:>22} {:>22} {:>14} {:>14} {:>9}",
        "N",
        "direct: CPU % / Mbit/s",
        "Janus: CPU % / Mbit/s",
        "direct fps min",
        "Janus fps min",
        "load avg"
    );
    let mut rows = Vec::new();
    // Direct: N WHEP viewers of rtcam.
    {
        let server = server(&[]);
        let mut v = Viewers::new();
        for &n in &steps() {
            while v.counters.len() < n {
                let mut client = Client::new();
                whep_connect(&server, &mut client).await;
                v.run(client);
            }
            rows.push((n, measure(&server, &v, window).await, loadavg()));
        }
        v.end();
    }
    // Through Janus: one publish, N subscribers of Janus.
    let server = server(&["--whip", &endpoint, "--whip-token-file", &token_file]);
    let api2 = api.clone();
    let feed = tokio::task::spawn_blocking(move || feed(&api2, room))
        .await
        .unwrap();
    let mut v = Viewers::new();
    for (i, &n) in steps().iter().enumerate() {
        while v.counters.len() < n {
            let api = api.clone();
            let (h, client) = tokio::task::spawn_blocking(move || subscribe(&api, room, feed))
                .await
                .unwrap();
            v.janus.push(h);
            v.run(client);
        }
        let (cpu, mbps, fps) = measure(&server, &v, window).await;
        let ((_, (dcpu, dmbps, dfps), _), load) = (&rows[i], loadavg());
        println!(
            "{n:>6} {:>22} {:>22} {dfps:>14.1} {fps:>14.1} {load:>9}",
            format!("{dcpu:.1} / {dmbps:.2}"),
            format!("{cpu:.1} / {mbps:.2}"),
        );
    }
    v.end();

    // Latency: one decoding viewer through Janus, then one direct.
    let api2 = api.clone();
    let (h, client) = tokio::task::spawn_blocking(move || subscribe(&api2, room, feed))
        .await
        .unwrap();
    let janus = tokio::task::spawn_blocking(move || client.run(150, Duration::from_secs(20), true))
        .await
        .unwrap();
    drop(h);
    let mut client = Client::new();
    whep_connect(&server, &mut client).await;
    let direct =
        tokio::task::spawn_blocking(move || client.run(150, Duration::from_secs(20), true))
            .await
            .unwrap();
    let p = |r: &Report, q: f64| {
        let mut l = r.latencies_ms.clone();
        l.sort();
        l.get(((l.len() as f64 - 1.0) * q) as usize).copied()
    };
    if std::env::var("RTCAM_BENCH_DEBUG").is_ok() || !janus.connected {
        println!(
            "the decoding subscriber of Janus did not connect (ICE states {:?}, {} datagrams in)",
            janus.ice_states, janus.datagrams_in
        );
    }
    println!(
        "stamp-to-decoded latency over 150 frames: direct p50 {:?} p95 {:?} ms; through Janus p50 {:?} p95 {:?} ms",
        p(&direct, 0.5),
        p(&direct, 0.95),
        p(&janus, 0.5),
        p(&janus, 0.95)
    );
}
