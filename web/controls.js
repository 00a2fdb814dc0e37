// The camera's controls drawer, made from the `controls` message on the rtcam channel
// (protocol: {"type":"controls","may_set":bool,"controls":[{id,name,kind,min,max,step,default,value,
// items?,restarts}]}). One row per control: integer -> range + its value, boolean -> switch,
// menu -> select, each with a reset to its default. Moving one sends {"type":"set","control":id,
// "value":int}: while a slider is dragged at most 4 a second, and always the final value on change
// (a control that restarts the camera sends only the final value). A later controls message
// updates the rows in place (the same controls: no rebuild) and never moves a slider the user is
// holding: its value waits until the user lets go.
// Names and labels from the channel are only ever put in the page with textContent.

import { on, onChannel, sendJson, channelOpen } from './chat.js';
import { talkAskedRecently } from './talk.js';

const THROTTLE_MS = 250; // at most 4 sets a second per control while dragging
const HOLD_MS = 900; // after the user's last move, a control is theirs for this long
const RESET_ALL_GAP_MS = 250;
const ERROR_SHOW_MS = 8000;
const CONTROL_REASONS = new Set(['unknown_control', 'out_of_range', 'not_allowed', 'control_failed']);

const $ = (id) => document.getElementById(id);
const drawer = $('controls');
const toggleBtn = $('controls-toggle');
const closeBtn = $('controls-close');
const listEl = $('controls-list');
const noteEl = $('controls-note');
const errorEl = $('controls-error');
const cameraEl = $('controls-camera');
const resetAllBtn = $('controls-reset-all');

// What a test (or a person at the console) may read.
export const controlsState = {
  received: 0, // controls messages seen
  maySet: null, // the last message's may_set
  list: [], // the last message's controls, as sent
  lastSent: null, // {control, value, at, delivered}
  sent: [], // the last 50 sets, oldest first
  errors: [], // [{reason, message, at}] control errors, the last 20
  open: false, // the drawer is open
  rebuilds: 0, // times the rows were made afresh (a new set of controls)
};

let rows = new Map(); // control id -> row
let signature = '';
let notify = () => {}; // app.js: a short message for when the drawer is closed
let errorTimer = null;
let resetAllTimers = [];

export function initControls(opts = {}) {
  if (typeof opts.notify === 'function') notify = opts.notify;
}

// ---------------------------------------------------------------- sending

function sendSet(row, value) {
  const msg = { type: 'set', control: row.c.id, value: Math.round(Number(value)) };
  const delivered = sendJson(msg);
  const entry = { control: msg.control, value: msg.value, at: Date.now(), delivered };
  controlsState.lastSent = entry;
  controlsState.sent.push(entry);
  if (controlsState.sent.length > 50) controlsState.sent.shift();
  row.lastSentAt = performance.now();
  row.lastSentValue = msg.value;
}

function clearPending(row) {
  if (row.timer) {
    clearTimeout(row.timer);
    row.timer = null;
  }
}

// A slider moved (pointer or keys): send now, or once the throttle allows.
function onSliderInput(row) {
  const v = Number(row.input.value);
  row.output.textContent = String(v);
  paintFill(row);
  row.holdUntil = performance.now() + HOLD_MS;
  if (row.c.restarts) return; // restarting the camera for every step would be no fun
  const wait = row.lastSentAt + THROTTLE_MS - performance.now();
  if (wait <= 0) {
    clearPending(row);
    sendSet(row, v);
  } else if (!row.timer) {
    row.timer = setTimeout(() => {
      row.timer = null;
      const now = Number(row.input.value);
      if (now !== row.lastSentValue) sendSet(row, now);
    }, wait);
  }
}

// The final value (pointer released, a key press done, a checkbox or menu changed).
function onFinal(row) {
  clearPending(row);
  row.holdUntil = performance.now() + HOLD_MS;
  scheduleReconcile(row);
  const v = valueOf(row);
  if (row.c.kind === 'integer' && v === row.lastSentValue) return; // already sent while dragging
  sendSet(row, v);
}

function defaultOf(c) {
  return c.default === undefined || c.default === null ? undefined : Math.round(Number(c.default));
}

function valueOf(row) {
  if (row.c.kind === 'boolean') return row.input.checked ? 1 : 0;
  return Math.round(Number(row.input.value));
}

// ---------------------------------------------------------------- showing values

function show(row, value) {
  if (row.c.kind === 'boolean') {
    row.input.checked = Number(value) !== 0;
  } else if (row.c.kind === 'menu') {
    const s = String(value);
    if ([...row.input.options].some((o) => o.value === s)) row.input.value = s;
  } else {
    row.input.value = String(value);
    row.output.textContent = String(Math.round(Number(row.input.value)));
    paintFill(row);
  }
}

// How far along its range a slider is, for the track's filled part (CSSOM: allowed by the CSP).
function paintFill(row) {
  const min = Number(row.input.min || 0);
  const max = Number(row.input.max || 100);
  const f = max > min ? ((Number(row.input.value) - min) / (max - min)) * 100 : 0;
  row.input.style.setProperty('--fill', `${Math.max(0, Math.min(100, f)).toFixed(1)}%`);
}

function busy(row) {
  return row.dragging || performance.now() < row.holdUntil;
}

function scheduleReconcile(row) {
  if (row.reconcile) clearTimeout(row.reconcile);
  const wait = Math.max(0, row.holdUntil - performance.now()) + 20;
  row.reconcile = setTimeout(() => {
    row.reconcile = null;
    if (busy(row)) {
      scheduleReconcile(row);
      return;
    }
    if (row.server !== undefined && valueOf(row) !== row.server) show(row, row.server);
  }, wait);
}

function updateResets() {
  const may = controlsState.maySet === true && channelOpen();
  let anyOff = false;
  for (const row of rows.values()) {
    const atDefault = row.server === defaultOf(row.c);
    if (!atDefault) anyOff = true;
    if (row.reset) row.reset.disabled = !may || atDefault;
    row.el.dataset.changed = String(!atDefault);
  }
  resetAllBtn.disabled = !may || !anyOff;
}

// ---------------------------------------------------------------- building the rows

function sig(list) {
  return JSON.stringify(
    list.map((c) => [c.id, c.kind, c.name, c.min, c.max, c.step, c.default, c.restarts, c.items]),
  );
}

const svgNS = 'http://www.w3.org/2000/svg';
function resetIcon() {
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const p = document.createElementNS(svgNS, 'path');
  p.setAttribute('d', 'M4 12a8 8 0 1 0 2.4-5.7M4 4v4h4');
  svg.append(p);
  return svg;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function defaultLabel(c) {
  if (c.kind === 'boolean') return defaultOf(c) ? 'on' : 'off';
  if (c.kind === 'menu' && Array.isArray(c.items)) {
    const it = c.items.find((i) => Number(i.value) === defaultOf(c));
    if (it) return String(it.label);
  }
  return String(c.default);
}

function makeRow(c, i) {
  const id = `ctl-${i}`;
  const row = {
    c,
    el: el('div', 'ctl'),
    input: null,
    output: null,
    reset: null,
    timer: null,
    reconcile: null,
    dragging: false,
    holdUntil: 0,
    lastSentAt: -Infinity,
    lastSentValue: undefined,
    server: undefined,
  };
  row.el.dataset.kind = String(c.kind);
  row.el.dataset.control = String(c.id);
  const name = String(c.name || c.id);
  const top = el('div', 'ctl-top');

  if (c.kind === 'boolean') {
    const lab = el('label', 'switch');
    const cb = document.createElement('input');
    cb.type = 'checkbox';
    cb.id = id;
    cb.setAttribute('role', 'switch');
    lab.append(cb, el('span', 'switch-track'), el('span', 'ctl-name', name));
    top.append(lab);
    row.input = cb;
    cb.addEventListener('change', () => onFinal(row));
  } else if (c.kind === 'menu') {
    const lab = el('label', 'ctl-name', name);
    lab.htmlFor = id;
    top.append(lab);
    const sel = el('select', 'field ctl-select');
    sel.id = id;
    for (const it of Array.isArray(c.items) ? c.items : []) {
      const o = document.createElement('option');
      o.value = String(it.value);
      o.textContent = String(it.label ?? it.value);
      sel.append(o);
    }
    row.input = sel;
    sel.addEventListener('change', () => onFinal(row));
  } else {
    const lab = el('label', 'ctl-name', name);
    lab.htmlFor = id;
    const out = el('output', 'ctl-value');
    out.htmlFor = id;
    top.append(lab, out);
    const r = document.createElement('input');
    r.type = 'range';
    r.id = id;
    r.className = 'ctl-range';
    if (Number.isFinite(c.min)) r.min = String(c.min);
    if (Number.isFinite(c.max)) r.max = String(c.max);
    r.step = String(Number.isFinite(c.step) && c.step > 0 ? c.step : 1);
    row.input = r;
    row.output = out;
    r.addEventListener('input', () => onSliderInput(row));
    r.addEventListener('change', () => onFinal(row));
    r.addEventListener('pointerdown', () => {
      row.dragging = true;
    });
  }

  if (defaultOf(c) !== undefined) {
    const b = el('button', 'icon-btn ctl-reset');
    b.type = 'button';
    b.append(resetIcon());
    b.setAttribute('aria-label', `Reset ${name} to ${defaultLabel(c)}`);
    b.title = `Reset to ${defaultLabel(c)}`;
    b.addEventListener('click', () => {
      clearPending(row);
      const d = defaultOf(row.c);
      show(row, d);
      row.holdUntil = performance.now() + HOLD_MS;
      scheduleReconcile(row);
      sendSet(row, d);
    });
    top.append(b);
    row.reset = b;
  }
  row.el.append(top);
  if (c.kind !== 'boolean') row.el.append(row.input);
  if (c.restarts) {
    const n = el('p', 'ctl-note', 'Changing it restarts the camera (about a second without video).');
    n.id = `${id}-note`;
    row.input.setAttribute('aria-describedby', n.id);
    row.el.append(n);
  }
  return row;
}

function rebuild(list) {
  const focusedId = document.activeElement && document.activeElement.closest
    ? document.activeElement.closest('.ctl')?.dataset.control
    : undefined;
  for (const row of rows.values()) {
    clearPending(row);
    if (row.reconcile) clearTimeout(row.reconcile);
  }
  rows = new Map();
  listEl.replaceChildren();
  list.forEach((c, i) => {
    if (!c || typeof c !== 'object' || c.id === undefined) return;
    const row = makeRow(c, i);
    rows.set(String(c.id), row);
    listEl.append(row.el);
  });
  controlsState.rebuilds++;
  if (focusedId !== undefined && rows.has(focusedId)) rows.get(focusedId).input.focus();
}

// ---------------------------------------------------------------- messages

function setNote() {
  let text = '';
  let kind = '';
  if (controlsState.received === 0) {
    text = channelOpen() ? 'Waiting for the camera’s controls…' : 'The camera’s controls show here during a call.';
  } else if (!channelOpen()) {
    text = 'Not connected: the controls work during a call.';
    kind = 'off';
  } else if (!controlsState.list.length) {
    text = 'This camera offers no controls.';
  } else if (controlsState.maySet === false) {
    text = 'View only: this login may watch the camera but not change it.';
    kind = 'view-only';
  }
  noteEl.textContent = text;
  noteEl.dataset.kind = kind;
  noteEl.hidden = !text;
  drawer.dataset.viewOnly = String(controlsState.maySet === false);
}

function setEnabled() {
  const may = controlsState.maySet === true && channelOpen();
  for (const row of rows.values()) row.input.disabled = !may;
  updateResets();
}

function onControls(m) {
  const list = Array.isArray(m.controls) ? m.controls : [];
  controlsState.received++;
  controlsState.maySet = m.may_set !== false;
  controlsState.list = list;
  const s = sig(list);
  if (s !== signature || rows.size === 0) {
    signature = s;
    rebuild(list);
  }
  for (const c of list) {
    const row = rows.get(String(c && c.id));
    if (!row) continue;
    row.c = c;
    row.server = Math.round(Number(c.value));
    if (busy(row)) scheduleReconcile(row);
    else show(row, row.server);
  }
  setEnabled();
  setNote();
}

function showError(m) {
  const text = String(m.message || m.reason || 'the camera refused that');
  controlsState.errors.push({ reason: m.reason, message: text, at: Date.now() });
  if (controlsState.errors.length > 20) controlsState.errors.shift();
  errorEl.textContent = text;
  errorEl.hidden = false;
  if (errorTimer) clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    errorEl.hidden = true;
    errorTimer = null;
  }, ERROR_SHOW_MS);
  if (!controlsState.open) notify(`Camera: ${text}`, 'error');
  // What was refused did not happen: show the camera's values again, now.
  for (const row of rows.values()) {
    row.holdUntil = 0;
    if (!row.dragging && row.server !== undefined) show(row, row.server);
  }
}

function onCameraName(m) {
  cameraEl.textContent = typeof m.name === 'string' ? m.name : '';
  cameraEl.hidden = !cameraEl.textContent;
}

on('controls', onControls);
on('camera', onCameraName);
on('error', (m) => {
  // A not_allowed just after this page asked to talk is talk.js's to show.
  if (m.reason === 'not_allowed' && talkAskedRecently()) return;
  if (CONTROL_REASONS.has(m.reason)) showError(m);
});
onChannel((open) => {
  if (!open) {
    for (const row of rows.values()) clearPending(row);
    for (const t of resetAllTimers) clearTimeout(t);
    resetAllTimers = [];
  }
  setEnabled();
  setNote();
});

window.addEventListener('pointerup', () => {
  for (const row of rows.values()) {
    if (row.dragging) {
      row.dragging = false;
      row.holdUntil = performance.now() + HOLD_MS;
      scheduleReconcile(row);
    }
  }
});
window.addEventListener('pointercancel', () => {
  for (const row of rows.values()) row.dragging = false;
});

resetAllBtn.addEventListener('click', () => {
  for (const t of resetAllTimers) clearTimeout(t);
  resetAllTimers = [];
  // The quick ones first; those that restart the camera last. Paced, so no flood.
  const todo = [...rows.values()]
    .filter((r) => defaultOf(r.c) !== undefined && r.server !== defaultOf(r.c))
    .sort((a, b) => Number(Boolean(a.c.restarts)) - Number(Boolean(b.c.restarts)));
  todo.forEach((row, i) => {
    resetAllTimers.push(
      setTimeout(() => {
        show(row, defaultOf(row.c));
        row.holdUntil = performance.now() + HOLD_MS;
        scheduleReconcile(row);
        sendSet(row, defaultOf(row.c));
      }, i * RESET_ALL_GAP_MS),
    );
  });
});

// ---------------------------------------------------------------- the drawer

export function openControls() {
  if (!drawer.hidden) return;
  drawer.hidden = false;
  controlsState.open = true;
  toggleBtn.setAttribute('aria-expanded', 'true');
  document.body.dataset.drawer = 'open';
  setNote();
  // Into the drawer: its first control (a slider, switch or menu), else its Close button.
  const first = [...listEl.querySelectorAll('input, select')].find((e) => !e.disabled);
  (first || closeBtn).focus();
}

export function closeControls(returnFocus = true) {
  if (drawer.hidden) return;
  const inside = drawer.contains(document.activeElement);
  drawer.hidden = true;
  controlsState.open = false;
  toggleBtn.setAttribute('aria-expanded', 'false');
  delete document.body.dataset.drawer;
  if (returnFocus || inside) toggleBtn.focus();
}

export function toggleControls() {
  if (drawer.hidden) openControls();
  else closeControls();
}

toggleBtn.addEventListener('click', toggleControls);
closeBtn.addEventListener('click', () => closeControls());
drawer.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && !ev.defaultPrevented) {
    ev.preventDefault();
    closeControls();
  }
});

setNote();
