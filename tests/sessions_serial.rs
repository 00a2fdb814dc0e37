//! The serial bridge's floor on the session table, with str0m peers on
//! simulated time: bytes a viewer writes on its `serial` channel become a
//! write for the port only while it holds the floor; the others are told
//! who does; the floor frees after 10 s idle or when the holder leaves; the
//! port's bytes reach every viewer's `serial` channel; a holder whose writes
//! a full port queue drops is told once, not once per message.

use crate::common;

use std::time::Duration;

use common::sim::Sim;
use rtcam::rtc::{EndReason, SessionEvent};
use rtcam::serial::queue::QueueFull;
use rtcam::serial::{SerialState, SerialView};

fn open_port() -> SerialView {
    SerialView {
        state: SerialState::Open,
        path: Some("/dev/ttyUSB0".into()),
        baud: 115_200,
        problem: None,
    }
}

fn settle(sim: &mut Sim) {
    for _ in 0..5 {
        sim.step(Duration::from_millis(10));
    }
}

fn ready(sim: &mut Sim) -> (usize, usize) {
    sim.sessions.set_serial(open_port());
    let (a, b) = (sim.join_with_serial(), sim.join_with_serial());
    sim.connect_all();
    for _ in 0..200 {
        if sim
            .peers
            .iter()
            .all(|p| p.channel.is_some() && p.serial.is_some())
        {
            break;
        }
        sim.step(Duration::from_millis(10));
    }
    sim.say(a, r#"{"type":"hello","name":"Ann"}"#);
    sim.say(b, r#"{"type":"hello","name":"Bob"}"#);
    settle(sim);
    (a, b)
}

fn writes(sim: &Sim) -> Vec<Vec<u8>> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::SerialWrite(_, bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn last_serial(sim: &Sim, i: usize) -> serde_json::Value {
    sim.received(i)
        .into_iter()
        .rfind(|m| m["type"] == "serial")
        .expect("a serial message")
}

#[test]
fn one_writer_at_a_time_and_the_floor_frees_when_idle() {
    let mut sim = Sim::new(8);
    let (a, b) = ready(&mut sim);
    assert_eq!(last_serial(&sim, a)["state"], "open");
    sim.write_serial(a, b"PAN 10\n");
    settle(&mut sim);
    assert_eq!(writes(&sim), vec![b"PAN 10\n".to_vec()]);
    assert_eq!(last_serial(&sim, a)["you_hold"], true);
    assert_eq!(last_serial(&sim, b)["holder"], "Ann");
    sim.write_serial(b, b"TILT 5\n");
    settle(&mut sim);
    assert_eq!(writes(&sim).len(), 1, "Bob's bytes do not reach the port");
    let err = sim
        .received(b)
        .into_iter()
        .find(|m| m["type"] == "error")
        .expect("Bob is told");
    assert_eq!(err["reason"], "serial_busy");
    assert!(err["message"].as_str().unwrap().contains("Ann"));
    // Ten seconds without Ann writing: the floor is free, and everyone hears.
    for _ in 0..101 {
        sim.step(Duration::from_millis(100));
    }
    assert!(last_serial(&sim, b)["holder"].is_null());
    sim.write_serial(b, b"TILT 5\n");
    settle(&mut sim);
    assert_eq!(writes(&sim).last().unwrap(), b"TILT 5\n");
    assert_eq!(last_serial(&sim, a)["holder"], "Bob");
}

#[test]
fn the_holder_leaving_frees_the_floor_and_the_port_talks_to_everyone() {
    let mut sim = Sim::new(8);
    let (a, b) = ready(&mut sim);
    sim.write_serial(a, b"GO\n");
    settle(&mut sim);
    sim.sessions.serial_received(b"battery 87%\n");
    settle(&mut sim);
    for p in [a, b] {
        assert_eq!(sim.peers[p].serial_bytes, b"battery 87%\n", "peer {p}");
    }
    let id_a = sim.peers[a].id.unwrap();
    sim.sessions.end(id_a, EndReason::HangUp).unwrap();
    settle(&mut sim);
    assert!(last_serial(&sim, b)["holder"].is_null(), "Ann left");
    // The device vanishes: writes are refused with the reason.
    sim.sessions.set_serial(SerialView {
        state: SerialState::Absent,
        problem: Some("No such file or directory".into()),
        ..open_port()
    });
    settle(&mut sim);
    assert_eq!(last_serial(&sim, b)["state"], "absent");
    sim.write_serial(b, b"GO\n");
    settle(&mut sim);
    let err = sim
        .received(b)
        .into_iter()
        .rfind(|m| m["type"] == "error")
        .expect("told why");
    assert_eq!(err["reason"], "serial_unavailable");
    assert!(err["message"].as_str().unwrap().contains("No such file"));
}

#[test]
fn a_full_port_queue_tells_the_holder_once_until_a_write_is_queued_again() {
    let mut sim = Sim::new(8);
    let (a, b) = ready(&mut sim);
    let id = sim.peers[a].id.unwrap();
    let full = QueueFull {
        bytes: 1024,
        queued: 4000,
        limit: 4096,
    };
    for _ in 0..20 {
        sim.write_serial(a, &[b'x'; 1024]);
        settle(&mut sim);
        // The rtc task found the port's queue full each time.
        sim.sessions.serial_overflow(id, full);
    }
    settle(&mut sim);
    assert_eq!(writes(&sim).len(), 20, "the floor let each through");
    let errors = |sim: &Sim, i: usize| -> Vec<serde_json::Value> {
        sim.received(i)
            .into_iter()
            .filter(|m| m["type"] == "error")
            .collect()
    };
    let told = errors(&sim, a);
    assert_eq!(told.len(), 1, "one error for twenty drops: {told:?}");
    assert_eq!(told[0]["reason"], "serial_queue_full");
    assert!(errors(&sim, b).is_empty(), "only the writer hears of it");
    assert_eq!(sim.sessions.serial_queued(id), 20, "how many were lost");
    sim.sessions.serial_overflow(id, full);
    settle(&mut sim);
    assert_eq!(errors(&sim, a).len(), 2, "a new run of drops is told again");
}
