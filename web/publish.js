// Where the camera is published by WHIP (an SFU fans it out to more viewers than the device's
// uplink could): /api/status's `whip` list, one row per target. Pure functions first (tested in
// tests/web/publish.test.mjs), then the panel.

const WORDS = {
  live: 'live',
  connecting: 'connecting',
  offering: 'offering',
  waiting: 'retrying',
  stopping: 'stopping',
  stopped: 'stopped',
};

// "3 min", "2 h 5 min", "12 s": how long ago `sinceMs` was, at `nowMs`.
export function ago(sinceMs, nowMs) {
  const s = Math.max(0, Math.round((nowMs - sinceMs) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

// A target's row: {where, state, word, detail, problem} from one `whip` entry.
export function publishRow(t, nowMs) {
  const text = (v) => (typeof v === 'string' ? v : '');
  let where = text(t.url);
  try {
    const u = new URL(where);
    where = `${u.host}${u.pathname}`;
  } catch {
    // Shown as given.
  }
  const state = Object.hasOwn(WORDS, t.state) ? t.state : 'waiting';
  const parts = [text(t.codec)];
  if (Number.isFinite(t.since_ms)) parts.push(`${WORDS[state]} for ${ago(t.since_ms, nowMs)}`);
  if (state === 'live' && Number.isFinite(t.bitrate_kbps)) parts.push(`${t.bitrate_kbps} kbit/s`);
  if (state === 'live' && Number.isFinite(t.bwe_kbps)) parts.push(`link ≈ ${(t.bwe_kbps / 1000).toFixed(1)} Mbit/s`);
  return {
    where,
    state,
    word: WORDS[state],
    detail: parts.filter(Boolean).join(' · '),
    problem: state === 'live' ? '' : text(t.last_error),
  };
}

// Renders the panel from a status `whip` list (hidden when there are no targets).
export function renderPublish(panel, list, targets, nowMs = Date.now()) {
  const rows = Array.isArray(targets) ? targets.map((t) => publishRow(t, nowMs)) : [];
  panel.hidden = rows.length === 0;
  const items = rows.map((r) => {
    const li = document.createElement('li');
    li.className = 'publish-row';
    li.dataset.state = r.state;
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.dataset.state = r.state;
    badge.textContent = r.word;
    const where = document.createElement('span');
    where.className = 'publish-where mono';
    where.textContent = r.where;
    const detail = document.createElement('span');
    detail.className = 'publish-detail';
    detail.textContent = r.detail;
    li.append(badge, where, detail);
    if (r.problem) {
      const p = document.createElement('span');
      p.className = 'publish-problem';
      p.textContent = r.problem;
      li.append(p);
    }
    return li;
  });
  // Only when something changed: screen readers re-read a replaced list.
  const text = rows.map((r) => `${r.state}|${r.where}|${r.detail}|${r.problem}`).join('\n');
  if (list.dataset.text !== text) {
    list.dataset.text = text;
    list.replaceChildren(...items);
  }
}
