//! The one UDP socket and its addresses: which addresses viewers are
//! told about, how real local addresses map onto them, and which address a
//! reply leaves from.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use quinn_udp::UdpSocketState;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Which addresses viewers are told about, and how real local addresses map
/// onto them.
#[derive(Debug, Clone)]
pub struct AddressMap {
    candidates: Vec<SocketAddr>,
    advertised: bool,
}

impl AddressMap {
    /// `bound` is the socket's address; `advertise` overrides what goes in
    /// candidates (1:1 NAT, port forwards); `local_ips` are the machine's
    /// interface addresses, used when bound to the wildcard.
    pub fn new(bound: SocketAddr, advertise: &[IpAddr], local_ips: &[IpAddr]) -> Self {
        let port = bound.port();
        let (ips, advertised): (Vec<IpAddr>, bool) = if !advertise.is_empty() {
            (advertise.to_vec(), true)
        } else if bound.ip().is_unspecified() {
            let ips = local_ips
                .iter()
                .copied()
                .filter(|ip| ip.is_ipv4() == bound.is_ipv4())
                .filter(|ip| match ip {
                    // Link-local v6 needs a scope id that SDP cannot carry.
                    IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                    IpAddr::V4(_) => true,
                })
                .collect();
            (ips, false)
        } else {
            (vec![bound.ip()], false)
        };
        let mut candidates: Vec<SocketAddr> = Vec::new();
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            if !candidates.contains(&addr) {
                candidates.push(addr);
            }
        }
        AddressMap {
            candidates,
            advertised,
        }
    }

    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// The candidate a datagram that really arrived at `dst` was sent to.
    pub fn to_candidate(&self, dst: SocketAddr) -> SocketAddr {
        if self.candidates.contains(&dst) || !self.advertised {
            return dst;
        }
        self.candidates
            .iter()
            .find(|c| c.is_ipv4() == dst.is_ipv4())
            .or(self.candidates.first())
            .copied()
            .unwrap_or(dst)
    }

    /// The local address to send from for a transmit str0m sourced at
    /// `candidate`: the same interface the viewer reached us on. Advertised
    /// addresses are not ours, so the kernel picks.
    pub fn source_ip(&self, candidate: SocketAddr) -> Option<IpAddr> {
        (!self.advertised && !candidate.ip().is_unspecified()).then_some(candidate.ip())
    }
}

/// The bound UDP socket with its quinn-udp state (pktinfo, GRO).
pub struct MediaSocket {
    pub(super) socket: UdpSocket,
    pub(super) state: UdpSocketState,
    pub(super) local: SocketAddr,
}

impl MediaSocket {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let state = UdpSocketState::new((&std).into())?;
        let local = std.local_addr()?;
        let socket = UdpSocket::from_std(std)?;
        Ok(MediaSocket {
            socket,
            state,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(super) async fn send(&self, to: SocketAddr, from: Option<IpAddr>, data: &[u8]) {
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: from,
        };
        for _ in 0..3 {
            let r = self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            });
            match r {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("UDP send to {to} failed: {e}");
                    return;
                }
            }
        }
    }
}

/// The local address each viewer's datagrams arrived at, so that replies
/// leave from that very address. With `--advertise` the candidate is not a
/// local address, and the kernel's own choice may be another interface's:
/// Firefox ignores STUN answers from an address it did not send to (seen in
/// a network namespace whose veth peer is also local). Only addresses a
/// viewer's datagram was taken from are learned, and the table is bounded.
#[derive(Debug, Default)]
pub struct ReplyFrom(HashMap<SocketAddr, IpAddr>);

impl ReplyFrom {
    const MAX: usize = 4096;

    pub fn learn(&mut self, peer: SocketAddr, local: IpAddr) {
        if self.0.len() >= Self::MAX && !self.0.contains_key(&peer) {
            self.0.clear();
        }
        self.0.insert(peer, local);
    }

    pub fn get(&self, peer: SocketAddr) -> Option<IpAddr> {
        self.0.get(&peer).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcard_bind_lists_every_interface_of_its_family() {
        let m = AddressMap::new(
            "0.0.0.0:8443".parse().unwrap(),
            &[],
            &[
                ip("127.0.0.1"),
                ip("192.168.1.20"),
                ip("fe80::1"),
                ip("2001:db8::2"),
            ],
        );
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:8443".parse().unwrap(),
            "192.168.1.20:8443".parse().unwrap(),
        ];
        assert_eq!(m.candidates(), &want[..]);
        let dst: SocketAddr = "192.168.1.20:8443".parse().unwrap();
        assert_eq!(m.to_candidate(dst), dst);
        assert_eq!(m.source_ip(dst), Some(ip("192.168.1.20")));
    }

    #[test]
    fn advertised_addresses_replace_real_ones() {
        let m = AddressMap::new(
            "0.0.0.0:5000".parse().unwrap(),
            &[ip("127.0.0.1")],
            &[ip("10.0.2.15")],
        );
        let cand: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(m.candidates(), &[cand]);
        // QEMU's forward delivers to the guest's own address.
        assert_eq!(m.to_candidate("10.0.2.15:5000".parse().unwrap()), cand);
        assert_eq!(m.source_ip(cand), None, "the kernel picks the real source");
    }

    #[test]
    fn replies_leave_from_where_the_viewer_reached_us() {
        let mut r = ReplyFrom::default();
        let peer: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(r.get(peer), None);
        r.learn(peer, ip("198.51.100.2"));
        assert_eq!(r.get(peer), Some(ip("198.51.100.2")));
        for i in 0..ReplyFrom::MAX as u16 + 10 {
            r.learn(SocketAddr::new(ip("10.0.0.1"), i), ip("10.0.0.2"));
        }
        assert!(r.0.len() <= ReplyFrom::MAX, "bounded");
    }

    #[test]
    fn specific_bind_is_its_own_candidate() {
        let m = AddressMap::new("127.0.0.1:7000".parse().unwrap(), &[], &[ip("10.1.1.1")]);
        assert_eq!(
            m.candidates(),
            &["127.0.0.1:7000".parse::<SocketAddr>().unwrap()]
        );
    }
}
