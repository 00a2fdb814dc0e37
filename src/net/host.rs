//! This machine on the network: its name, its addresses, and which of
//! them may be announced on the LAN.

use std::net::IpAddr;

/// The kernel's host name (`gethostname`), if it has one.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// Every address of every interface that is up.
pub fn local_ips() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

/// Whether an address belongs to a LAN and may be announced by mDNS:
/// IPv4 link-local (169.254/16) and private (RFC 1918), IPv6 link-local
/// (fe80::/10) and unique local (fc00::/7). Never a public address, and
/// never loopback (nothing else hears it).
pub fn announceable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xffc0 == 0xfe80 || first & 0xfe00 == 0xfc00
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lan_addresses_are_announced() {
        for ip in [
            "169.254.3.4",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.20",
            "fe80::1",
            "fd12:3456::1",
            "fc00::5",
        ] {
            assert!(announceable(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "203.0.113.5",
            "172.32.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "::1",
            "2001:db8::1",
            "2a00:1450::1",
            "ff02::fb",
            "224.0.0.251",
        ] {
            assert!(!announceable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn this_machine_has_a_name() {
        assert!(hostname().is_some_and(|h| !h.is_empty()));
    }
}
