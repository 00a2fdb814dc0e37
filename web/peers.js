// The other rtcams on the LAN (/api/peers, found by mDNS): a row of cameras to open, so a
// household that opens one reaches the rest. Pure functions first (tests/web/peers.test.mjs).

// A card's content for one peer: {title, sub, href, alt, live}. `href` uses its .local name (what
// its certificate names); `alt` is the same page by address, for browsers that do not resolve
// .local names (some Android versions).
export function peerCard(p) {
  const text = (v) => (typeof v === 'string' ? v : '');
  const port = Number.isInteger(p.port) ? p.port : 8443;
  const addrs = Array.isArray(p.addresses) ? p.addresses.filter((a) => typeof a === 'string') : [];
  const v4 = addrs.find((a) => a.includes('.'));
  const host = text(p.host);
  return {
    title: text(p.name).replace(/ \([0-9a-f]{4}\)$/, '') || host || v4 || 'rtcam',
    sub: [text(p.camera), p.live === false ? 'not answering' : ''].filter(Boolean).join(' · '),
    href: host ? `https://${host}:${port}/` : v4 ? `https://${v4}:${port}/` : '',
    alt: v4 ? `https://${v4}:${port}/` : '',
    live: p.live !== false,
  };
}

export function renderPeers(panel, list, peers) {
  const cards = Array.isArray(peers) ? peers.map(peerCard).filter((c) => c.href) : [];
  panel.hidden = cards.length === 0;
  const key = cards.map((c) => `${c.title}|${c.sub}|${c.href}|${c.live}`).join('\n');
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(
    ...cards.map((c) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.className = 'peer';
      a.dataset.live = String(c.live);
      a.href = c.href;
      a.target = '_blank';
      a.rel = 'noopener';
      if (c.alt) a.title = `Also at ${c.alt}`;
      const dot = document.createElement('span');
      dot.className = 'peer-dot';
      dot.setAttribute('aria-hidden', 'true');
      const name = document.createElement('span');
      name.className = 'peer-name';
      name.textContent = c.title;
      const sub = document.createElement('span');
      sub.className = 'peer-sub';
      sub.textContent = c.sub;
      a.append(dot, name, sub);
      li.append(a);
      return li;
    }),
  );
}

// Polls /api/peers every 5 s into the panel.
export function watchPeers(panel, list) {
  const tick = async () => {
    try {
      const r = await fetch('/api/peers', { cache: 'no-store', credentials: 'same-origin' });
      if (r.ok) renderPeers(panel, list, await r.json());
    } catch {
      // Unreachable: the call's own state says so.
    }
    setTimeout(tick, 5000);
  };
  tick();
}
