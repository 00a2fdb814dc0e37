//! What the WHIP client reads and writes of SDP text: line ends, whether
//! the receiver took our video, and the trickle fragment (RFC 8840).

/// SDP as RFC 8866 writes it: every line ended by CRLF. Some receivers
/// (simple-whip-server in front of Janus) fail on bare LF and then keep the
/// endpoint busy until it is recreated.
pub fn with_crlf(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.lines() {
        out.push_str(line.trim_end_matches('\r'));
        out.push_str("\r\n");
    }
    out
}

/// Whether an answer refused every video section we offered: port 0 (the
/// section rejected) or `a=inactive`. A receiver that does not take the
/// codec still answers 201 with such a section (Janus does).
pub fn video_refused(answer: &str) -> bool {
    let mut sections = 0;
    let mut refused = 0;
    let mut current: Option<bool> = None;
    let mut close = |current: &mut Option<bool>| {
        if let Some(r) = current.take() {
            sections += 1;
            refused += usize::from(r);
        }
    };
    for line in answer.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            close(&mut current);
            if let Some(rest) = m.strip_prefix("video ") {
                let port = rest.split_whitespace().next().unwrap_or("0");
                current = Some(port == "0");
            }
        } else if line == "a=inactive"
            && let Some(r) = current.as_mut()
        {
            *r = true;
        }
    }
    close(&mut current);
    sections == 0 || refused == sections
}

/// An offer split for trickle ICE: the offer without its candidates, and
/// an `application/trickle-ice-sdpfrag` body (RFC 8840) carrying them,
/// with our ICE credentials, under the first media section (BUNDLE).
pub fn split_candidates(offer: &str) -> (String, String) {
    let mut bare = String::with_capacity(offer.len());
    let mut candidates = Vec::new();
    let (mut group, mut ufrag, mut pwd) = (None, None, None);
    let (mut first_m, mut first_mid) = (None, None);
    for line in offer.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("a=candidate:") {
            candidates.push(line);
            continue;
        }
        if line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=group:BUNDLE") {
            group.get_or_insert(line);
        } else if line.starts_with("a=ice-ufrag:") {
            ufrag.get_or_insert(line);
        } else if line.starts_with("a=ice-pwd:") {
            pwd.get_or_insert(line);
        } else if line.starts_with("m=") {
            first_m.get_or_insert(line);
        } else if line.starts_with("a=mid:") && first_m.is_some() {
            first_mid.get_or_insert(line);
        }
        bare.push_str(line);
        bare.push_str("\r\n");
    }
    let mut frag = String::new();
    let lines = [group, ufrag, pwd, first_m, first_mid];
    for line in lines.into_iter().flatten().chain(candidates) {
        frag.push_str(line);
        frag.push_str("\r\n");
    }
    frag.push_str("a=end-of-candidates\r\n");
    (bare, frag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 108\r\na=mid:1\r\na=recvonly\r\n";

    #[test]
    fn lines_end_in_crlf() {
        assert_eq!(
            with_crlf("v=0\nm=video 9\r\na=x"),
            "v=0\r\nm=video 9\r\na=x\r\n"
        );
    }

    #[test]
    fn a_video_section_answered_inactive_or_port_0_is_a_refusal() {
        assert!(!video_refused(ANSWER));
        let inactive = ANSWER.replace("a=mid:1\r\na=recvonly", "a=mid:1\r\na=inactive");
        assert!(video_refused(&inactive));
        let port0 = ANSWER.replace("m=video 9 ", "m=video 0 ");
        assert!(video_refused(&port0));
        // Audio refused alone is not a video refusal.
        let audio_off = ANSWER.replace("a=mid:0\r\na=recvonly", "a=mid:0\r\na=inactive");
        assert!(!video_refused(&audio_off));
        let no_video = ANSWER.split("m=video").next().unwrap().to_string();
        assert!(video_refused(&no_video));
    }

    #[test]
    fn trickle_moves_the_candidates_into_a_fragment() {
        let offer = "v=0\r\na=group:BUNDLE 0 1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 108\r\na=mid:0\r\na=ice-ufrag:uf\r\na=ice-pwd:pw\r\n\
            a=candidate:1 1 udp 2130706175 10.0.0.1 8443 typ host\r\na=end-of-candidates\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n";
        let (bare, frag) = split_candidates(offer);
        assert!(!bare.contains("candidate"), "{bare}");
        assert!(bare.contains("a=ice-ufrag:uf\r\n") && bare.contains("m=audio"));
        assert_eq!(
            frag,
            "a=group:BUNDLE 0 1\r\na=ice-ufrag:uf\r\na=ice-pwd:pw\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 108\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706175 10.0.0.1 8443 typ host\r\na=end-of-candidates\r\n"
        );
    }
}
