//! What the session table refuses, and how it says so.

use crate::common;

use common::sim::{Sim, offer_with};
use rtcam::rtc::SessionError;

fn ip(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([10, 0, 0, n])
}

#[test]
fn one_address_cannot_take_every_slot() {
    let mut sim = Sim::new(8);
    sim.sessions_config_per_address(2);
    let now = sim.now;
    for _ in 0..2 {
        let (_, offer, _, _) = sim.offer(0);
        assert!(sim.sessions.add_viewer(now, &offer, ip(50)).is_ok());
    }
    let (_, offer, _, _) = sim.offer(0);
    assert_eq!(
        sim.sessions.add_viewer(now, &offer, ip(50)),
        Err(SessionError::TooManyFromAddress(2))
    );
    assert!(
        sim.sessions.add_viewer(now, &offer, ip(51)).is_ok(),
        "another address may"
    );
}

#[test]
fn the_viewer_after_the_maximum_is_refused() {
    let mut sim = Sim::new(2);
    sim.join();
    sim.join();
    let (_, offer, _, _) = sim.offer(9);
    let now = sim.now;
    assert_eq!(
        sim.sessions.add_viewer(now, &offer, ip(9)),
        Err(SessionError::Full(2))
    );
}

#[test]
fn malformed_offers_are_refused_with_a_reason() {
    let mut sim = Sim::new(2);
    let now = sim.now;
    for bad in [
        "",
        "hello",
        "v=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video",
    ] {
        match sim.sessions.add_viewer(now, bad, ip(1)) {
            Err(SessionError::BadOffer(why)) => {
                assert!(!why.is_empty());
                assert!(!why.contains('\n'), "one line: {why}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(sim.sessions.is_empty());
}

#[test]
fn an_offer_with_neither_h264_nor_vp8_is_refused_naming_what_it_offered() {
    let mut sim = Sim::new(2);
    let now = sim.now;
    let offer = offer_with(|b| b.enable_vp9(true).enable_av1(true));
    let err = sim.sessions.add_viewer(now, &offer, ip(1)).unwrap_err();
    let SessionError::NoCodec { offered, ours } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(offered, &["VP9", "AV1"]);
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert!(
        err.to_string()
            .contains("ConstrainedBaseline (profile-level-id 42e0"),
        "{err}"
    );
    assert!(err.to_string().ends_with("it offered: VP9, AV1"), "{err}");
    assert!(sim.sessions.is_empty());
}

#[test]
fn candidates_are_checked_and_mdns_ignored() {
    let mut sim = Sim::new(2);
    let p = sim.join();
    let id = sim.peers[p].id.unwrap();
    let s = &mut sim.sessions;
    assert_eq!(
        s.add_remote_candidate(id, "candidate:1 1 udp 2122260223 10.0.0.10 5000 typ host"),
        Ok(())
    );
    assert_eq!(s.add_remote_candidate(id, ""), Ok(()), "end of candidates");
    assert_eq!(
        s.add_remote_candidate(
            id,
            "candidate:1 1 udp 2122260223 abcd-1234.local 5000 typ host"
        ),
        Ok(())
    );
    assert!(matches!(
        s.add_remote_candidate(id, "candidate:1 1 udp nope"),
        Err(SessionError::BadCandidate(_))
    ));
    assert!(matches!(
        s.add_remote_candidate(id, "hello"),
        Err(SessionError::BadCandidate(_))
    ));
    assert_eq!(
        s.add_remote_candidate(
            rtcam::rtc::ViewerId(1),
            "candidate:1 1 udp 1 1.2.3.4 5 typ host"
        ),
        Err(SessionError::UnknownViewer)
    );
}

/// A viewer that sends candidates without end is refused past the cap, with
/// a reason; another viewer's session is not touched.
#[test]
fn remote_candidates_are_capped_per_viewer() {
    use rtcam::rtc::sessions::MAX_REMOTE_CANDIDATES;
    let mut sim = Sim::new(2);
    let flooder = sim.join();
    let other = sim.join();
    let (id, other_id) = (sim.peers[flooder].id.unwrap(), sim.peers[other].id.unwrap());
    for i in 0..MAX_REMOTE_CANDIDATES {
        let line = format!(
            "candidate:{i} 1 udp 2122260223 10.0.{}.{} 5000 typ host",
            i / 200,
            i % 200 + 1
        );
        assert_eq!(
            sim.sessions.add_remote_candidate(id, &line),
            Ok(()),
            "candidate {i}"
        );
    }
    let err = sim
        .sessions
        .add_remote_candidate(id, "candidate:99 1 udp 2122260223 10.9.9.9 5000 typ host")
        .unwrap_err();
    assert_eq!(err, SessionError::TooManyCandidates(MAX_REMOTE_CANDIDATES));
    assert!(err.to_string().contains("at most 32"), "{err}");
    // mDNS names count too: ignored by str0m, still work to parse.
    assert!(
        sim.sessions
            .add_remote_candidate(id, "candidate:1 1 udp 1 x.local 5 typ host")
            .is_err()
    );
    assert_eq!(
        sim.sessions.add_remote_candidate(
            other_id,
            "candidate:1 1 udp 2122260223 10.0.0.11 5000 typ host"
        ),
        Ok(()),
        "the other viewer is not limited by the first"
    );
    sim.connect_all();
    assert!(sim.peers[other].connected && sim.peers[flooder].connected);
}
