// Recordings and motion on the page: the Recordings panel (what the device records and why not,
// a timeline of its clips and motion events, newest first, each playable in place), a "Motion"
// badge over the live picture while something moves, and the motion zones drawn on the picture
// (edited there by whoever may set them). Pure functions first (tests/web/recordings.test.mjs),
// then the panel, the badge and the zones editor.
//
// The device's side:
// - {"type":"motion","id","state":"started","at","area","snapshot"} and
//   {"type":"motion","id","state":"ended","at","lasted_ms"} on the `rtcam` data channel (app.js
//   routes them to noteMotion);
// - GET /api/events: the last 100 motion events, newest first ({id, started_ms, ended_ms, area,
//   snapshot, clip});
// - GET /api/recordings: {mode, state, problem, may_delete, clips: [{id, start_ms, duration_ms,
//   size, trigger, thumbnail, recording}]}; /api/recordings/ID.mp4 plays a clip (?download=1 saves
//   it), DELETE /api/recordings/ID removes one;
// - GET / PUT /api/motion/zones: {zones: [{x, y, w, h, kind}], may_set}, fractions of the picture.
// Everything the device sends is only ever put in the page as text (textContent) or as one of its
// own URLs (checked below): a message cannot point the page anywhere else.

export const MAX_ZONES = 16; // what PUT /api/motion/zones takes
export const MIN_ZONE = 0.02; // the smallest side of a zone drawn here (2 % of the picture)
const REFRESH_MS = 10000;
const SOON_MS = 600; // motion messages come in pairs and bursts: one refresh for a burst
const ZONE_STEP = 0.01; // what an arrow key moves or grows a zone by
const SHOW_KEY = 'rtcam.zones';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
// A clip's name as the device makes them (20261206-153012-motion): safe in a path as it is.
const CLIP_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
// Only the device's own pictures: thumbnails and event snapshots.
const PICTURE_URL = /^\/api\/(?:events|recordings)\/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.jpg$/;

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
// A time a Date can hold (new Date(1e300) is Invalid Date, and toISOString would throw).
const isTime = (v) => isNum(v) && Math.abs(v) <= 8.64e15;
const clamp01 = (v) => (isNum(v) ? Math.min(1, Math.max(0, v)) : 0);
const pad = (n) => String(n).padStart(2, '0');

// "12 s", "1 min 4 s", "1 h 5 min": a length of time, to the second under an hour (to the minute
// above). '' for no length (null, negative, not a number).
export function formatDuration(ms) {
  if (!isNum(ms) || ms < 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  const m = Math.round(s / 60);
  return m % 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m / 60} h`;
}

// "812 B", "340 KB", "3.4 MB", "250 MB", "1.2 GB" (1024-based, like the chat's picture sizes). A
// figure that rounds up to 1024 of one unit is shown as the next. '' for no size.
export function formatSize(bytes) {
  if (!isNum(bytes) || bytes < 0) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  for (let u = 0; ; u++) {
    const text = u >= 2 && v < 99.95 ? v.toFixed(1) : String(Math.round(v));
    if (Number(text) < 1024 || u === units.length - 1) return `${text} ${units[u]}`;
    v /= 1024;
  }
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

// "15:30:12" today, "yesterday 15:30:12", "6 Dec 15:30:12", "6 Dec 2025 15:30:12" (local time, as
// seen at `nowMs`). '' for no time.
export function whenText(ms, nowMs = Date.now()) {
  if (!isTime(ms)) return '';
  const d = new Date(ms);
  const now = new Date(isTime(nowMs) ? nowMs : Date.now());
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (sameDay(d, now)) return time;
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (sameDay(d, yesterday)) return `yesterday ${time}`;
  const year = d.getFullYear() === now.getFullYear() ? '' : ` ${d.getFullYear()}`;
  return `${d.getDate()} ${MONTHS[d.getMonth()]}${year} ${time}`;
}

const MODES = { motion: 'Recording on motion', continuous: 'Recording continuously' };

// The panel's one line from /api/recordings: {text, kind, note}. kind: 'off' | 'idle' |
// 'recording' | 'stopped' (shown as a warning) | 'unknown'; note: a problem the device reports
// while it still records (say the disk getting full), '' without one.
export function stateLine(r) {
  const unknown = { text: 'Recording state unknown', kind: 'unknown', note: '' };
  if (!r || typeof r !== 'object') return unknown;
  const problem = typeof r.problem === 'string' ? r.problem.trim() : '';
  if (r.state === 'stopped') return { text: problem ? `Stopped: ${problem}` : 'Stopped', kind: 'stopped', note: '' };
  if (r.mode === 'off' || r.state === 'off') return { text: 'Recording off', kind: 'off', note: '' };
  if (typeof r.mode !== 'string' || !Object.hasOwn(MODES, r.mode)) return unknown;
  const state = r.state === 'recording' || r.state === 'idle' ? r.state : null;
  return { text: state ? `${MODES[r.mode]} · ${state}` : MODES[r.mode], kind: state || 'unknown', note: problem };
}

const picture = (v) => (typeof v === 'string' && PICTURE_URL.test(v) ? v : null);

// One clip from /api/recordings as the page uses it, or null when it is unusable.
function cleanClip(c) {
  if (!c || typeof c !== 'object' || typeof c.id !== 'string' || !CLIP_ID.test(c.id) || !isTime(c.start_ms)) {
    return null;
  }
  return {
    id: c.id,
    start_ms: c.start_ms,
    duration_ms: isNum(c.duration_ms) && c.duration_ms >= 0 ? c.duration_ms : null,
    size: isNum(c.size) && c.size >= 0 ? c.size : null,
    trigger: c.trigger === 'motion' || c.trigger === 'continuous' ? c.trigger : '',
    thumbnail: picture(c.thumbnail),
    recording: c.recording === true,
  };
}

// One motion event (from /api/events, or made from a motion message), or null when unusable.
function cleanEvent(e) {
  if (!e || typeof e !== 'object' || !Number.isSafeInteger(e.id) || e.id < 0 || !isTime(e.started_ms)) return null;
  return {
    id: e.id,
    started_ms: e.started_ms,
    ended_ms: isTime(e.ended_ms) && e.ended_ms >= e.started_ms ? e.ended_ms : null,
    area: isNum(e.area) ? clamp01(e.area) : null,
    snapshot: picture(e.snapshot),
    clip: typeof e.clip === 'string' && CLIP_ID.test(e.clip) ? e.clip : null,
  };
}

// The timeline: clips and motion events in one list, newest first. An event recorded in a clip
// is folded into that clip's item. Each item is {key, kind: 'clip' | 'event', id, at, when, iso,
// duration, size, trigger, note, meta (the line under the time), thumb, alt, recording, ongoing,
// events (motion events in a clip), play, download, remove (URLs, null when not possible)}.
// Entries of the wrong shape are left out; the first of two with one id is kept.
export function timelineItems(clips, events, nowMs = Date.now()) {
  const hosts = new Map(); // clip id -> {clip, events}
  for (const c of Array.isArray(clips) ? clips : []) {
    const clip = cleanClip(c);
    if (clip && !hosts.has(clip.id)) hosts.set(clip.id, { clip, events: [] });
  }
  const items = [];
  const seen = new Set();
  for (const raw of Array.isArray(events) ? events : []) {
    const e = cleanEvent(raw);
    if (!e || seen.has(e.id)) continue;
    seen.add(e.id);
    const host = e.clip === null ? undefined : hosts.get(e.clip);
    if (host) host.events.push(e);
    else items.push(eventItem(e, nowMs));
  }
  for (const h of hosts.values()) items.push(clipItem(h.clip, h.events, nowMs));
  // Newest first; at the same moment, the clip before the event.
  return items.sort((a, b) => b.at - a.at || (a.kind === b.kind ? 0 : a.kind === 'clip' ? -1 : 1));
}

function clipItem(c, events, nowMs) {
  const when = whenText(c.start_ms, nowMs);
  const path = `/api/recordings/${encodeURIComponent(c.id)}`;
  const duration = c.recording ? 'recording…' : formatDuration(c.duration_ms);
  const size = formatSize(c.size);
  let trigger = c.trigger || (events.length ? 'motion' : '');
  if (trigger === 'continuous' && events.length) trigger = 'continuous, with motion';
  const shot = events.find((e) => e.snapshot);
  return {
    key: `clip:${c.id}`,
    kind: 'clip',
    id: c.id,
    at: c.start_ms,
    when,
    iso: new Date(c.start_ms).toISOString(),
    duration,
    size,
    trigger,
    note: '',
    meta: [duration, size, trigger].filter(Boolean).join(' · '),
    thumb: c.thumbnail || (shot ? shot.snapshot : null),
    alt: `Recording from ${when}`,
    recording: c.recording,
    ongoing: c.recording,
    events: events.length,
    // A clip still being written is not a whole MP4 yet: it plays once it is done.
    play: c.recording ? null : `${path}.mp4`,
    download: c.recording ? null : `${path}.mp4?download=1`,
    remove: c.recording ? null : path,
  };
}

function eventItem(e, nowMs) {
  const when = whenText(e.started_ms, nowMs);
  const ongoing = e.ended_ms === null;
  const duration = ongoing ? '' : formatDuration(e.ended_ms - e.started_ms);
  // (A clip named by the event but not listed was deleted, or aged out.)
  const note = ongoing ? 'motion now' : e.clip ? 'motion, clip no longer kept' : 'motion, not recorded';
  return {
    key: `event:${e.id}`,
    kind: 'event',
    id: e.id,
    at: e.started_ms,
    when,
    iso: new Date(e.started_ms).toISOString(),
    duration,
    size: '',
    trigger: 'motion',
    note,
    meta: [note, duration].filter(Boolean).join(' · '),
    thumb: e.snapshot,
    alt: `Motion at ${when}`,
    recording: false,
    ongoing,
    events: 1,
    area: e.area,
    play: null,
    download: null,
    remove: null,
  };
}

// A motion message from the channel: {id, state: 'started' | 'ended', at, area, snapshot,
// lastedMs}, or null when it is not one.
export function motionEvent(m) {
  if (!m || typeof m !== 'object' || m.type !== 'motion') return null;
  if (!Number.isSafeInteger(m.id) || m.id < 0 || !isTime(m.at)) return null;
  if (m.state !== 'started' && m.state !== 'ended') return null;
  return {
    id: m.id,
    state: m.state,
    at: m.at,
    area: isNum(m.area) ? clamp01(m.area) : null,
    snapshot: picture(m.snapshot),
    lastedMs: isNum(m.lasted_ms) && m.lasted_ms >= 0 ? m.lasted_ms : null,
  };
}

// The events list (newest first, as /api/events has it) after one motion message: a start puts
// the event first (once), an end closes it. Returns a new array; a message that is not a motion
// message changes nothing.
export function applyMotion(events, m) {
  const list = Array.isArray(events) ? events.filter((e) => e && typeof e === 'object') : [];
  const e = motionEvent(m);
  if (!e) return list;
  const i = list.findIndex((x) => x.id === e.id);
  if (e.state === 'started') {
    if (i >= 0) return list;
    return [{ id: e.id, started_ms: e.at, ended_ms: null, area: e.area, snapshot: e.snapshot, clip: null }, ...list];
  }
  if (i < 0) {
    // The start came before this page listened: the end says when it began.
    if (e.lastedMs === null) return list;
    const started = { id: e.id, started_ms: e.at - e.lastedMs, ended_ms: e.at, area: null, snapshot: null, clip: null };
    return [started, ...list].sort((a, b) => (b.started_ms || 0) - (a.started_ms || 0));
  }
  const out = list.slice();
  out[i] = { ...out[i], ended_ms: e.at };
  return out;
}

// Where a picture of videoW x videoH is drawn in an element of elementW x elementH with
// object-fit: contain (bars above and below, or on the sides): {x, y, w, h} in the element's
// pixels. Without the picture's size, the whole element; without an element, nothing.
export function contentRect(elementW, elementH, videoW, videoH) {
  const ok = (v) => isNum(v) && v > 0;
  if (!ok(elementW) || !ok(elementH)) return { x: 0, y: 0, w: 0, h: 0 };
  if (!ok(videoW) || !ok(videoH)) return { x: 0, y: 0, w: elementW, h: elementH };
  const scale = Math.min(elementW / videoW, elementH / videoH);
  const w = videoW * scale;
  const h = videoH * scale;
  return { x: (elementW - w) / 2, y: (elementH - h) / 2, w, h };
}

// A point in the element's pixels as fractions of the picture (rect: contentRect's), held inside
// the picture (a drag that leaves it stops at its edge).
export function toFraction(px, py, rect) {
  if (!rect || !(rect.w > 0) || !(rect.h > 0)) return { x: 0, y: 0 };
  return { x: clamp01((px - rect.x) / rect.w), y: clamp01((py - rect.y) / rect.h) };
}

// The other way: fractions of the picture to the element's pixels.
export function fromFraction(fx, fy, rect) {
  if (!rect || !isNum(rect.w) || !isNum(rect.h)) return { x: 0, y: 0 };
  return { x: rect.x + clamp01(fx) * rect.w, y: rect.y + clamp01(fy) * rect.h };
}

// The rectangle between an anchor (x0, y0) and a pointer (x1, y1), fractions of the picture:
// {x, y, w, h} inside 0..1, each side at least `min` (grown from the anchor towards the pointer,
// and pushed back inside at an edge).
export function normalizeRect(x0, y0, x1, y1, min = MIN_ZONE) {
  const least = isNum(min) ? Math.min(1, Math.max(0, min)) : MIN_ZONE;
  const side = (a, b) => {
    const from = clamp01(a);
    const to = clamp01(b);
    let lo = Math.min(from, to);
    let hi = Math.max(from, to);
    if (hi - lo < least) {
      if (to >= from) [lo, hi] = [from, from + least];
      else [lo, hi] = [from - least, from];
      if (hi > 1) [lo, hi] = [1 - least, 1];
      if (lo < 0) [lo, hi] = [0, least];
    }
    return [lo, hi - lo];
  };
  const [x, w] = side(x0, x1);
  const [y, h] = side(y0, y1);
  return { x, y, w, h };
}

// A zone moved by (dx, dy), fractions, kept whole inside the picture.
export function moveRect(z, dx, dy) {
  const x = Math.min(1 - z.w, Math.max(0, z.x + (isNum(dx) ? dx : 0)));
  const y = Math.min(1 - z.h, Math.max(0, z.y + (isNum(dy) ? dy : 0)));
  return { ...z, x, y };
}

// The usable zones of a list (from the device, or drawn here): at most MAX_ZONES of {x, y, w, h,
// kind: 'watch' | 'ignore'}, finite, not empty and inside the picture. Others are left out.
export function validZones(list) {
  if (!Array.isArray(list)) return [];
  const out = [];
  const EPS = 1e-9; // the sum of two fractions may land a hair past 1
  for (const z of list) {
    if (out.length >= MAX_ZONES) break;
    if (!z || typeof z !== 'object' || (z.kind !== 'watch' && z.kind !== 'ignore')) continue;
    const { x, y, w, h } = z;
    if (![x, y, w, h].every(isNum)) continue;
    if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > 1 + EPS || y + h > 1 + EPS) continue;
    out.push({ x, y, w: Math.min(w, 1 - x), h: Math.min(h, 1 - y), kind: z.kind });
  }
  return out;
}

// What PUT /api/motion/zones gets: the valid zones, to 4 decimals (a tenth of a pixel on a 1080p
// picture). Both edges are rounded (a zone keeps its size), and none ends past the picture's edge,
// not even by the last bit of a float sum.
export function zonesForSave(list) {
  const r4 = (v) => Math.round(v * 1e4) / 1e4;
  const side = (from, size) => {
    const lo = Math.min(r4(from), 1 - 1e-4);
    let len = Math.max(1e-4, r4(Math.min(1, r4(from + size)) - lo));
    if (lo + len > 1) len = r4(len - 1e-4);
    return [lo, len];
  };
  return validZones(list).map((z) => {
    const [x, w] = side(z.x, z.w);
    const [y, h] = side(z.y, z.h);
    return { x, y, w, h, kind: z.kind };
  });
}

// "none: the whole picture is watched", "2 watched, 1 ignored", "1 ignored, the rest watched".
export function zonesSummary(zones) {
  const list = validZones(zones);
  const watch = list.filter((z) => z.kind === 'watch').length;
  const ignore = list.length - watch;
  if (!list.length) return 'none: the whole picture is watched';
  if (!watch) return `${ignore} ignored, the rest watched`;
  return ignore ? `${watch} watched, ${ignore} ignored` : `${watch} watched`;
}

// ---------------------------------------------------------------- the page

// What a test (or a person at the console) may read (window.rtcam.recordings).
export const recordingsState = {
  available: false, // the device answered one of the three APIs
  recordings: null, // the last /api/recordings answer, as sent
  line: null, // stateLine of it
  mayDelete: false,
  events: [], // motion events, newest first (/api/events, with the channel's since)
  items: [], // the timeline as shown
  motion: { active: [], announced: 0, last: null }, // event ids under way; starts announced; last message
  playing: null, // the key of the item whose clip plays
  error: '', // why the last refresh failed, '' when it did not
  refreshes: 0,
  zones: {
    list: [], // saved on the device
    maySet: false,
    loaded: false,
    show: true, // drawn on the picture (the checkbox)
    editing: false,
    draft: [], // while editing
    selected: -1,
    kind: 'watch', // for a new zone
    error: '',
    saving: false,
  },
};

let el = null; // the page's elements, once watchRecordings ran
let busy = false;
let again = false;
let soonTimer = null;
const fromChannel = new Map(); // event id -> when its message came (kept until the device lists it)

function text(node, value) {
  if (node.textContent !== value) node.textContent = value;
}

function svgEl(tag, attrs = {}) {
  const n = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

async function getJson(url) {
  const r = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) throw Object.assign(new Error(`the camera answered ${r.status}`), { status: r.status });
  return r.json();
}

// The device's reason for a refusal (its body, short), or what it answered.
async function reasonOf(r) {
  let body = '';
  try {
    body = (await r.text()).trim().slice(0, 200);
  } catch {
    /* no body */
  }
  return body || `the camera answered ${r.status}`;
}

const why = (e) => (e && e.message ? e.message : String(e));

// ---------------------------------------------------------------- refreshing

async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  const startedAt = Date.now();
  try {
    const [rec, ev] = await Promise.allSettled([getJson('/api/recordings'), getJson('/api/events')]);
    recordingsState.refreshes++;
    if (rec.status === 'fulfilled' && rec.value && typeof rec.value === 'object') {
      recordingsState.available = true;
      recordingsState.recordings = rec.value;
      recordingsState.line = stateLine(rec.value);
      recordingsState.mayDelete = rec.value.may_delete === true;
    }
    if (ev.status === 'fulfilled' && Array.isArray(ev.value)) {
      recordingsState.available = true;
      takeEvents(ev.value, startedAt);
    }
    // A device without recordings (404) shows no panel; other failures are said once, calmly.
    const failed = [rec, ev].find((x) => x.status === 'rejected' && x.reason && x.reason.status !== 404);
    recordingsState.error = failed ? why(failed.reason) : '';
  } catch (e) {
    recordingsState.error = why(e); // said in the panel, never thrown every 10 s
  } finally {
    busy = false;
  }
  render();
  if (again) {
    again = false;
    soon();
  }
}

// The device's events, with those the channel told of since the request went out (not in its
// answer yet). An event the device says has ended is no longer under way.
function takeEvents(answer, askedAt) {
  const list = answer.filter((e) => e && typeof e === 'object');
  const ids = new Set(list.map((e) => e.id));
  const kept = recordingsState.events.filter((e) => !ids.has(e.id) && (fromChannel.get(e.id) || 0) >= askedAt);
  for (const id of fromChannel.keys()) if (ids.has(id)) fromChannel.delete(id);
  recordingsState.events = [...kept, ...list];
  const ended = new Set(list.filter((e) => e.ended_ms !== null && e.ended_ms !== undefined).map((e) => e.id));
  const active = recordingsState.motion.active.filter((id) => !ended.has(id));
  if (active.length !== recordingsState.motion.active.length) {
    recordingsState.motion.active = active;
    renderBadge(false);
  }
}

async function loadZones() {
  const z = recordingsState.zones;
  if (z.editing) return; // the owner's drawing is not replaced under them
  try {
    const r = await getJson('/api/motion/zones');
    if (z.editing) return;
    z.list = validZones(r && r.zones);
    z.maySet = Boolean(r && r.may_set === true);
    z.loaded = true;
    recordingsState.available = true;
  } catch {
    // No zones on this device (404), or unreachable: the panel's line says the rest.
  }
  renderZonesRow();
  drawZones();
}

function tick() {
  // A hidden tab asks nothing; it catches up when it shows again.
  if (!document.hidden) {
    refresh();
    loadZones();
  }
  setTimeout(tick, REFRESH_MS);
}

function soon() {
  if (soonTimer) return;
  soonTimer = setTimeout(() => {
    soonTimer = null;
    refresh();
  }, SOON_MS);
}

// ---------------------------------------------------------------- motion messages

// One {"type":"motion"} message from the rtcam channel (app.js routes them here).
export function noteMotion(m) {
  const e = motionEvent(m);
  if (!e) return;
  const motion = recordingsState.motion;
  motion.last = m;
  recordingsState.events = applyMotion(recordingsState.events, m);
  fromChannel.set(e.id, Date.now());
  let announce = false;
  if (e.state === 'started' && !motion.active.includes(e.id)) {
    announce = motion.active.length === 0; // one announcement while something moves
    motion.active = [...motion.active, e.id];
  } else if (e.state === 'ended') {
    motion.active = motion.active.filter((id) => id !== e.id);
  }
  if (!el) return;
  renderBadge(announce);
  renderTimeline();
  soon();
}

// The channel closed (the call ended): what moved is no longer seen live.
export function clearMotion() {
  recordingsState.motion.active = [];
  if (el) renderBadge(false);
}

function renderBadge(announce) {
  if (!el) return;
  const on = recordingsState.motion.active.length > 0;
  el.badge.dataset.on = String(on);
  // The badge's text is a live region: set once per start (read out), emptied at the end (not).
  if (!on) text(el.badgeText, '');
  else if (announce || !el.badgeText.textContent) {
    el.badgeText.textContent = 'Motion';
    if (announce) recordingsState.motion.announced++;
  }
}

// ---------------------------------------------------------------- the panel

function render() {
  if (!el) return;
  el.panel.hidden = !recordingsState.available;
  const rec = recordingsState.recordings;
  const line = rec ? recordingsState.line : null;
  el.state.hidden = !line;
  if (line) {
    text(el.state, line.text);
    el.state.dataset.kind = line.kind;
    el.state.title = line.text;
  }
  const note = line && line.note ? line.note : '';
  text(el.problem, note);
  el.problem.hidden = !note;
  const err = recordingsState.error ? `Could not refresh: ${recordingsState.error}. Trying again every 10 s.` : '';
  text(el.note, err);
  el.note.hidden = !err;
  renderTimeline();
  renderZonesRow();
}

function renderTimeline() {
  if (!el) return;
  const rec = recordingsState.recordings;
  const items = timelineItems(rec && rec.clips, recordingsState.events);
  recordingsState.items = items;
  const list = el.list;
  const old = new Map();
  for (const li of list.children) old.set(li.dataset.key, li);
  const keep = new Set(items.map((i) => i.key));
  // Keyed: an item that stays keeps its element (its picture, the focus, a playing clip).
  for (const [key, li] of old) {
    if (keep.has(key)) continue;
    if (key === recordingsState.playing) {
      // Deleted elsewhere while it plays here: it stays until its player is closed.
      li.dataset.gone = 'true';
      keep.add(key);
      continue;
    }
    li.remove();
    old.delete(key);
  }
  // In order, moving an element only when it is out of place (new ones go in before the cursor):
  // a playing <video> is never taken out of the page needlessly.
  let at = list.firstElementChild;
  for (const item of items) {
    let li = old.get(item.key);
    if (li) updateItem(li, item);
    else li = makeItem(item);
    if (li === at) at = li.nextElementSibling;
    else list.insertBefore(li, at);
  }
  list.dataset.empty = String(items.length === 0);
}

function makeItem(item) {
  const li = document.createElement('li');
  li.className = 'rec-item';
  li.dataset.key = item.key;
  const fig = document.createElement('div');
  fig.className = 'rec-thumb';
  const img = document.createElement('img');
  img.loading = 'lazy';
  img.decoding = 'async';
  img.addEventListener('error', () => (fig.dataset.state = 'none'));
  img.addEventListener('load', () => (fig.dataset.state = 'loaded'));
  fig.append(img);
  const body = document.createElement('div');
  body.className = 'rec-body';
  const when = document.createElement('time');
  when.className = 'rec-when';
  const meta = document.createElement('p');
  meta.className = 'rec-meta';
  const actions = document.createElement('div');
  actions.className = 'rec-actions';
  body.append(when, meta, actions);
  li.append(fig, body);
  updateItem(li, item);
  return li;
}

function updateItem(li, item) {
  const may = recordingsState.mayDelete;
  const sig = [item.when, item.meta, item.thumb, item.alt, item.play, item.remove && may, item.ongoing].join('|');
  li.dataset.kind = item.kind;
  li.dataset.ongoing = String(item.ongoing);
  delete li.dataset.gone;
  if (li.dataset.sig === sig) return;
  li.dataset.sig = sig;
  const fig = li.querySelector('.rec-thumb');
  const img = fig.querySelector('img');
  if (item.thumb) {
    if (img.getAttribute('src') !== item.thumb) {
      fig.dataset.state = 'loading';
      img.src = item.thumb;
    }
    img.alt = item.alt;
    img.hidden = false;
  } else {
    fig.dataset.state = 'none';
    img.removeAttribute('src');
    img.alt = '';
    img.hidden = true;
  }
  const when = li.querySelector('.rec-when');
  when.textContent = item.when;
  when.dateTime = item.iso;
  text(li.querySelector('.rec-meta'), item.meta);
  const actions = li.querySelector('.rec-actions');
  const buttons = [];
  if (item.play) {
    const play = document.createElement('button');
    play.type = 'button';
    play.className = 'btn btn-ghost btn-small rec-play';
    play.textContent = 'Play';
    play.setAttribute('aria-label', `Play the recording from ${item.when}`);
    const playing = recordingsState.playing === item.key;
    play.setAttribute('aria-expanded', String(playing));
    if (playing) play.setAttribute('aria-controls', 'rec-player');
    play.addEventListener('click', () => togglePlayer(li, item));
    const down = document.createElement('a');
    down.className = 'btn btn-ghost btn-small';
    down.href = item.download;
    down.download = '';
    down.textContent = 'Download';
    down.setAttribute('aria-label', `Download the recording from ${item.when}`);
    buttons.push(play, down);
  }
  if (item.remove && may) {
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'btn btn-ghost btn-small rec-delete';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete the recording from ${item.when}`);
    del.addEventListener('click', () => deleteClip(li, item, del));
    buttons.push(del);
  }
  // The focus stays on a button that is made again (the same place in the row).
  const focused = actions.contains(document.activeElement) ? [...actions.children].indexOf(document.activeElement) : -1;
  actions.replaceChildren(...buttons);
  actions.hidden = !buttons.length;
  if (focused >= 0 && buttons.length) buttons[Math.min(focused, buttons.length - 1)].focus();
}

// ---------------------------------------------------------------- playing a clip

function togglePlayer(li, item) {
  if (recordingsState.playing === item.key) {
    closePlayer(true);
    return;
  }
  closePlayer(false);
  const box = document.createElement('div');
  box.className = 'rec-player';
  box.id = 'rec-player';
  const v = document.createElement('video');
  v.className = 'rec-video';
  v.controls = true;
  v.playsInline = true;
  v.preload = 'metadata';
  v.autoplay = true; // Play was pressed: it plays (a gesture, so with sound)
  v.src = item.play;
  const bar = document.createElement('div');
  bar.className = 'rec-player-bar';
  const title = document.createElement('p');
  title.className = 'rec-player-title';
  title.textContent = `${item.when}${item.duration ? ` · ${item.duration}` : ''}`;
  v.addEventListener('error', () => {
    title.textContent = `${item.when}: this browser cannot play the clip; Download saves it.`;
    box.dataset.state = 'error';
  });
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'icon-btn';
  close.setAttribute('aria-label', 'Close the player');
  close.title = 'Close the player';
  const x = svgEl('svg', { class: 'icon', viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' });
  x.append(svgEl('path', { d: 'M6 6l12 12M18 6 6 18' }));
  close.append(x);
  close.addEventListener('click', () => closePlayer(true));
  bar.append(title, close);
  box.append(v, bar);
  li.append(box);
  recordingsState.playing = item.key;
  const play = li.querySelector('.rec-play');
  if (play) {
    play.setAttribute('aria-controls', 'rec-player');
    play.setAttribute('aria-expanded', 'true');
  }
  const p = v.play();
  if (p && p.catch) p.catch(() => {}); // without a gesture it waits for its own play button
  v.focus();
}

function closePlayer(focusBack) {
  const key = recordingsState.playing;
  if (!key || !el) return;
  recordingsState.playing = null;
  const box = document.getElementById('rec-player');
  const li = box ? box.closest('.rec-item') : null;
  if (box) {
    const v = box.querySelector('video');
    v.pause();
    v.removeAttribute('src');
    v.load(); // lets go of the connection to the clip
    box.remove();
  }
  if (!li) return;
  if (li.dataset.gone === 'true') {
    li.remove();
    return;
  }
  const play = li.querySelector('.rec-play');
  if (play) {
    play.setAttribute('aria-expanded', 'false');
    play.removeAttribute('aria-controls');
    if (focusBack) play.focus();
  }
}

async function deleteClip(li, item, btn) {
  if (btn.getAttribute('aria-busy') === 'true') return;
  if (!window.confirm(`Delete the recording from ${item.when}? It cannot be brought back.`)) return;
  btn.setAttribute('aria-busy', 'true');
  let said = '';
  try {
    const r = await fetch(item.remove, { method: 'DELETE', cache: 'no-store', credentials: 'same-origin' });
    if (r.status === 403) said = 'This login may not delete recordings.';
    else if (!r.ok && r.status !== 404) said = `Not deleted: ${await reasonOf(r)}`; // 404: gone already
  } catch (e) {
    said = `Not deleted: ${why(e)}`;
  }
  btn.removeAttribute('aria-busy');
  if (said) {
    text(el.note, said);
    el.note.hidden = false;
    return;
  }
  if (recordingsState.playing === item.key) closePlayer(false);
  // The focus goes to the next item's first button (or the list), not to the page's top.
  const next = li.nextElementSibling || li.previousElementSibling;
  const rec = recordingsState.recordings;
  if (rec && Array.isArray(rec.clips)) rec.clips = rec.clips.filter((c) => !c || c.id !== item.id);
  renderTimeline();
  const target = next && next.isConnected ? next.querySelector('button, a') : null;
  (target || el.list).focus();
  refresh();
}

// ---------------------------------------------------------------- motion zones

function renderZonesRow() {
  if (!el) return;
  const z = recordingsState.zones;
  el.zonesRow.hidden = !z.loaded;
  text(el.zonesText, `Motion zones: ${zonesSummary(z.editing ? z.draft : z.list)}`);
  el.zonesShow.checked = z.show;
  el.zonesEdit.hidden = !z.maySet;
  el.zonesEdit.setAttribute('aria-pressed', String(z.editing));
}

function showPref() {
  try {
    return localStorage.getItem(SHOW_KEY) !== 'hidden';
  } catch {
    return true;
  }
}

// The picture's content box in the overlay's parent (the <video> fills #picture, object-fit:
// contain), and the overlay laid over it.
function layout() {
  const v = el.video;
  const rect = contentRect(v.clientWidth, v.clientHeight, v.videoWidth, v.videoHeight);
  const s = el.zones.style;
  s.setProperty('--zx', `${rect.x}px`);
  s.setProperty('--zy', `${rect.y}px`);
  s.setProperty('--zw', `${rect.w}px`);
  s.setProperty('--zh', `${rect.h}px`);
  return { x: 0, y: 0, w: rect.w, h: rect.h }; // the overlay's own pixels
}

const pct = (v) => `${Math.round(v * 100)} %`;

function zoneLabel(zone, i, n) {
  const kind = zone.kind === 'watch' ? 'Watch' : 'Ignore';
  return (
    `${kind} zone ${i + 1} of ${n}: from ${pct(zone.x)} to ${pct(zone.x + zone.w)} across, ` +
    `${pct(zone.y)} to ${pct(zone.y + zone.h)} down`
  );
}

let drag = null; // {mode: 'create' | 'move' | 'resize', id (pointer), from, anchor, orig, moved}
let draftRect = null; // the zone being drawn

function drawZones() {
  if (!el) return;
  const z = recordingsState.zones;
  const zones = z.editing ? z.draft : z.list;
  const visible = z.editing || (z.show && zones.length > 0);
  el.zones.toggleAttribute('hidden', !visible); // (an <svg> has no .hidden property)
  el.legend.hidden = !visible || (!zones.length && !draftRect);
  el.zones.dataset.mode = z.editing ? 'edit' : 'view';
  el.picture.dataset.zones = z.editing ? 'edit' : '';
  // Shown, the zones are a picture (the panel's line says what they are); edited, a group of
  // buttons, one a zone, and the overlay takes the keys.
  if (z.editing) {
    el.zones.removeAttribute('aria-hidden');
    el.zones.setAttribute('role', 'group');
    el.zones.setAttribute('aria-label', 'Motion zones on the picture');
    el.zones.setAttribute('tabindex', '-1');
  } else {
    el.zones.setAttribute('aria-hidden', 'true');
    el.zones.removeAttribute('role');
    el.zones.removeAttribute('aria-label');
    el.zones.removeAttribute('tabindex');
  }
  if (!visible) {
    el.layer.replaceChildren();
    return;
  }
  const box = layout();
  // A zone that had the focus is drawn afresh: the focus goes to the selected one (the pointer
  // may have picked another), else where it was.
  const was = z.editing ? [...el.layer.querySelectorAll('.zone-box')].indexOf(document.activeElement) : -1;
  const focusIndex = was >= 0 && z.selected >= 0 ? z.selected : was;
  const shapes = zones.map((zone, i) => {
    const a = fromFraction(zone.x, zone.y, box);
    const b = fromFraction(zone.x + zone.w, zone.y + zone.h, box);
    const g = svgEl('g', { class: 'zone', 'data-kind': zone.kind, 'data-i': i });
    const r = svgEl('rect', { class: 'zone-box', x: a.x, y: a.y, width: b.x - a.x, height: b.y - a.y });
    g.append(r);
    if (z.editing) {
      r.setAttribute('tabindex', '0');
      r.setAttribute('role', 'button');
      r.setAttribute('aria-pressed', String(i === z.selected));
      r.setAttribute('aria-label', zoneLabel(zone, i, zones.length));
      if (i === z.selected) {
        g.dataset.selected = 'true';
        // Grow from the bottom right corner; remove at the top right. Both just inside the zone (a
        // zone at the picture's edge would have them cut off), each with room for a finger.
        const handle = svgEl('g', { class: 'zone-handle', 'data-role': 'resize' });
        handle.append(svgEl('circle', { class: 'zone-hit', cx: b.x - 6, cy: b.y - 6, r: 18 }));
        handle.append(svgEl('rect', { x: b.x - 12, y: b.y - 12, width: 12, height: 12, rx: 2 }));
        const cx = b.x - 13;
        const cy = a.y + 13;
        const del = svgEl('g', { class: 'zone-x', 'data-role': 'delete' });
        const title = svgEl('title');
        title.textContent = 'Delete this zone';
        del.append(title, svgEl('circle', { class: 'zone-hit', cx, cy, r: 18 }));
        del.append(svgEl('circle', { cx, cy, r: 10 }));
        del.append(svgEl('path', { d: `M${cx - 4} ${cy - 4}l8 8M${cx + 4} ${cy - 4}l-8 8` }));
        g.append(handle, del);
      }
    }
    return g;
  });
  if (draftRect) {
    const a = fromFraction(draftRect.x, draftRect.y, box);
    const b = fromFraction(draftRect.x + draftRect.w, draftRect.y + draftRect.h, box);
    const g = svgEl('g', { class: 'zone zone-draft', 'data-kind': z.kind });
    g.append(svgEl('rect', { class: 'zone-box', x: a.x, y: a.y, width: b.x - a.x, height: b.y - a.y }));
    shapes.push(g);
  }
  el.layer.replaceChildren(...shapes);
  if (focusIndex >= 0) {
    const boxes = el.layer.querySelectorAll('.zone-box[tabindex]');
    if (boxes[focusIndex]) boxes[focusIndex].focus();
  }
}

function renderEditor() {
  const z = recordingsState.zones;
  el.editor.hidden = !z.editing;
  if (!z.editing) return;
  const sel = z.selected >= 0 ? z.draft[z.selected] : null;
  for (const r of el.kindRadios) r.checked = r.value === z.kind;
  el.deleteBtn.disabled = !sel;
  text(el.count, `${z.draft.length} of ${MAX_ZONES}`);
  const callFirst = el.video.videoWidth ? '' : ' Start a call to see the picture.';
  text(
    el.hint,
    z.draft.length >= MAX_ZONES
      ? `That is the most zones there can be (${MAX_ZONES}): delete one to draw another.`
      : `Drag on the picture to add a zone; drag a zone to move it.${callFirst}`,
  );
  text(el.zoneError, z.error);
  el.zoneError.hidden = !z.error;
  el.saveBtn.disabled = z.saving;
  if (z.saving) el.saveBtn.setAttribute('aria-busy', 'true');
  else el.saveBtn.removeAttribute('aria-busy');
}

function renderZones() {
  renderZonesRow();
  renderEditor();
  drawZones();
}

function startEditing() {
  const z = recordingsState.zones;
  if (!z.maySet || z.editing) return;
  Object.assign(z, { editing: true, draft: z.list.map((x) => ({ ...x })), selected: -1, error: '' });
  renderZones();
  el.screen.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  el.zones.focus({ preventScroll: true });
}

function stopEditing(ask) {
  const z = recordingsState.zones;
  if (!z.editing) return;
  const changed = JSON.stringify(z.draft) !== JSON.stringify(z.list);
  if (ask && changed && !window.confirm('Leave the zones as they were, without your changes?')) return;
  Object.assign(z, { editing: false, draft: [], selected: -1, error: '', saving: false });
  drag = null;
  draftRect = null;
  renderZones();
  el.zonesEdit.focus({ preventScroll: true }); // the toggle that opened it (the editor is gone)
}

async function saveZones() {
  const z = recordingsState.zones;
  if (!z.editing || z.saving) return;
  const zones = zonesForSave(z.draft);
  z.saving = true;
  z.error = '';
  renderEditor();
  let said = '';
  try {
    const r = await fetch('/api/motion/zones', {
      method: 'PUT',
      cache: 'no-store',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ zones }),
    });
    if (r.status === 403) said = 'This login may not change the motion zones.';
    else if (!r.ok) said = `Not saved: ${await reasonOf(r)}`;
  } catch (e) {
    said = `Not saved: ${why(e)}`;
  }
  z.saving = false;
  if (said) {
    z.error = said;
    renderEditor();
    return;
  }
  z.list = zones;
  stopEditing(false);
  loadZones(); // what the device kept
}

function select(i) {
  const z = recordingsState.zones;
  z.selected = i >= 0 && i < z.draft.length ? i : -1;
  // One choice of kind: what the Watch / Ignore control shows is the selected zone's, and new
  // zones are drawn as it shows.
  if (z.selected >= 0) z.kind = z.draft[z.selected].kind;
  renderEditor();
  drawZones();
}

function deleteSelected() {
  const z = recordingsState.zones;
  if (z.selected < 0) return;
  // From a zone's own keys, the next zone is selected and focused (where the keyboard user is);
  // from the x or the editor's button, none is.
  const focused = document.activeElement;
  const onZone = Boolean(focused && focused.closest && focused.closest('.zone-box'));
  const inZones = el.zones.contains(document.activeElement);
  z.draft.splice(z.selected, 1);
  z.selected = onZone ? Math.min(z.selected, z.draft.length - 1) : -1;
  renderEditor();
  drawZones();
  const boxes = el.layer.querySelectorAll('.zone-box[tabindex]');
  if (onZone || inZones) (boxes[z.selected] || el.zones).focus();
}

// The pointer's place in the overlay's pixels.
function pointAt(ev) {
  const r = el.zones.getBoundingClientRect();
  return toFraction(ev.clientX - r.left, ev.clientY - r.top, { x: 0, y: 0, w: r.width, h: r.height });
}

function onPointerDown(ev) {
  const z = recordingsState.zones;
  if (!z.editing || drag || (ev.pointerType === 'mouse' && ev.button !== 0)) return;
  ev.preventDefault();
  const p = pointAt(ev);
  const role = ev.target.closest('[data-role]');
  const g = ev.target.closest('.zone');
  const i = g && g.dataset.i !== undefined ? Number(g.dataset.i) : -1;
  if (role && role.dataset.role === 'delete') {
    deleteSelected();
    return;
  }
  try {
    el.zones.setPointerCapture(ev.pointerId); // the drag goes on outside the picture
  } catch {
    /* the pointer is gone already */
  }
  // (No focus comes with a prevented pointerdown: the keys, Delete first, go to the zones.)
  if (!el.zones.contains(document.activeElement)) el.zones.focus({ preventScroll: true });
  // (drag first: the focus that follows the selection must not select anything itself)
  if (role && role.dataset.role === 'resize' && z.selected >= 0) {
    const s = z.draft[z.selected];
    drag = { mode: 'resize', id: ev.pointerId, from: p, anchor: { x: s.x, y: s.y }, orig: s, moved: false };
  } else if (i >= 0) {
    drag = { mode: 'move', id: ev.pointerId, from: p, orig: z.draft[i], moved: false };
    select(i);
  } else {
    drag = { mode: 'create', id: ev.pointerId, from: p, anchor: p, moved: false };
    select(-1);
  }
}

function onPointerMove(ev) {
  const z = recordingsState.zones;
  if (!drag || ev.pointerId !== drag.id) return;
  const p = pointAt(ev);
  const r = el.zones.getBoundingClientRect();
  // A few pixels of wobble is a tap, not a drag.
  if (!drag.moved && Math.hypot((p.x - drag.from.x) * r.width, (p.y - drag.from.y) * r.height) < 5) return;
  drag.moved = true;
  if (drag.mode === 'create') {
    if (z.draft.length >= MAX_ZONES) return;
    draftRect = normalizeRect(drag.anchor.x, drag.anchor.y, p.x, p.y);
  } else if (drag.mode === 'move') {
    z.draft[z.selected] = moveRect(drag.orig, p.x - drag.from.x, p.y - drag.from.y);
  } else {
    z.draft[z.selected] = { ...normalizeRect(drag.anchor.x, drag.anchor.y, p.x, p.y), kind: drag.orig.kind };
  }
  drawZones();
}

function onPointerUp(ev) {
  const z = recordingsState.zones;
  if (!drag || ev.pointerId !== drag.id) return;
  const d = drag;
  drag = null;
  if (ev.type === 'pointercancel') {
    if (d.mode !== 'create') z.draft[z.selected] = d.orig;
  } else if (d.mode === 'create' && draftRect && z.draft.length < MAX_ZONES) {
    z.draft.push({ ...draftRect, kind: z.kind });
    z.selected = z.draft.length - 1;
  }
  draftRect = null;
  renderZones();
}

function onZoneKey(ev) {
  const z = recordingsState.zones;
  if (!z.editing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const box = ev.target.closest && ev.target.closest('.zone-box[tabindex]');
  if (box && ev.key !== 'Tab') {
    const i = Number(box.parentNode.dataset.i);
    if (i !== z.selected) select(i);
  }
  const s = z.selected >= 0 ? z.draft[z.selected] : null;
  const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if ((ev.key === 'Delete' || ev.key === 'Backspace') && s) {
    deleteSelected();
  } else if (Object.hasOwn(arrows, ev.key) && s) {
    const [dx, dy] = arrows[ev.key].map((v) => v * ZONE_STEP);
    // Arrows move the zone; with Shift they move its bottom right corner (grow or shrink it).
    z.draft[z.selected] = ev.shiftKey
      ? { ...normalizeRect(s.x, s.y, s.x + s.w + dx, s.y + s.h + dy), kind: s.kind }
      : moveRect(s, dx, dy);
    drawZones();
  } else if ((ev.key === 'Enter' || ev.key === ' ') && box) {
    // (Selected by the focus already.)
  } else if (ev.key === 'Escape' && s) {
    select(-1);
    el.zones.focus();
  } else {
    return;
  }
  ev.preventDefault();
  ev.stopPropagation();
}

// ---------------------------------------------------------------- start

// Finds its elements, polls the device every 10 s (and soon after each motion message), draws the
// zones over the live picture. App.js calls it once.
export function watchRecordings() {
  const $ = (id) => document.getElementById(id);
  el = {
    panel: $('recordings'),
    state: $('rec-state'),
    problem: $('rec-problem'),
    note: $('rec-note'),
    list: $('rec-list'),
    zonesRow: $('rec-zones'),
    zonesText: $('rec-zones-text'),
    zonesShow: $('zones-show'),
    zonesEdit: $('zones-edit'),
    screen: $('screen'),
    picture: $('picture'),
    video: $('video'),
    zones: $('zones'),
    layer: $('zones-layer'),
    legend: $('zones-legend'),
    badge: $('motion-badge'),
    badgeText: $('motion-badge-text'),
    editor: $('zones-editor'),
    hint: $('zones-hint'),
    count: $('zones-count'),
    kindRadios: [...document.querySelectorAll('input[name="zone-kind"]')],
    deleteBtn: $('zones-delete'),
    saveBtn: $('zones-save'),
    cancelBtn: $('zones-cancel'),
    zoneError: $('zones-error'),
  };
  const z = recordingsState.zones;
  z.show = showPref();

  el.zonesShow.addEventListener('change', () => {
    z.show = el.zonesShow.checked;
    try {
      localStorage.setItem(SHOW_KEY, z.show ? 'shown' : 'hidden');
    } catch {
      /* kept for this page only */
    }
    drawZones();
  });
  el.zonesEdit.addEventListener('click', () => (z.editing ? stopEditing(true) : startEditing()));
  el.cancelBtn.addEventListener('click', () => stopEditing(false));
  el.saveBtn.addEventListener('click', saveZones);
  el.deleteBtn.addEventListener('click', deleteSelected);
  for (const r of el.kindRadios) {
    r.addEventListener('change', () => {
      if (!r.checked) return;
      z.kind = r.value === 'ignore' ? 'ignore' : 'watch';
      if (z.selected >= 0) z.draft[z.selected] = { ...z.draft[z.selected], kind: z.kind };
      drawZones();
    });
  }
  el.zones.addEventListener('pointerdown', onPointerDown);
  el.zones.addEventListener('pointermove', onPointerMove);
  el.zones.addEventListener('pointerup', onPointerUp);
  el.zones.addEventListener('pointercancel', onPointerUp);
  el.zones.addEventListener('keydown', onZoneKey);
  el.zones.addEventListener('focusin', (ev) => {
    const box = ev.target.closest && ev.target.closest('.zone-box[tabindex]');
    if (box && !drag) {
      const i = Number(box.parentNode.dataset.i);
      if (i !== z.selected) select(i);
    }
  });
  // Drawing is not a double-click on the picture (that would go full screen).
  el.zones.addEventListener('dblclick', (ev) => {
    if (z.editing) ev.stopPropagation();
  });

  // The overlay follows the picture: its size, the stream's shape, full screen.
  const relayout = () => {
    if (!el.zones.hasAttribute('hidden')) drawZones();
    if (z.editing) renderEditor();
  };
  if (typeof ResizeObserver === 'function') new ResizeObserver(relayout).observe(el.video);
  el.video.addEventListener('resize', relayout);
  el.video.addEventListener('loadedmetadata', relayout);
  el.video.addEventListener('emptied', relayout);

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) soon();
  });
  renderBadge(false);
  renderZones();
  tick();
}
