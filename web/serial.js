// The serial bridge panel. The `serial` message on the rtcam channel says what the bridge is
// ({"type":"serial","state":"off"|"absent"|"open","path","baud","holder","you_hold","problem"}); the
// call's second data channel, `serial` (binary, made by app.js before the offer), carries the raw
// bytes both ways: the port's output to every viewer, a viewer's typing to the port (whoever
// holds it; others get a serial_busy error on the rtcam channel).
// The panel stays hidden until a serial message says there is a bridge (state other than "off").
// Bytes are decoded as UTF-8 (streaming, so a character split between messages survives) and
// shown with textContent only, the last 64 KiB of it.

import { on, onChannel } from './chat.js';

const MAX_TEXT = 64 * 1024; // characters kept (about 64 KiB of a mostly-ASCII console)
const MAX_MESSAGE = 4096; // bytes per data-channel message (protocol)
const NOTE_MS = 8000;
const SERIAL_REASONS = new Set(['serial_busy', 'serial_unavailable', 'serial_queue_full']);
const HISTORY = 50;

const $ = (id) => document.getElementById(id);
const panel = $('serial');
const whereEl = $('serial-where');
const stateEl = $('serial-state');
const holderEl = $('serial-holder');
const problemEl = $('serial-problem');
const logEl = $('serial-log');
const noteEl = $('serial-note');
const form = $('serial-form');
const input = $('serial-text');
const sendBtn = $('serial-send');
const clearBtn = $('serial-clear');

// What a test (or a person at the console) may read.
export const serialState = {
  open: false, // the `serial` data channel is open
  received: '', // what came from the port, decoded (the last 64 KiB)
  receivedBytes: 0,
  sentBytes: 0,
  lastSent: null, // the last line sent (without its "\n")
  state: null, // the last serial message, as sent
  errors: [], // [{reason, message, at}] serial errors, the last 20
};

let channel = null;
let decoder = new TextDecoder('utf-8');
const encoder = new TextEncoder();
let renderQueued = false;
let noteTimer = null;
const history = [];
let historyAt = -1;

// ---------------------------------------------------------------- bytes in

function toBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return Uint8Array.from(data);
  if (typeof data === 'string') return encoder.encode(data);
  return null;
}

/// Bytes from the port (ArrayBuffer, a typed array, an array of numbers, or a string), as if they
/// came on the `serial` channel.
export function feedSerial(data) {
  if (typeof Blob !== 'undefined' && data instanceof Blob) {
    data.arrayBuffer().then(feedSerial, () => {});
    return;
  }
  const bytes = toBytes(data);
  if (!bytes || !bytes.length) return;
  serialState.receivedBytes += bytes.length;
  let text = serialState.received + decoder.decode(bytes, { stream: true });
  if (text.length > MAX_TEXT) {
    // Drop whole lines from the start where one ends close to the cut.
    let cut = text.length - MAX_TEXT;
    const nl = text.indexOf('\n', cut);
    if (nl !== -1 && nl - cut < 1024) cut = nl + 1;
    text = text.slice(cut);
  }
  serialState.received = text;
  queueRender();
}

// A console's output, for reading: CR LF as one line end, colours and cursor moves left out.
// (`received` keeps the decoded text as it came.)
function forScreen(text) {
  return text
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[()][0-9A-Za-z]/g, '')
    .replace(/\r+\n/g, '\n')
    .replace(/[^\n]*\r(?!\n|$)/g, '') // a bare CR rewrites its line: keep what came after it
    .replace(/\r$/, '');
}

// The log follows the port's output while it is scrolled to the bottom, also when the panel's
// other lines (the holder, a problem) make it shorter.
let stuck = true;
logEl.addEventListener(
  'scroll',
  () => {
    stuck = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 24;
  },
  { passive: true },
);
function follow() {
  if (stuck) logEl.scrollTop = logEl.scrollHeight;
}
if (typeof ResizeObserver === 'function') new ResizeObserver(follow).observe(logEl);

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    logEl.textContent = forScreen(serialState.received);
    logEl.dataset.empty = String(!serialState.received);
    follow();
  });
}

// ---------------------------------------------------------------- bytes out

function say(text) {
  noteEl.textContent = text;
  noteEl.hidden = !text;
  if (noteTimer) clearTimeout(noteTimer);
  noteTimer = text
    ? setTimeout(() => {
        noteEl.hidden = true;
        noteTimer = null;
      }, NOTE_MS)
    : null;
}

/// Sends `text` + "\n" to the port as UTF-8 bytes (split into 4096-byte messages). False when
/// the serial channel is not open.
export function sendSerialLine(text) {
  if (!channel || channel.readyState !== 'open') {
    say('Not connected: the serial port works during a call.');
    return false;
  }
  const bytes = encoder.encode(`${text}\n`);
  for (let i = 0; i < bytes.length; i += MAX_MESSAGE) channel.send(bytes.slice(i, i + MAX_MESSAGE));
  serialState.sentBytes += bytes.length;
  serialState.lastSent = text;
  return true;
}

// ---------------------------------------------------------------- the panel

function updateInput() {
  const s = serialState.state;
  const usable = Boolean(channel && serialState.open && s && s.state === 'open');
  input.disabled = !usable;
  sendBtn.disabled = !usable;
  if (!s || s.state !== 'open') input.placeholder = 'The port is not open';
  else if (!serialState.open) input.placeholder = 'Serial works during a call';
  else if (s.holder && !s.you_hold) input.placeholder = `${s.holder} holds the port`;
  else input.placeholder = 'Send a line (Enter)';
}

function onSerial(m) {
  serialState.state = m;
  const off = m.state === 'off';
  panel.hidden = off;
  document.body.dataset.serial = off ? 'off' : 'on';
  if (off) return;
  const where = [];
  if (typeof m.path === 'string' && m.path) where.push(m.path);
  if (Number.isFinite(m.baud)) where.push(`${m.baud} baud`);
  whereEl.textContent = where.join(' · ');
  const label = { open: 'open', absent: 'absent' }[m.state] || String(m.state || 'unknown');
  stateEl.textContent = label;
  stateEl.dataset.state = String(m.state || '');
  const problem = typeof m.problem === 'string' ? m.problem : '';
  problemEl.textContent = problem;
  problemEl.hidden = !problem;
  if (m.state !== 'open') {
    holderEl.textContent = m.state === 'absent' ? 'Looking for the port every 2 s.' : '';
    holderEl.dataset.kind = 'absent';
  } else if (m.you_hold) {
    holderEl.textContent = 'You hold the port: what you type goes to the device.';
    holderEl.dataset.kind = 'you';
  } else if (m.holder) {
    holderEl.textContent = `${m.holder} holds the port: you can type once they stop (10 s).`;
    holderEl.dataset.kind = 'other';
  } else {
    holderEl.textContent = 'Nobody holds the port: the first to type gets it.';
    holderEl.dataset.kind = 'free';
  }
  holderEl.hidden = !holderEl.textContent;
  updateInput();
}

/// The call's `serial` data channel (made before the offer, next to `rtcam`).
export function attachSerial(dc) {
  channel = dc;
  dc.binaryType = 'arraybuffer';
  decoder = new TextDecoder('utf-8');
  dc.onopen = () => {
    if (channel !== dc) return;
    serialState.open = true;
    updateInput();
  };
  dc.onclose = () => {
    if (channel === dc) detachSerial();
  };
  dc.onmessage = (ev) => {
    if (channel === dc) feedSerial(ev.data);
  };
}

export function detachSerial() {
  if (channel) {
    channel.onopen = channel.onclose = channel.onmessage = null;
  }
  channel = null;
  serialState.open = false;
  const tail = decoder.decode(); // a character cut off by the end of the call
  if (tail) feedSerial(encoder.encode(tail));
  updateInput();
}

on('serial', onSerial);
on('error', (m) => {
  if (!SERIAL_REASONS.has(m.reason)) return;
  const text = String(m.message || m.reason);
  serialState.errors.push({ reason: m.reason, message: text, at: Date.now() });
  if (serialState.errors.length > 20) serialState.errors.shift();
  say(text);
});
onChannel(() => updateInput());

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = input.value;
  if (!sendSerialLine(text)) return;
  if (text && history[history.length - 1] !== text) {
    history.push(text);
    if (history.length > HISTORY) history.shift();
  }
  historyAt = -1;
  input.value = '';
  input.focus();
});

// Up / Down: the lines sent before, like a shell.
input.addEventListener('keydown', (ev) => {
  if (ev.key !== 'ArrowUp' && ev.key !== 'ArrowDown') return;
  if (!history.length) return;
  ev.preventDefault();
  if (ev.key === 'ArrowUp') historyAt = historyAt === -1 ? history.length - 1 : Math.max(0, historyAt - 1);
  else historyAt = historyAt === -1 ? -1 : historyAt + 1;
  if (historyAt >= history.length) historyAt = -1;
  input.value = historyAt === -1 ? '' : history[historyAt];
});

clearBtn.addEventListener('click', () => {
  serialState.received = '';
  queueRender();
});

logEl.dataset.empty = 'true';
updateInput();
