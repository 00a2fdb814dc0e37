// The call's `rtcam` data channel on the page (README, "Data channel"): one dispatcher for every
// message on it (chat, telemetry, error, controls, camera, serial; see on() below), and the chat
// panel. `dispatch` is also what window.rtcam.inject feeds (a test / console hook), so an injected
// message takes exactly the path of one from the channel.
// Text from the channel is only ever put in the page as text (textContent), never as HTML.

const NAME_KEY = 'rtcam.name';
const MAX_LINES = 200;

const panel = document.getElementById('chat');
const log = document.getElementById('chat-log');
const form = document.getElementById('chat-form');
const input = document.getElementById('chat-text');
const sendBtn = form.querySelector('button');
const nameInput = document.getElementById('chat-name');
const note = document.getElementById('chat-note');

let channel = null;

// What a test (or a person at the console) may read.
export const chatState = { open: false, lines: [], errors: [], telemetry: null };

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

function addLine(m) {
  chatState.lines.push({ from: m.from, text: m.text, at: m.at, received: Date.now() });
  if (chatState.lines.length > MAX_LINES) chatState.lines.shift();
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  const li = document.createElement('li');
  const mine = nameInput.value.trim() && String(m.from) === nameInput.value.trim();
  if (mine) li.className = 'mine';
  const head = document.createElement('span');
  head.className = 'chat-head-line';
  const who = document.createElement('span');
  who.className = 'chat-from';
  who.textContent = String(m.from);
  const when = document.createElement('time');
  when.className = 'chat-at';
  when.textContent = timeOf(m.at);
  head.append(who, when);
  const text = document.createElement('span');
  text.className = 'chat-line';
  text.textContent = String(m.text);
  li.append(head, text);
  log.append(li);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  if (atBottom || mine) log.scrollTop = log.scrollHeight;
}

const OTHER_REASONS = new Set([
  'unknown_control',
  'out_of_range',
  'not_allowed',
  'control_failed',
  'serial_busy',
  'serial_unavailable',
]);

on('chat', addLine);
on('telemetry', (m) => {
  chatState.telemetry = m;
});
on('error', (m) => {
  chatState.errors.push(m.reason);
  if (chatState.errors.length > 50) chatState.errors.shift();
  // Controls and serial errors are shown by their own panels (controls.js, serial.js).
  if (!OTHER_REASONS.has(m.reason)) show(String(m.message || m.reason || 'error'));
});

/// The call's data channel (made before the offer, so it rides in it).
export function attachChat(dc) {
  channel = dc;
  dc.onopen = () => {
    if (channel !== dc) return;
    chatState.open = true;
    panel.dataset.open = 'true';
    input.disabled = false;
    sendBtn.disabled = false;
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
