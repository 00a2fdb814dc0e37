//! The WHIP client's HTTP side against a stand-in receiver, sans-IO: every
//! edge no single real receiver shows. Relative and absolute `Location`,
//! `ETag` sent back as `If-Match`, a PATCH refused with 405, 403, 5xx, a
//! redirect, a slow answer, an answer that refuses the codec, the receiver
//! going away, DELETE on stop. Time is simulated.

use std::time::{Duration, Instant};

use rtcam::rtc::ViewerId;
use rtcam::rtc::whip::client::{Method, Output, Request, Response, Transport};
use rtcam::rtc::whip::{Endpoint, Phase, Url, WhipClient, WhipError};

const ENDPOINT: &str = "https://sfu.example:8443/whip/endpoint/cam";
const OFFER: &str = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\na=group:BUNDLE 0\n\
    m=video 9 UDP/TLS/RTP/SAVPF 108\na=mid:0\na=ice-ufrag:uf\na=ice-pwd:pw\n\
    a=sendonly\na=candidate:1 1 udp 2130706175 10.0.0.1 8443 typ host\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 108\r\na=mid:0\r\na=recvonly\r\n";

/// How the stand-in receiver behaves.
#[derive(Clone)]
struct Receiver {
    /// The first POSTs get this status instead of 201 (403, 500, ...).
    refuse: Vec<u16>,
    location: &'static str,
    etag: Option<&'static str>,
    patch_status: u16,
    /// The first POST is redirected here with 307.
    redirect_to: Option<&'static str>,
    /// The answer refuses the video section.
    refuse_codec: bool,
    content_type: &'static str,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            refuse: Vec::new(),
            location: "/whip/resource/1",
            etag: Some("\"xyzzy\""),
            patch_status: 204,
            redirect_to: None,
            refuse_codec: false,
            content_type: "application/sdp",
        }
    }
}

impl Receiver {
    fn answer(&mut self, req: &Request) -> Response {
        match req.method {
            Method::Post => {
                if let Some(to) = self.redirect_to.take() {
                    return Response {
                        status: 307,
                        location: Some(to.into()),
                        ..Default::default()
                    };
                }
                if !self.refuse.is_empty() {
                    return Response {
                        status: self.refuse.remove(0),
                        ..Default::default()
                    };
                }
                let body = if self.refuse_codec {
                    ANSWER.replace("m=video 9", "m=video 0")
                } else {
                    ANSWER.to_string()
                };
                Response {
                    status: 201,
                    location: Some(self.location.into()),
                    etag: self.etag.map(String::from),
                    content_type: Some(self.content_type.into()),
                    body,
                }
            }
            Method::Patch => Response {
                status: self.patch_status,
                ..Default::default()
            },
            Method::Delete => Response {
                status: 200,
                ..Default::default()
            },
        }
    }
}

/// The client, the stand-in, simulated time, and what went over the wire.
struct World {
    now: Instant,
    client: WhipClient,
    receiver: Receiver,
    requests: Vec<Request>,
    answers: Vec<(ViewerId, String)>,
    ended: Vec<ViewerId>,
    next_peer: u64,
    /// Requests whose answer is held back (a slow receiver).
    held: Vec<Request>,
    hold: bool,
}

impl World {
    fn new(receiver: Receiver) -> World {
        World::with(receiver, false)
    }

    fn with(receiver: Receiver, trickle: bool) -> World {
        let now = Instant::now();
        let endpoint = Endpoint {
            url: Url::parse(ENDPOINT).unwrap(),
            token: Some("t0ken".into()),
            trickle,
        };
        World {
            now,
            client: WhipClient::new(endpoint, now),
            receiver,
            requests: Vec::new(),
            answers: Vec::new(),
            ended: Vec::new(),
            next_peer: 0,
            held: Vec::new(),
            hold: false,
        }
    }

    /// Runs the client's outputs to rest, the stand-in answering at once.
    fn settle(&mut self) {
        self.client.handle_timeout(self.now);
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::CreatePeer => {
                    self.next_peer += 1;
                    self.client.offer(self.now, ViewerId(self.next_peer), OFFER);
                }
                Output::Http(req) => {
                    self.requests.push(req.clone());
                    if self.hold {
                        self.held.push(req);
                        continue;
                    }
                    let response = self.receiver.answer(&req);
                    self.client.response(self.now, req.id, Ok(response));
                }
                Output::Answer { peer, sdp } => self.answers.push((peer, sdp)),
                Output::EndPeer(peer) => self.ended.push(peer),
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.settle();
    }

    fn peer(&self) -> ViewerId {
        self.client.peer().expect("a publishing peer")
    }

    fn last(&self, method: Method) -> &Request {
        self.requests
            .iter()
            .rev()
            .find(|r| r.method == method)
            .unwrap_or_else(|| panic!("no {method:?} sent"))
    }

    fn count(&self, method: Method) -> usize {
        self.requests.iter().filter(|r| r.method == method).count()
    }
}

#[test]
fn the_offer_is_posted_as_receivers_require_and_a_relative_location_resolves() {
    let mut w = World::new(Receiver::default());
    w.settle();
    let post = w.last(Method::Post);
    assert_eq!(post.url.to_string(), ENDPOINT);
    assert_eq!(post.header("Content-Type"), Some("application/sdp"));
    assert_eq!(post.header("Authorization"), Some("Bearer t0ken"));
    let body = post.body.as_deref().unwrap();
    assert!(body.lines().count() > 5 && !body.replace("\r\n", "").contains('\n'));
    assert!(body.ends_with("\r\n"), "CRLF line ends");
    assert!(body.contains("a=candidate:"), "candidates in the offer");
    assert_eq!(w.client.phase(), Phase::Connecting);
    assert_eq!(w.answers.len(), 1, "the answer goes to the peer");
    assert_eq!(
        w.client.resource().unwrap().to_string(),
        "https://sfu.example:8443/whip/resource/1"
    );
    assert_eq!(w.count(Method::Patch), 0, "no trickle by default");
    let peer = w.peer();
    w.client.connected(w.now, peer);
    assert_eq!(w.client.phase(), Phase::Live);
    assert_eq!(w.client.last_error(), None);
}

#[test]
fn an_absolute_location_is_taken_as_it_is() {
    let mut w = World::new(Receiver {
        location: "https://edge-7.sfu.example/resource/abc",
        ..Default::default()
    });
    w.settle();
    assert_eq!(
        w.client.resource().unwrap().to_string(),
        "https://edge-7.sfu.example/resource/abc"
    );
}

#[test]
fn trickle_sends_the_candidates_with_if_match_and_a_405_is_not_fatal() {
    let mut w = World::with(
        Receiver {
            patch_status: 405,
            ..Default::default()
        },
        true,
    );
    w.settle();
    let post = w.last(Method::Post).clone();
    assert!(!post.body.as_deref().unwrap().contains("a=candidate"));
    let patch = w.last(Method::Patch);
    assert_eq!(
        patch.url.to_string(),
        "https://sfu.example:8443/whip/resource/1"
    );
    assert_eq!(patch.header("If-Match"), Some("\"xyzzy\""));
    assert_eq!(
        patch.header("Content-Type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let frag = patch.body.as_deref().unwrap();
    assert!(frag.contains("a=candidate:1 1 udp") && frag.contains("a=ice-ufrag:uf"));
    assert!(frag.ends_with("a=end-of-candidates\r\n"));
    assert!(w.client.poll_note().unwrap().contains("405"));
    // Still connecting, then live: the receiver learns our address from
    // our connectivity checks.
    assert_eq!(w.client.phase(), Phase::Connecting);
    let peer = w.peer();
    w.client.connected(w.now, peer);
    assert_eq!(w.client.phase(), Phase::Live);
}

#[test]
fn without_an_etag_the_patch_has_no_if_match() {
    let mut w = World::with(
        Receiver {
            etag: None,
            ..Default::default()
        },
        true,
    );
    w.settle();
    assert_eq!(w.last(Method::Patch).header("If-Match"), None);
}

#[test]
fn a_redirect_is_followed_once() {
    let mut w = World::new(Receiver {
        redirect_to: Some("/whip/v2/endpoint/cam"),
        ..Default::default()
    });
    w.settle();
    let posts: Vec<String> = w
        .requests
        .iter()
        .filter(|r| r.method == Method::Post)
        .map(|r| r.url.to_string())
        .collect();
    assert_eq!(
        posts,
        [ENDPOINT, "https://sfu.example:8443/whip/v2/endpoint/cam"]
    );
    assert_eq!(w.client.phase(), Phase::Connecting);
    // The resource resolves against where the offer was finally posted.
    assert_eq!(
        w.client.resource().unwrap().to_string(),
        "https://sfu.example:8443/whip/resource/1"
    );
}

#[test]
fn refusals_and_failures_back_off_from_1_s_doubling_to_30_s() {
    let mut w = World::new(Receiver {
        refuse: vec![403, 500, 503, 502, 500, 500, 500],
        ..Default::default()
    });
    w.settle();
    assert_eq!(w.client.last_error(), Some(&WhipError::Unauthorized(403)));
    assert_eq!(w.client.phase(), Phase::Waiting);
    assert_eq!(w.ended.len(), 1, "the refused peer is ended");
    let mut waits = Vec::new();
    for _ in 0..6 {
        let at = w.client.poll_timeout().expect("a retry is scheduled");
        waits.push(at.duration_since(w.now).as_secs());
        w.now = at;
        w.settle();
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30]);
    assert_eq!(w.client.last_error(), Some(&WhipError::Server(500)));
    // The 8th POST succeeds; once live the backoff starts again at 1 s.
    let at = w.client.poll_timeout().unwrap();
    w.now = at;
    w.settle();
    let peer = w.peer();
    w.client.connected(w.now, peer);
    assert_eq!(w.client.phase(), Phase::Live);
    w.client.peer_ended(w.now, peer, "ICE disconnected".into());
    w.settle();
    assert_eq!(
        w.client.poll_timeout().unwrap().duration_since(w.now),
        Duration::from_secs(1)
    );
}

#[test]
fn an_answer_that_refuses_the_codec_is_an_error_and_the_resource_is_deleted() {
    let mut w = World::new(Receiver {
        refuse_codec: true,
        ..Default::default()
    });
    w.settle();
    assert_eq!(w.client.last_error(), Some(&WhipError::CodecRefused));
    assert!(w.answers.is_empty(), "not given to the peer");
    assert_eq!(
        w.last(Method::Delete).url.to_string(),
        "https://sfu.example:8443/whip/resource/1"
    );
    assert_eq!(
        w.last(Method::Delete).header("Authorization"),
        Some("Bearer t0ken")
    );
    assert_eq!(w.ended.len(), 1);
    assert_eq!(w.client.phase(), Phase::Waiting);
}

#[test]
fn an_answer_that_is_not_sdp_is_an_error() {
    let mut w = World::new(Receiver {
        content_type: "text/html",
        ..Default::default()
    });
    w.settle();
    assert!(matches!(w.client.last_error(), Some(WhipError::NotSdp(t)) if t == "text/html"));
    let mut ok = World::new(Receiver {
        content_type: "application/sdp; charset=utf-8",
        ..Default::default()
    });
    ok.settle();
    assert_eq!(ok.client.last_error(), None, "parameters are fine");
}

#[test]
fn a_slow_answer_is_waited_for_and_a_timeout_retries() {
    let mut w = World::new(Receiver::default());
    w.hold = true;
    w.settle();
    assert_eq!(w.client.phase(), Phase::Offering);
    w.advance(Duration::from_secs(8));
    assert_eq!(w.client.phase(), Phase::Offering, "still waiting");
    assert_eq!(
        w.client.poll_timeout(),
        None,
        "no timer of its own meanwhile"
    );
    // The answer arrives late: taken.
    let req = w.held.remove(0);
    let response = w.receiver.answer(&req);
    w.client.response(w.now, req.id, Ok(response));
    assert_eq!(w.client.phase(), Phase::Connecting);

    // Another receiver never answers: the shell's time limit gives up.
    let mut w = World::new(Receiver::default());
    w.hold = true;
    w.settle();
    let req = w.held.remove(0);
    w.client.response(w.now, req.id, Err(Transport::Timeout));
    assert_eq!(
        w.client.last_error(),
        Some(&WhipError::Transport(Transport::Timeout))
    );
    assert_eq!(w.client.phase(), Phase::Waiting);
    // A late answer to the abandoned request changes nothing.
    let late = w.receiver.answer(&req);
    w.client.response(w.now, req.id, Ok(late));
    assert_eq!(w.client.phase(), Phase::Waiting);
}

#[test]
fn a_session_that_ends_is_deleted_then_published_again_fresh() {
    let mut w = World::new(Receiver::default());
    w.settle();
    let first = w.peer();
    w.client.connected(w.now, first);
    w.client
        .peer_ended(w.now, first, "connection lost (ICE disconnected)".into());
    w.settle();
    assert_eq!(w.count(Method::Delete), 1, "the old session is deleted");
    assert!(matches!(w.client.last_error(), Some(WhipError::Media(_))));
    w.advance(Duration::from_secs(1));
    let second = w.peer();
    assert_ne!(first, second, "a fresh session");
    assert_eq!(w.count(Method::Post), 2);
}

#[test]
fn a_refused_connection_is_retried() {
    let mut w = World::new(Receiver::default());
    w.hold = true;
    w.settle();
    let req = w.held.remove(0);
    w.client.response(w.now, req.id, Err(Transport::Refused));
    w.settle();
    assert_eq!(
        w.client.last_error().unwrap().to_string(),
        "cannot reach the receiver: connection refused"
    );
    assert_eq!(w.ended.len(), 1);
    w.hold = false;
    w.advance(Duration::from_secs(1));
    assert_eq!(w.client.phase(), Phase::Connecting);
}

#[test]
fn stop_deletes_the_session_and_nothing_is_published_again() {
    let mut w = World::new(Receiver::default());
    w.settle();
    let peer = w.peer();
    w.client.connected(w.now, peer);
    w.client.stop(w.now);
    // The DELETE first; the peer ends once it is answered, so the receiver
    // hears the DELETE before the DTLS close.
    let Some(Output::Http(delete)) = w.client.poll_output() else {
        panic!("the DELETE comes first");
    };
    assert_eq!(delete.method, Method::Delete);
    assert_eq!(w.client.poll_output(), None, "the peer is still up");
    let answer = w.receiver.answer(&delete);
    w.client.response(w.now, delete.id, Ok(answer));
    assert_eq!(w.client.poll_output(), Some(Output::EndPeer(peer)));
    w.requests.push(delete);
    w.settle();
    assert_eq!(w.count(Method::Delete), 1);
    assert!(w.client.is_stopped());
    w.advance(Duration::from_secs(60));
    assert_eq!(w.count(Method::Post), 1);
}

#[test]
fn stop_while_the_offer_is_out_deletes_what_the_201_made() {
    let mut w = World::new(Receiver::default());
    w.hold = true;
    w.settle();
    w.client.stop(w.now);
    let req = w.held.remove(0);
    let response = w.receiver.answer(&req);
    w.hold = false;
    w.client.response(w.now, req.id, Ok(response));
    w.settle();
    assert_eq!(
        w.count(Method::Delete),
        1,
        "the session just made is deleted"
    );
    assert!(w.client.is_stopped());
    assert!(w.answers.is_empty());
}
