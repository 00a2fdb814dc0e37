// The call's `rtcam` data channel on the page (README, "Data channel"): one dispatcher for every
// message on it (chat, telemetry, error, controls, camera, serial; see on() below), and the chat
// panel. `dispatch` is also what window.rtcam.inject feeds (a test / console hook), so an injected
// message takes exactly the path of one from the channel.
// Text from the channel is only ever put in the page as text (textContent), never as HTML.
//
// Pictures in the chat (README, "Talking to the device"): the page sends one picture at a time, a
// snapshot of the camera or a small file, as {"type":"image",id,name,size} and then base64
// {"type":"image_chunk",id,data} messages of at most 8 KiB each, paced by the channel's
// bufferedAmount so its send buffer never overflows. The device checks it and sends every viewer
// a chat line that carries {"image":{url,name,mime,size}}; the page shows the picture from that
// URL (same origin, so the session cookie goes along).

import { fetchSnapshot } from './camera.js';

const NAME_KEY = 'rtcam.name';
const MAX_LINES = 200;

const panel = document.getElementById('chat');
const log = document.getElementById('chat-log');
const form = document.getElementById('chat-form');
const input = document.getElementById('chat-text');
const sendBtn = document.getElementById('chat-send');
const nameInput = document.getElementById('chat-name');
const note = document.getElementById('chat-note');
const shareSnapBtn = document.getElementById('chat-share-snapshot');
const pickLabel = document.getElementById('chat-pick');
const fileInput = document.getElementById('chat-file');
const uploadEl = document.getElementById('chat-upload');
const uploadLabel = document.getElementById('chat-upload-label');
const uploadPct = document.getElementById('chat-upload-pct');
const uploadBar = document.getElementById('chat-upload-bar');
const lightbox = document.getElementById('lightbox');
const lightboxImg = document.getElementById('lightbox-img');
const lightboxTitle = document.getElementById('lightbox-title');
const lightboxOpen = document.getElementById('lightbox-open');
const lightboxClose = document.getElementById('lightbox-close');

let channel = null;
let lastLimited = null; // the type of the last message sent that counts towards the rate limit

// The picture being sent: {busy, phase, id, name, size, sent, done, error, reason, ...} (see
// resetUpload). phase: 'idle' | 'snapshot' (fetching it) | 'sending' | 'checking' (every byte
// left, waiting for the device's line) | 'done' | 'failed'.
const upload = {
  busy: false,
  phase: 'idle',
  id: null,
  name: null,
  size: 0,
  sent: 0, // raw bytes handed to the channel
  done: false, // the device's chat line with it came back
  error: null, // why it was not shared (text for people)
  reason: null, // the device's reason, or 'local' (refused here), 'timeout', 'closed'
  startedAt: null, // Date.now() when the first byte went out
  ms: null, // first byte until the device's line came back
  url: null, // where the device keeps it
  percent: 0, // what the progress bar shows (100 once the device's line came back)
  count: 0, // pictures shared from this page
  maxBuffered: 0, // the largest bufferedAmount seen while sending
};

// What a test (or a person at the console) may read.
export const chatState = { open: false, lines: [], errors: [], telemetry: null, upload };

// ---------------------------------------------------------------- the dispatcher

const handlers = new Map(); // type -> [fn]
const openHandlers = [];

/// Calls `fn(msg)` for every message of `type` (from the channel or injected).
export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}

/// Calls `fn(isOpen)` whenever the channel opens or closes.
export function onChannel(fn) {
  openHandlers.push(fn);
}

/// One parsed message, as if it came from the channel. Returns true when something handled it.
export function dispatch(m) {
  if (!m || typeof m !== 'object' || typeof m.type !== 'string') return false;
  const fns = handlers.get(m.type);
  if (!fns) return false;
  for (const fn of fns) {
    try {
      fn(m);
    } catch (e) {
      console.error(`rtcam: handling a ${m.type} message:`, e);
    }
  }
  return true;
}

/// Sends one JSON message on the channel; false when it is not open (nothing is sent).
export function sendJson(msg) {
  if (channel && channel.readyState === 'open') {
    channel.send(JSON.stringify(msg));
    // Everything but a picture's chunks counts towards the device's 5 a second.
    if (msg && msg.type !== 'image_chunk') lastLimited = msg.type;
    return true;
  }
  return false;
}

export function channelOpen() {
  return Boolean(channel && channel.readyState === 'open');
}

function onMessage(ev) {
  if (typeof ev.data !== 'string') return;
  let m;
  try {
    m = JSON.parse(ev.data);
  } catch {
    return;
  }
  dispatch(m);
}

// ---------------------------------------------------------------- chat

function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

function sayHello() {
  const name = nameInput.value.trim();
  if (name) sendJson({ type: 'hello', name });
}

function show(text) {
  note.textContent = text;
  note.hidden = !text;
}

function timeOf(ms) {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// The log follows new lines while it is scrolled to the bottom (a picture that loads later too).
let stuck = true;
log.addEventListener(
  'scroll',
  () => {
    stuck = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  },
  { passive: true },
);

function follow() {
  if (stuck) log.scrollTop = log.scrollHeight;
}
// The log gets shorter when the upload bar or a note shows up under it: keep the last line in sight.
if (typeof ResizeObserver === 'function') new ResizeObserver(follow).observe(log);

// Only the device's own picture URLs: a line cannot point the page anywhere else.
const IMAGE_URL = /^\/api\/chat\/images\/\d{1,20}$/;

function pictureOf(m) {
  const i = m.image;
  if (!i || typeof i !== 'object' || typeof i.url !== 'string' || !IMAGE_URL.test(i.url)) return null;
  return {
    url: i.url,
    name: typeof i.name === 'string' && i.name ? i.name : 'picture',
    mime: typeof i.mime === 'string' ? i.mime : '',
    size: Number.isFinite(i.size) ? i.size : 0,
    state: 'loading', // 'loaded' | 'gone' (the device no longer keeps it)
    width: 0,
    height: 0,
  };
}

export function bytesText(n) {
  if (!Number.isFinite(n) || n <= 0) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

function pictureFigure(pic, from) {
  const fig = document.createElement('figure');
  fig.className = 'chat-pic';
  fig.dataset.state = 'loading';
  const a = document.createElement('a');
  a.className = 'chat-pic-link';
  a.href = pic.url;
  a.target = '_blank';
  a.rel = 'noopener';
  a.title = `${pic.name}: open it full size`;
  const img = document.createElement('img');
  img.className = 'chat-pic-img';
  img.alt = pic.name;
  img.loading = 'lazy';
  img.decoding = 'async';
  img.addEventListener('load', () => {
    pic.state = 'loaded';
    pic.loadedAt = Date.now();
    pic.width = img.naturalWidth;
    pic.height = img.naturalHeight;
    fig.dataset.state = 'loaded';
    follow();
  });
  img.addEventListener('error', () => {
    pic.state = 'gone';
    fig.dataset.state = 'gone';
    const gone = document.createElement('span');
    gone.className = 'chat-pic-gone';
    gone.textContent = 'picture no longer kept';
    a.replaceWith(gone);
  });
  img.src = pic.url;
  a.append(img);
  a.addEventListener('click', (ev) => {
    // A plain click (or Enter) opens it in the lightbox; with a modifier key, the browser's way.
    if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    if (typeof lightbox.showModal !== 'function' || pic.state === 'gone') return;
    ev.preventDefault();
    openLightbox(pic, from, a);
  });
  const cap = document.createElement('figcaption');
  cap.className = 'chat-pic-caption';
  const size = bytesText(pic.size);
  cap.textContent = size ? `${pic.name} · ${size}` : pic.name;
  fig.append(a, cap);
  return fig;
}

function addLine(m) {
  const pic = pictureOf(m);
  const entry = { from: m.from, text: m.text, at: m.at, received: Date.now() };
  if (pic) entry.image = pic;
  chatState.lines.push(entry);
  if (chatState.lines.length > MAX_LINES) chatState.lines.shift();
  const li = document.createElement('li');
  const mine = nameInput.value.trim() && String(m.from) === nameInput.value.trim();
  if (mine) li.classList.add('mine');
  const head = document.createElement('span');
  head.className = 'chat-head-line';
  const who = document.createElement('span');
  who.className = 'chat-from';
  who.textContent = String(m.from);
  const when = document.createElement('time');
  when.className = 'chat-at';
  when.textContent = timeOf(m.at);
  head.append(who, when);
  if (pic) {
    li.classList.add('has-pic');
    li.append(head, pictureFigure(pic, String(m.from)));
  } else {
    const text = document.createElement('span');
    text.className = 'chat-line';
    text.textContent = String(m.text);
    li.append(head, text);
  }
  log.append(li);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  if (mine) stuck = true;
  follow();
  if (pic) pictureLineCame(m, pic);
}

// ---------------------------------------------------------------- the lightbox

let lightboxFrom = null; // the element that opened it: the focus goes back there

function openLightbox(pic, from, opener) {
  lightboxFrom = opener;
  lightboxImg.src = pic.url;
  lightboxImg.alt = pic.name;
  const size = bytesText(pic.size);
  const dims = pic.width ? `${pic.width}×${pic.height}` : '';
  lightboxTitle.textContent = [pic.name, `from ${from}`, dims, size].filter(Boolean).join(' · ');
  lightboxOpen.href = pic.url;
  lightbox.showModal();
  lightboxClose.focus();
}

lightboxClose.addEventListener('click', () => lightbox.close());
// A click on the dark backdrop (the dialog itself, not what is in it) closes it; so does the picture.
lightbox.addEventListener('click', (ev) => {
  if (ev.target === lightbox || ev.target === lightboxImg) lightbox.close();
});
lightbox.addEventListener('close', () => {
  lightboxImg.removeAttribute('src');
  if (lightboxFrom && lightboxFrom.isConnected) lightboxFrom.focus();
  lightboxFrom = null;
});

const OTHER_REASONS = new Set([
  'unknown_control',
  'out_of_range',
  'not_allowed',
  'control_failed',
  'serial_busy',
  'serial_unavailable',
  'serial_queue_full',
  'talk_busy', // talk.js says these
  'talk_unavailable',
]);

// ---------------------------------------------------------------- sending a picture

const MAX_PICTURE = 2 * 1024 * 1024; // bytes (the device's limit)
const CHUNK = 8192; // raw bytes per image_chunk message (its base64 fits the 16 KiB message limit)
const LOW_WATER = 64 * 1024; // 'bufferedamountlow' fires when the send buffer drains to this
const HIGH_WATER = 256 * 1024; // above this, wait for it
const CHECK_MS = 15000; // every byte gone: the device's line should come by then
const DONE_SHOW_MS = 1500; // the bar stays at 100 % this long
const NOTE_MS = 10000;
const PICTURE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
const PICTURE_REASONS = new Set([
  'image_too_large',
  'upload_busy',
  'upload_too_slow',
  'upload_cooldown',
  'bad_chunk',
  'not_an_image',
]);

let nextUploadId = 1;
let progressTimer = null;
let checkTimer = null;
let hideTimer = null;
let noteTimer = null;
let wakeSender = null; // resolves the sender's wait for the buffer to drain
let wire = { total: 0, queued: 0, allQueued: false, dc: null };

function say(text) {
  show(text);
  if (noteTimer) clearTimeout(noteTimer);
  noteTimer = text ? setTimeout(() => show(''), NOTE_MS) : null;
}

// The name as the device keeps it (its clean_file_name), so the page knows its own line.
function cleanName(name) {
  const kept = [...String(name || '')].filter((c) => !/[\p{Cc}/\\]/u.test(c)).slice(0, 100).join('').trim();
  return kept || 'picture';
}

function base64(bytes) {
  if (typeof bytes.toBase64 === 'function') return bytes.toBase64();
  return btoa(String.fromCharCode.apply(null, bytes));
}

// The JSON text every chunk of a picture of `size` bytes adds up to (what bufferedAmount counts).
function wireBytes(id, size) {
  const overhead = JSON.stringify({ type: 'image_chunk', id, data: '' }).length;
  let total = 0;
  for (let off = 0; off < size; off += CHUNK) total += overhead + 4 * Math.ceil(Math.min(CHUNK, size - off) / 3);
  return total;
}

function clearUploadTimers() {
  if (progressTimer) clearInterval(progressTimer);
  if (checkTimer) clearTimeout(checkTimer);
  if (hideTimer) clearTimeout(hideTimer);
  progressTimer = checkTimer = hideTimer = null;
}

function renderUpload(pct) {
  const phase = upload.phase;
  const shown = phase === 'snapshot' || phase === 'sending' || phase === 'checking' || phase === 'done';
  uploadEl.hidden = !shown;
  uploadEl.dataset.phase = phase;
  const busy = upload.busy;
  shareSnapBtn.setAttribute('aria-disabled', String(busy));
  pickLabel.dataset.busy = String(busy);
  if (!shown) return;
  const name = upload.name || 'picture';
  let label;
  if (phase === 'snapshot') label = 'Taking a snapshot…';
  else if (phase === 'sending') label = `Sending ${name}`;
  else if (phase === 'checking') label = `Sending ${name}: the device checks it…`;
  else label = `Shared ${name}`;
  if (uploadLabel.textContent !== label) uploadLabel.textContent = label;
  if (pct === null || pct === undefined) {
    uploadBar.removeAttribute('value'); // indeterminate
    uploadPct.textContent = '';
  } else {
    const v = Math.max(0, Math.min(100, Math.round(pct)));
    uploadBar.value = v;
    uploadPct.textContent = `${v} %`;
    upload.percent = v;
  }
}

// How far the bytes got: what left the send buffer, of everything the picture takes.
function tick() {
  if (upload.phase !== 'sending' && upload.phase !== 'checking') return;
  const dc = wire.dc;
  const left = dc ? dc.bufferedAmount : 0;
  const gone = Math.max(0, wire.queued - left);
  upload.maxBuffered = Math.max(upload.maxBuffered, left);
  // 100 % is for the device's word that it has the picture.
  renderUpload(wire.total ? Math.min(99, (gone / wire.total) * 100) : 0);
  if (wire.allQueued && left === 0 && upload.phase === 'sending') {
    upload.phase = 'checking';
    renderUpload(99);
    checkTimer = setTimeout(() => fail('timeout', 'The device did not confirm the picture. Try again.'), CHECK_MS);
  }
}

function begin(phase, name) {
  clearUploadTimers();
  Object.assign(upload, {
    busy: true,
    phase,
    id: null,
    name,
    size: 0,
    sent: 0,
    done: false,
    error: null,
    reason: null,
    startedAt: null,
    ms: null,
    url: null,
    percent: 0,
    maxBuffered: 0,
  });
  say('');
  renderUpload(phase === 'snapshot' ? null : 0);
}

function fail(reason, text) {
  if (!upload.busy) return;
  clearUploadTimers();
  Object.assign(upload, { busy: false, phase: 'failed', error: text, reason, done: false });
  wire.dc = null;
  if (wakeSender) wakeSender();
  renderUpload();
  say(text);
}

/// Refused here, before anything went out (not while another picture is on its way).
function refuse(text) {
  if (upload.busy) {
    say(text);
    return;
  }
  Object.assign(upload, { phase: 'failed', error: text, reason: 'local', done: false });
  renderUpload();
  say(text);
}

// Waits for the send buffer to drain to LOW_WATER (or the channel to close, or the upload to end;
// at most half a second: the loop looks again).
function drained(dc) {
  return new Promise((resolve) => {
    const done = () => {
      dc.removeEventListener('bufferedamountlow', done);
      dc.removeEventListener('close', done);
      clearTimeout(t);
      if (wakeSender === done) wakeSender = null;
      resolve();
    };
    const t = setTimeout(done, 500);
    wakeSender = done;
    dc.addEventListener('bufferedamountlow', done);
    dc.addEventListener('close', done);
  });
}

/// Shares `blob` (at most 2 MiB) in the chat as `name`; the device checks that it is a picture.
async function sendPicture(blob, name) {
  const dc = channel;
  if (!dc || dc.readyState !== 'open') {
    fail('closed', 'Pictures go out during a call: press Call first.');
    return;
  }
  const size = blob.size;
  if (size > MAX_PICTURE) {
    fail('local', `${name} is too large (${bytesText(size)}): the chat takes pictures up to 2 MB.`);
    return;
  }
  let bytes;
  try {
    bytes = new Uint8Array(await blob.arrayBuffer());
  } catch (e) {
    fail('local', `Cannot read ${name}: ${e && e.message ? e.message : e}`);
    return;
  }
  if (!upload.busy || dc !== channel || dc.readyState !== 'open') {
    fail('closed', 'The call ended before the picture went out.');
    return;
  }
  const id = nextUploadId++;
  Object.assign(upload, { phase: 'sending', id, name, size, sent: 0, startedAt: Date.now() });
  wire = { total: wireBytes(id, size), queued: 0, allQueued: false, dc };
  dc.bufferedAmountLowThreshold = LOW_WATER;
  sendJson({ type: 'image', id, name, size });
  renderUpload(0);
  progressTimer = setInterval(tick, 100);
  for (let off = 0; off < size; ) {
    if (upload.id !== id || upload.phase !== 'sending') return; // refused (or the call ended)
    if (dc !== channel || dc.readyState !== 'open') {
      fail('closed', 'The call ended before the picture went out.');
      return;
    }
    if (dc.bufferedAmount > HIGH_WATER) {
      await drained(dc);
      tick();
      continue;
    }
    const part = bytes.subarray(off, off + CHUNK);
    const text = JSON.stringify({ type: 'image_chunk', id, data: base64(part) });
    try {
      dc.send(text);
    } catch (e) {
      fail('closed', `The picture could not be sent: ${e && e.message ? e.message : e}`);
      return;
    }
    off += part.length;
    wire.queued += text.length;
    upload.sent = off;
    upload.maxBuffered = Math.max(upload.maxBuffered, dc.bufferedAmount);
  }
  wire.allQueued = true;
  tick();
}

// A chat line with a picture came: the one this page is sending, if its name and size match.
function pictureLineCame(m, pic) {
  if (!upload.busy || (upload.phase !== 'sending' && upload.phase !== 'checking')) return;
  const me = nameInput.value.trim();
  if (pic.name !== upload.name || pic.size !== upload.size || (me && String(m.from) !== me)) return;
  clearUploadTimers();
  Object.assign(upload, {
    busy: false,
    phase: 'done',
    done: true,
    url: pic.url,
    ms: upload.startedAt ? Date.now() - upload.startedAt : null,
  });
  upload.count++;
  wire.dc = null;
  renderUpload(100);
  hideTimer = setTimeout(() => {
    hideTimer = null;
    if (upload.phase === 'done') {
      upload.phase = 'idle';
      renderUpload();
    }
  }, DONE_SHOW_MS);
}

function pictureRefused(m) {
  if (!upload.busy || upload.phase === 'snapshot') {
    say(String(m.message || m.reason));
    return;
  }
  const name = upload.name || 'The picture';
  const text = {
    image_too_large: `${name} is too large: pictures go up to 2 MB.`,
    upload_busy: 'The device is taking other pictures now: try again in a moment.',
    bad_chunk: `${name} did not arrive whole (${m.message || 'a bad chunk'}). Try again.`,
    not_an_image: `${name} is not a JPEG, PNG, GIF or WebP picture: the device refused it.`,
  }[m.reason];
  fail(m.reason, text || String(m.message || m.reason));
}

function snapshotName(d = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `snapshot-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}.jpg`;
}

// The camera's state from its messages: while it is lost the device's snapshot is its slate.
let cameraState = null;
on('camera', (m) => {
  cameraState = typeof m.state === 'string' ? m.state : null;
});

async function shareSnapshot() {
  if (!channelOpen()) {
    refuse('Pictures go out during a call: press Call first.');
    return;
  }
  if (cameraState === 'lost' || cameraState === 'starting') {
    refuse(`No snapshot to share: the camera is ${cameraState === 'lost' ? 'lost' : 'starting'}.`);
    return;
  }
  if (upload.busy) {
    say(`One picture at a time: ${upload.name || 'the last one'} is still on its way.`);
    return;
  }
  const name = snapshotName();
  begin('snapshot', name);
  let blob;
  try {
    blob = await fetchSnapshot();
  } catch (e) {
    fail('snapshot', `No snapshot: ${e && e.message ? e.message : e}`);
    return;
  }
  if (upload.phase !== 'snapshot') return; // the call ended meanwhile
  await sendPicture(blob, name);
}

function pickedFile() {
  const f = fileInput.files && fileInput.files[0];
  fileInput.value = ''; // picking the same file again still counts as a change
  if (!f) return;
  const name = cleanName(f.name);
  if (!channelOpen()) {
    refuse('Pictures go out during a call: press Call first.');
    return;
  }
  if (upload.busy) {
    say(`One picture at a time: ${upload.name || 'the last one'} is still on its way.`);
    return;
  }
  if (!PICTURE_TYPES.has(f.type)) {
    refuse(`${name} is not a picture the chat takes (JPEG, PNG, GIF or WebP).`);
    return;
  }
  if (f.size > MAX_PICTURE) {
    refuse(`${name} is too large (${bytesText(f.size)}): the chat takes pictures up to 2 MB.`);
    return;
  }
  if (f.size === 0) {
    refuse(`${name} is empty.`);
    return;
  }
  begin('sending', name);
  sendPicture(f, name);
}

function setPictureTools(open) {
  shareSnapBtn.disabled = !open;
  fileInput.disabled = !open;
  pickLabel.dataset.disabled = String(!open);
  pickLabel.title = open
    ? 'Share a picture (JPEG, PNG, GIF or WebP, up to 2 MB)'
    : 'Pictures go out during a call';
}

shareSnapBtn.addEventListener('click', shareSnapshot);
fileInput.addEventListener('change', pickedFile);

// ---------------------------------------------------------------- wiring

on('chat', addLine);
on('telemetry', (m) => {
  chatState.telemetry = m;
});
on('error', (m) => {
  chatState.errors.push(m.reason);
  if (chatState.errors.length > 50) chatState.errors.shift();
  if (PICTURE_REASONS.has(m.reason)) {
    pictureRefused(m);
    return;
  }
  if (m.reason === 'too_fast' && upload.busy && upload.phase !== 'snapshot' && lastLimited === 'image') {
    // The device dropped the picture's announcement: its chunks go nowhere.
    fail('too_fast', 'Too many messages at once: the picture did not go out. Try again in a moment.');
    return;
  }
  // Controls and serial errors are shown by their own panels (controls.js, serial.js).
  if (!OTHER_REASONS.has(m.reason)) show(String(m.message || m.reason || 'error'));
});

/// The call's data channel (made before the offer, so it rides in it).
export function attachChat(dc) {
  channel = dc;
  dc.bufferedAmountLowThreshold = LOW_WATER;
  dc.onopen = () => {
    if (channel !== dc) return;
    chatState.open = true;
    panel.dataset.open = 'true';
    input.disabled = false;
    sendBtn.disabled = false;
    setPictureTools(true);
    show('');
    sayHello();
    for (const fn of openHandlers) fn(true);
  };
  dc.onclose = () => {
    if (channel === dc) detachChat();
  };
  dc.onmessage = onMessage;
}

export function detachChat() {
  const was = chatState.open;
  channel = null;
  chatState.open = false;
  panel.dataset.open = 'false';
  input.disabled = true;
  sendBtn.disabled = true;
  setPictureTools(false);
  cameraState = null;
  if (upload.busy) fail('closed', 'The call ended before the picture went out.');
  if (was) for (const fn of openHandlers) fn(false);
}

nameInput.value = savedName();
nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim();
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Private windows may refuse storage: the name lasts for this page.
  }
  sayHello();
});

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = input.value;
  if (!text.trim() || !channel) return;
  sendJson({ type: 'chat', text });
  input.value = '';
  input.focus();
});

detachChat();
