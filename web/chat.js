// The call's `rtcam` data channel on the page (README, "Data channel"): the chat panel, and the
// link readout from the telemetry the camera pushes once a second.
// Text from the channel is only ever put in the page as text (textContent), never as HTML.

const NAME_KEY = 'rtcam.name';
const MAX_LINES = 200;

const panel = document.getElementById('chat');
const log = document.getElementById('chat-log');
const form = document.getElementById('chat-form');
const input = document.getElementById('chat-text');
const nameInput = document.getElementById('chat-name');
const note = document.getElementById('chat-note');
const readout = document.getElementById('link-readout');

let channel = null;

// What a test (or a person at the console) may read.
export const chatState = { open: false, lines: [], errors: [], telemetry: null };

function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

function sendJson(msg) {
  if (channel && channel.readyState === 'open') channel.send(JSON.stringify(msg));
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

function addLine(m) {
  chatState.lines.push({ from: m.from, text: m.text, at: m.at, received: Date.now() });
  if (chatState.lines.length > MAX_LINES) chatState.lines.shift();
  const li = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'chat-from';
  who.textContent = String(m.from);
  const when = document.createElement('time');
  when.className = 'chat-at';
  when.textContent = timeOf(m.at);
  const text = document.createElement('span');
  text.className = 'chat-line';
  text.textContent = String(m.text);
  li.append(who, when, text);
  log.append(li);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function onMessage(ev) {
  if (typeof ev.data !== 'string') return;
  let m;
  try {
    m = JSON.parse(ev.data);
  } catch {
    return;
  }
  if (m.type === 'chat') {
    addLine(m);
  } else if (m.type === 'telemetry') {
    chatState.telemetry = m;
    showTelemetry(m);
  } else if (m.type === 'error') {
    chatState.errors.push(m.reason);
    show(m.message || m.reason);
  }
}

function pct(f) {
  return typeof f === 'number' ? `${(f * 100).toFixed(f < 0.1 ? 1 : 0)} %` : '–';
}

function showTelemetry(t) {
  const parts = [`${Math.round(t.fps)} fps`];
  if (typeof t.bitrate_kbps === 'number') parts.push(`${(t.bitrate_kbps / 1000).toFixed(1)} Mbit/s`);
  if (typeof t.rtt_ms === 'number') parts.push(`RTT ${Math.round(t.rtt_ms)} ms`);
  parts.push(`loss ${pct(t.wire_loss)}`);
  if (t.copies > 1) parts.push(`sent ×${t.copies}`);
  if (t.thinned) parts.push('slow link: half the frames');
  parts.push(`${t.viewers} watching`);
  readout.textContent = parts.join(' · ');
  readout.hidden = false;
}

/// The call's data channel (made before the offer, so it rides in it).
export function attachChat(dc) {
  channel = dc;
  dc.onopen = () => {
    if (channel !== dc) return;
    chatState.open = true;
    panel.dataset.open = 'true';
    input.disabled = false;
    form.querySelector('button').disabled = false;
    show('');
    sayHello();
  };
  dc.onclose = () => {
    if (channel === dc) detachChat();
  };
  dc.onmessage = onMessage;
}

export function detachChat() {
  channel = null;
  readout.hidden = true;
  chatState.open = false;
  panel.dataset.open = 'false';
  input.disabled = true;
  form.querySelector('button').disabled = true;
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
