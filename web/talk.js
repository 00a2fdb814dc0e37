// Two-way audio on the page: the device's sound (its microphone, Opus in the call's audio
// m-section, played by the page's <video> together with the picture) and the viewer's voice to the
// device's speaker (README, "Talking to the device").
//
// - Sound: a toolbar toggle (aria-pressed) mutes or unmutes the device's sound; the choice is kept
//   in localStorage ('rtcam.sound', default on). The Call click is the gesture that lets it play.
// - Talk: push-to-talk (hold the button, or hold Space during a call when not typing) or hands-free
//   with the lock next to it. The microphone is asked for once per call (getUserMedia, with echo
//   cancellation, noise suppression and gain control); the track is put on the audio transceiver's
//   sender with replaceTrack (no renegotiation) and enabled only while talking. One talker at a
//   time: the page asks the device for the floor with {"type":"talk","on":true} and lets it go with
//   {"type":"talk","on":false}; the device says who holds it ({"type":"talk","holder","you_hold"})
//   and refuses an ask with an error (talk_busy, not_allowed, talk_unavailable).
// - The device's audio state ({"type":"audio","microphone","speaker","echo","may_talk"}) decides
//   whether Talk is possible; its problems are shown in the stats panel and the buttons' titles.
// - Received audio stats (getStats, inbound-rtp kind=audio) and the device's telemetry `audio`
//   go to the link readout and the stats panel.
// Text from the channel is only ever put in the page with textContent.

import { channelOpen, on, onChannel, sendJson } from './chat.js';

const SOUND_KEY = 'rtcam.sound';
const FLOOR_GAP_MS = 250; // at most 4 talk messages a second (the device takes 5 of any kind)
const TOO_FAST_RETRY_MS = 1000;
const ASK_WINDOW_MS = 3000; // an error this soon after an ask is the answer to it
const MIC = { audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } };

const $ = (id) => document.getElementById(id);
const soundBtn = $('sound');
const talkBtn = $('talk');
const lockBtn = $('talk-lock');
const meterFill = $('talk-meter');
const badge = $('talk-badge');
const badgeText = $('talk-badge-text');
const statsEl = $('stats');
const audioNote = $('st-audio-note');
const lqAudio = $('lq-audio');

// What a test (or a person at the console) may read (window.rtcam.talk).
export const talkState = {
  holder: null, // who holds the talk floor (the device's last talk message), or null
  youHold: false, // this page holds it
  talking: false, // the user is talking (button or Space held, or locked): the microphone is on
  locked: false, // hands-free: talking until the lock is pressed again
  level: 0, // the microphone's level, 0..1, while talking
  micError: null, // why the microphone could not be had (text for people), or null
  may: false, // Talk is possible now (a call, the device's speaker open, may_talk)
  why: 'Talking works during a call: press Call first', // why not, when may is false
  asked: false, // the last talk message sent was {"on":true}
  sent: [], // the last 20 talk messages sent: {on, at}
  lastSent: null,
  refusals: [], // the last 20 refused asks: {reason, message, at}
  trackState: null, // the microphone track's readyState ('live' | 'ended'), null without one
};

// The device's sound and how it arrives (window.rtcam.audio).
export const audioState = {
  message: null, // the device's last {"type":"audio"} message, as sent
  mayTalk: null,
  echo: null,
  sound: true, // the Sound toggle: the device's sound plays
  blocked: false, // the browser refused to play it with sound (press Sound)
  tracks: 0, // received audio tracks in this call
  packetsReceived: null, // getStats inbound-rtp kind=audio (this attempt of the call)
  packetsLost: null,
  lossPct: null, // over the last 2 s
  jitterMs: null,
  concealedPct: null, // concealedSamples / totalSamplesReceived, %
  jitterBufferMs: null, // jitterBufferDelay / jitterBufferEmittedCount, ms
  codec: '',
  statsTime: null,
  sendLevel: null, // the outgoing microphone's level from getStats (media-source), 0..1
  telemetry: null, // the device's telemetry `audio` object, as sent
};

let notify = () => {};
let typingIn = () => false;
let video = null;

let inCall = false; // between Call and the call's end (retries included)
let callSeq = 0;
let transceiver = null; // this attempt's audio transceiver
let micTrack = null;
let micPending = null;
let talkSeq = 0; // bumped by every stop: an earlier start that is still waiting gives up
let heldThisTalk = false; // the device said you_hold during this talk
let pressSource = null; // 'pointer' | 'key' | 'click' while held
let pressPointer = null;
let pressEndedAt = 0;

let floorWanted = false;
let floorSent = false; // what the device was last told; null: unknown (a message was dropped)
let floorSentAt = -Infinity;
let lastAskAt = -Infinity;
let floorTimer = null;

let audioCtx = null;
let analyser = null;
let analyserSource = null;
let analyserTrack = null;
let samples = null;
let meterHandle = null;
let statsWindow = [];
let prevStats = null;

// ---------------------------------------------------------------- the device's sound

function savedSound() {
  try {
    return localStorage.getItem(SOUND_KEY) !== 'off';
  } catch {
    return true;
  }
}

function renderSound() {
  const playing = audioState.sound && !audioState.blocked;
  soundBtn.setAttribute('aria-pressed', String(playing));
  const mic = audioState.message && audioState.message.microphone;
  let title = playing ? "Mute the device's sound" : "Play the device's sound";
  if (audioState.blocked) title = "The browser held the sound back: press to hear the device";
  const micWhy = deviceProblem(mic, 'microphone');
  if (micWhy) title += ` (${micWhy})`;
  soundBtn.title = title;
}

/// The Call click: the user's gesture, which lets the page play the device's sound.
export function primeSound() {
  audioState.blocked = false;
  video.muted = !audioState.sound;
  // Safari lets an element play sound later once play() was called in a gesture.
  const p = video.play();
  if (p && p.catch) p.catch(() => {});
  renderSound();
}

/// Plays the <video> (picture and sound); a browser that refuses sound gets it muted, and the
/// Sound button says so.
export function playVideo() {
  video.muted = !audioState.sound || audioState.blocked;
  const p = video.play();
  if (!p || !p.catch) return;
  p.catch((e) => {
    if (!e || e.name !== 'NotAllowedError' || video.muted) return;
    audioState.blocked = true;
    video.muted = true;
    renderSound();
    notify('The browser held the sound back: press Sound to hear the device.', 'info', 6000);
    const q = video.play();
    if (q && q.catch) q.catch(() => {});
  });
}

function toggleSound() {
  const playing = audioState.sound && !audioState.blocked;
  audioState.sound = !playing;
  audioState.blocked = false;
  try {
    localStorage.setItem(SOUND_KEY, audioState.sound ? 'on' : 'off');
  } catch {
    // Private windows may refuse storage: the choice lasts for this page.
  }
  video.muted = !audioState.sound;
  if (audioState.sound && video.srcObject && video.paused) playVideo();
  renderSound();
}

/// A track arrived on the call (app.js's ontrack).
export function noteTrack(track) {
  if (track && track.kind === 'audio') audioState.tracks++;
}

// ---------------------------------------------------------------- may this page talk?

function deviceProblem(part, what) {
  if (!part || typeof part !== 'object') return '';
  if (part.state === 'open') return '';
  const problem = typeof part.problem === 'string' && part.problem ? `: ${part.problem}` : '';
  if (part.state === 'absent') return `the device's ${what} is missing${problem}`;
  if (part.state === 'off') return `the device's ${what} is off${problem}`;
  return problem ? `the device's ${what}${problem}` : '';
}

function blocker() {
  if (!inCall) return 'Talking works during a call: press Call first';
  if (!channelOpen() || !transceiver) return 'Talking starts once the call is connected';
  const dir = transceiver.currentDirection;
  if (transceiver.stopped || dir === 'inactive' || dir === 'recvonly' || dir === 'stopped') {
    return 'The device takes no sound from this page in this call';
  }
  const m = audioState.message;
  if (!m) return 'Waiting for the device to say whether it has a speaker';
  if (m.may_talk === false) return 'This login may only listen: it may not talk through the device';
  const speaker = m.speaker && typeof m.speaker === 'object' ? m.speaker : null;
  if (!speaker || speaker.state !== 'open') {
    const why = deviceProblem(speaker, 'speaker') || "the device's speaker is not open";
    return `No talking: ${why}`;
  }
  return '';
}

function cap(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

function render() {
  const why = blocker();
  talkState.may = !why;
  talkState.why = why;
  if (why && talkState.talking) stopTalking();
  const hadFocus = document.activeElement === talkBtn || document.activeElement === lockBtn;
  talkBtn.disabled = !!why;
  lockBtn.disabled = !!why;
  // A button that went away under the keyboard's focus: keep the focus in the toolbar.
  if (why && hadFocus) talkBtn.closest('[tabindex]').focus();
  talkBtn.setAttribute('aria-pressed', String(talkState.talking));
  lockBtn.setAttribute('aria-pressed', String(talkState.locked));
  talkBtn.dataset.state = talkState.youHold ? 'held' : talkState.talking ? 'asking' : '';
  if (why) {
    talkBtn.title = cap(why);
  } else {
    let t = 'Hold to talk (or hold Space)';
    if (talkState.holder && !talkState.youHold) t = `${talkState.holder} is talking. ${t}`;
    const m = audioState.message;
    if (m && m.echo === 'half-duplex') t += "; the device's microphone pauses while you talk";
    const micWhy = deviceProblem(m && m.microphone, 'microphone');
    if (micWhy) t += `; ${micWhy}`;
    talkBtn.title = t;
  }
  lockBtn.title = why
    ? cap(why)
    : talkState.locked
      ? 'Stop talking (hands-free is on)'
      : 'Keep talking hands-free, without holding';

  // Who is talking, over the picture (for everyone).
  let text = '';
  let kind = '';
  if (talkState.youHold && talkState.talking) {
    text = 'You are talking';
    kind = 'you';
  } else if (talkState.talking) {
    text = 'Starting to talk…';
    kind = 'asking';
  } else if (talkState.holder) {
    text = `${talkState.holder} is talking`;
    kind = 'other';
  }
  if (badgeText.textContent !== text) badgeText.textContent = text;
  // (Never hidden: its text is a live region, read out as it changes. Empty, it shows nothing.)
  badge.dataset.kind = kind;
  renderSound();
  renderAudioStats();
}

// ---------------------------------------------------------------- the floor

function syncFloor() {
  if (floorTimer) return;
  if (floorWanted === floorSent) return;
  const wait = floorSentAt + FLOOR_GAP_MS - performance.now();
  if (wait > 0) {
    floorTimer = setTimeout(() => {
      floorTimer = null;
      syncFloor();
    }, wait);
    return;
  }
  sendFloor(floorWanted);
}

function sendFloor(wanted) {
  if (!sendJson({ type: 'talk', on: wanted })) return;
  floorSent = wanted;
  floorSentAt = performance.now();
  if (wanted) lastAskAt = floorSentAt;
  talkState.asked = wanted;
  talkState.lastSent = { on: wanted, at: Date.now() };
  talkState.sent.push(talkState.lastSent);
  if (talkState.sent.length > 20) talkState.sent.shift();
}

/// Whether a not_allowed error now is the answer to this page's ask for the floor (not a control's).
export function talkAskedRecently() {
  return performance.now() - lastAskAt < ASK_WINDOW_MS;
}

function resetFloor() {
  if (floorTimer) clearTimeout(floorTimer);
  floorTimer = null;
  floorWanted = false;
  floorSent = false;
  floorSentAt = -Infinity;
  talkState.asked = false;
}

// ---------------------------------------------------------------- the microphone

function micErrorText(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'PermissionDeniedError') return 'Microphone permission denied';
  if (name === 'NotFoundError' || name === 'DevicesNotFoundError') return 'No microphone found';
  if (name === 'InsecureContext') return 'Talking needs a secure (https) page';
  return (e && e.message) || String(e || 'The microphone did not start');
}

function microphone() {
  if (micTrack && micTrack.readyState === 'live') return Promise.resolve(micTrack);
  if (micPending) return micPending;
  const md = navigator.mediaDevices;
  if (!window.isSecureContext || !md || typeof md.getUserMedia !== 'function') {
    const e = new Error('Talking needs a secure (https) page');
    e.name = 'InsecureContext';
    return Promise.reject(e);
  }
  const seq = callSeq;
  micPending = navigator.mediaDevices
    .getUserMedia(MIC)
    .then((stream) => {
      const track = stream.getAudioTracks()[0];
      for (const t of stream.getTracks()) if (t !== track) t.stop();
      if (!track) {
        const e = new Error('No microphone found');
        e.name = 'NotFoundError';
        throw e;
      }
      if (seq !== callSeq || !inCall) {
        track.stop(); // the call ended while the browser asked
        throw Object.assign(new Error('The call ended'), { name: 'CallEnded' });
      }
      track.enabled = false;
      track.addEventListener('ended', () => micEnded(track));
      micTrack = track;
      talkState.trackState = track.readyState;
      return track;
    })
    .finally(() => {
      micPending = null;
    });
  return micPending;
}

function micEnded(track) {
  if (track !== micTrack) return;
  micTrack = null;
  talkState.trackState = 'ended';
  if (talkState.talking) {
    stopTalking();
    notify('The microphone stopped (unplugged, or taken by another program).', 'error', 6000);
  }
}

// ---------------------------------------------------------------- the level meter

function setupAnalyser(track) {
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return;
  try {
    if (!audioCtx) audioCtx = new AC();
    if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
    if (analyserTrack !== track) {
      if (analyserSource) analyserSource.disconnect();
      analyserSource = audioCtx.createMediaStreamSource(new MediaStream([track]));
      analyser = audioCtx.createAnalyser();
      analyser.fftSize = 1024;
      analyserSource.connect(analyser);
      analyserTrack = track;
      samples = new Float32Array(analyser.fftSize);
    }
  } catch {
    analyser = null;
    analyserTrack = null;
  }
}

function meterFrame() {
  meterHandle = null;
  if (!talkState.talking) return;
  let level = null;
  if (analyser && audioCtx && audioCtx.state === 'running') {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    const rms = Math.sqrt(sum / samples.length);
    // -60 dBFS .. 0 dBFS on the bar.
    level = rms > 0 ? Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60)) : 0;
  } else if (audioState.sendLevel !== null) {
    level = audioState.sendLevel; // no running AudioContext: what getStats says went out
  }
  if (level !== null) {
    // Up at once, down smoothly (a bar that flickers is hard to read).
    talkState.level = Math.max(level, talkState.level * 0.85);
  }
  meterFill.style.setProperty('--level', talkState.level.toFixed(3));
  meterHandle = requestAnimationFrame(meterFrame);
}

function startMeter(track) {
  setupAnalyser(track);
  if (meterHandle === null) meterHandle = requestAnimationFrame(meterFrame);
}

function stopMeter() {
  if (meterHandle !== null) cancelAnimationFrame(meterHandle);
  meterHandle = null;
  talkState.level = 0;
  meterFill.style.setProperty('--level', '0');
}

// ---------------------------------------------------------------- talking

/// Starts talking (what pressing Talk does). Resolves to true once the microphone is on the call
/// and the floor was asked for, false when talking is not possible (the reason is shown).
export async function startTalking() {
  if (talkState.talking) return true;
  const why = blocker();
  if (why) {
    notify(cap(why), 'error');
    render();
    return false;
  }
  const seq = ++talkSeq;
  talkState.talking = true;
  heldThisTalk = false;
  render();
  let track;
  try {
    track = await microphone();
  } catch (e) {
    if (e && e.name === 'CallEnded') return false;
    const text = micErrorText(e);
    talkState.micError = text;
    if (seq === talkSeq) {
      talkState.talking = false;
      talkState.locked = false;
      pressSource = null;
      render();
    }
    notify(text, 'error', 6000);
    return false;
  }
  talkState.micError = null;
  if (seq !== talkSeq || !talkState.talking) return false; // let go while the browser asked
  const tr = transceiver;
  if (!tr || blocker()) {
    stopTalking();
    return false;
  }
  try {
    if (tr.sender.track !== track) await tr.sender.replaceTrack(track);
  } catch (e) {
    if (seq === talkSeq) stopTalking();
    notify(`The microphone could not join the call: ${(e && e.message) || e}`, 'error', 6000);
    return false;
  }
  if (seq !== talkSeq || !talkState.talking || tr !== transceiver) return false;
  track.enabled = true;
  floorWanted = true;
  syncFloor();
  startMeter(track);
  render();
  return true;
}

/// Stops talking (what letting go of Talk does): the microphone is muted and the floor let go.
export function stopTalking() {
  talkSeq++;
  const was = talkState.talking || talkState.locked;
  talkState.talking = false;
  talkState.locked = false;
  heldThisTalk = false;
  pressSource = null;
  if (micTrack) micTrack.enabled = false;
  floorWanted = false;
  syncFloor();
  stopMeter();
  if (was) render();
}

function press(source) {
  pressSource = source;
  if (talkState.locked) {
    // Talk pressed while hands-free: back to push-to-talk, so letting go ends it.
    talkState.locked = false;
    render();
  }
  if (!talkState.talking) startTalking();
}

function unpress(source) {
  if (pressSource !== source) return;
  pressSource = null;
  pressEndedAt = performance.now();
  if (!talkState.locked) stopTalking();
}

function toggleLock() {
  if (talkState.locked) {
    stopTalking();
    return;
  }
  talkState.locked = true;
  if (talkState.talking) {
    render();
    return;
  }
  startTalking().then((ok) => {
    if (!ok) talkState.locked = false;
    render();
  });
}

// The floor lost while talking (the device heard silence for a while, or gave it away).
function floorLost() {
  const who = talkState.holder;
  // The device already let go of it: nothing to say back.
  floorSent = false;
  talkState.asked = false;
  stopTalking();
  notify(who ? `${who} is talking` : 'You stopped talking: the device heard silence for a few seconds.', 'info');
}

// ---------------------------------------------------------------- messages

on('audio', (m) => {
  audioState.message = m;
  audioState.mayTalk = typeof m.may_talk === 'boolean' ? m.may_talk : null;
  audioState.echo = typeof m.echo === 'string' ? m.echo : null;
  render();
});

on('talk', (m) => {
  talkState.holder = typeof m.holder === 'string' && m.holder ? m.holder : null;
  const youHold = m.you_hold === true;
  talkState.youHold = youHold;
  if (youHold && talkState.talking) heldThisTalk = true;
  else if (!youHold && talkState.talking && heldThisTalk) {
    // Just after an ask this may be the answer to an earlier release (a quick press again): the
    // answer to the ask comes next. Later, the device took the floor away.
    if (performance.now() - lastAskAt < 1000) {
      heldThisTalk = false;
    } else {
      floorLost();
      return;
    }
  } else if (youHold && !talkState.talking && floorSent === false && performance.now() - floorSentAt > 1000) {
    // The device thinks this page talks, and it does not (a release it never got): say so again.
    floorSent = null;
    syncFloor();
  }
  render();
});

on('telemetry', (m) => {
  audioState.telemetry = m.audio && typeof m.audio === 'object' ? m.audio : null;
  renderAudioStats();
});

const TALK_REFUSALS = new Set(['talk_busy', 'talk_unavailable', 'not_allowed']);
on('error', (m) => {
  const recent = performance.now() - floorSentAt < ASK_WINDOW_MS;
  if (m.reason === 'too_fast' && recent && floorSent !== null) {
    // The device dropped a message, maybe ours: tell it again in a moment.
    floorSent = null;
    floorSentAt = performance.now() + TOO_FAST_RETRY_MS - FLOOR_GAP_MS;
    syncFloor();
    return;
  }
  if (!TALK_REFUSALS.has(m.reason)) return;
  if (m.reason === 'not_allowed' && !talkAskedRecently()) return; // a control's, not ours
  talkState.refusals.push({ reason: m.reason, message: String(m.message || ''), at: Date.now() });
  if (talkState.refusals.length > 20) talkState.refusals.shift();
  const text =
    m.reason === 'talk_busy'
      ? talkState.holder && !talkState.youHold
        ? `${talkState.holder} is talking`
        : String(m.message || 'Someone else is talking')
      : m.reason === 'not_allowed'
        ? String(m.message || 'This login may not talk through the device')
        : String(m.message || "The device's speaker is not available");
  // Refused: the device holds nothing for this page, and needs no word back.
  floorSent = false;
  talkState.asked = false;
  stopTalking();
  notify(text, m.reason === 'talk_busy' ? 'info' : 'error');
});

onChannel((open) => {
  if (!open) {
    // The device forgets this viewer with its channel; a new one hears it all again.
    stopTalking();
    resetFloor();
    talkState.holder = null;
    talkState.youHold = false;
    audioState.message = null;
    audioState.mayTalk = null;
    audioState.echo = null;
  }
  render();
});

// ---------------------------------------------------------------- the call (app.js)

/// A new attempt of the call: its audio transceiver (sendrecv, made before the offer).
export function attachTalk(tr) {
  if (!inCall) {
    inCall = true;
    callSeq++;
  }
  transceiver = tr;
  statsWindow = [];
  prevStats = null;
  render();
}

/// The attempt is going away (a retry follows, or the call ends): let go of the floor while the
/// channel is still open. The microphone is kept for the call's next attempt.
export function detachTalk() {
  stopTalking();
  if (floorTimer) clearTimeout(floorTimer);
  floorTimer = null;
  if (floorSent !== false) sendFloor(false); // now, not after the usual gap: the channel is closing
  resetFloor();
  transceiver = null;
  render();
}

/// The call is over: the microphone is given back and everything about talking forgotten.
export function endTalk() {
  detachTalk();
  inCall = false;
  callSeq++;
  if (micTrack) micTrack.stop();
  micTrack = null;
  talkState.trackState = null;
  talkState.holder = null;
  talkState.youHold = false;
  talkState.micError = null;
  if (analyserSource) analyserSource.disconnect();
  analyserSource = null;
  analyser = null;
  analyserTrack = null;
  if (audioCtx && audioCtx.state === 'running') audioCtx.suspend().catch(() => {});
  Object.assign(audioState, {
    message: null,
    mayTalk: null,
    echo: null,
    tracks: 0,
    packetsReceived: null,
    packetsLost: null,
    lossPct: null,
    jitterMs: null,
    concealedPct: null,
    jitterBufferMs: null,
    codec: '',
    statsTime: null,
    sendLevel: null,
    telemetry: null,
  });
  lqAudio.hidden = true;
  render();
}

// ---------------------------------------------------------------- stats

const fresh = (x) => typeof x === 'number' && Number.isFinite(x);

/// One getStats report of the call (app.js polls it twice a second).
export function noteAudioStats(report) {
  let inbound = null;
  let source = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && (s.kind === 'audio' || s.mediaType === 'audio')) inbound = s;
    if (s.type === 'media-source' && s.kind === 'audio') source = s;
  });
  audioState.sendLevel = source && fresh(source.audioLevel) ? source.audioLevel : null;
  if (!inbound) return;
  const t = performance.now();
  const recv = inbound.packetsReceived || 0;
  const lost = Math.max(0, inbound.packetsLost || 0);
  if (prevStats && recv >= prevStats.recv) {
    statsWindow.push({ got: recv - prevStats.recv, missed: Math.max(0, lost - prevStats.lost) });
    if (statsWindow.length > 4) statsWindow.shift(); // the last 2 s
    const got = statsWindow.reduce((a, w) => a + w.got, 0);
    const missed = statsWindow.reduce((a, w) => a + w.missed, 0);
    audioState.lossPct = got + missed > 0 ? (missed / (got + missed)) * 100 : audioState.lossPct;
  } else {
    statsWindow = [];
  }
  prevStats = { recv, lost };
  audioState.packetsReceived = recv;
  audioState.packetsLost = lost;
  audioState.jitterMs = fresh(inbound.jitter) ? inbound.jitter * 1000 : null;
  audioState.concealedPct =
    inbound.totalSamplesReceived > 0 ? ((inbound.concealedSamples || 0) / inbound.totalSamplesReceived) * 100 : null;
  audioState.jitterBufferMs =
    inbound.jitterBufferEmittedCount > 0 ? (inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount) * 1000 : null;
  const codec = inbound.codecId ? report.get(inbound.codecId) : null;
  if (codec && codec.mimeType) audioState.codec = codec.mimeType;
  audioState.statsTime = Date.now();
  renderLinkAudio();
  renderAudioStats();
}

function pct(v) {
  return v < 10 ? v.toFixed(1) : String(Math.round(v));
}

// The link readout's audio item: packets lost over the last 2 s (and how many came, in its title).
function renderLinkAudio() {
  const got = audioState.packetsReceived;
  if (got === null || (got === 0 && !audioState.packetsLost)) {
    lqAudio.hidden = true;
    return;
  }
  const loss = audioState.lossPct;
  lqAudio.querySelector('.lq-v').textContent = loss === null ? '–' : `${pct(loss)} %`;
  lqAudio.dataset.q = loss === null ? '' : loss <= 1 ? 'good' : loss <= 5 ? 'fair' : 'poor';
  lqAudio.title = `Sound from the device: ${got} packets, ${audioState.packetsLost} lost${
    audioState.sound && !audioState.blocked ? '' : ' (muted here)'
  }`;
  lqAudio.hidden = false;
}

const msText = (v) => (fresh(v) ? `${Math.round(v)} ms` : '–');

function partText(p) {
  if (!p || typeof p !== 'object') return '–';
  return typeof p.state === 'string' ? p.state : '–';
}

/// The stats panel's audio rows (only while it is open).
export function renderAudioStats() {
  const m = audioState.message;
  // The device's microphone and speaker problems: a note under the stats.
  const notes = [];
  for (const [key, what] of [
    ['microphone', 'Microphone'],
    ['speaker', 'Speaker'],
  ]) {
    const p = m && m[key];
    if (!p || typeof p !== 'object' || p.state === 'open') continue;
    const name = typeof p.device === 'string' && p.device ? ` ${p.device}` : '';
    const problem = typeof p.problem === 'string' && p.problem ? `: ${p.problem}` : '';
    notes.push(`${what}${name} ${p.state || 'unknown'}${problem}`);
  }
  if (talkState.micError) notes.push(`This page's microphone: ${talkState.micError}`);
  const note = notes.join(' · ');
  if (audioNote.textContent !== note) audioNote.textContent = note;
  audioNote.hidden = !note;
  if (statsEl.hidden) return;
  const set = (id, text) => {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  };
  const a = audioState;
  set(
    'st-audio-in',
    a.packetsReceived === null
      ? '–'
      : `${a.packetsReceived} pkts, ${a.packetsLost} lost${a.codec ? ` (${a.codec.replace(/^audio\//, '')})` : ''}`,
  );
  set(
    'st-audio-jitter',
    a.packetsReceived === null ? '–' : `${msText(a.jitterMs)} · buffer ${msText(a.jitterBufferMs)}`,
  );
  set('st-audio-concealed', fresh(a.concealedPct) ? `${pct(a.concealedPct)} %` : '–');
  const t = a.telemetry;
  const echo = (m && m.echo) || (t && t.echo) || '–';
  // The canceller's own figure: how much of the echo its filter removes.
  const erle = t && typeof t.echo_erle_db === 'number' ? ` (ERLE ${Math.round(t.echo_erle_db)} dB)` : '';
  set('st-audio-device', m ? `mic ${partText(m.microphone)}, speaker ${partText(m.speaker)}, echo ${echo}${erle}` : '–');
  // What the device counted: its microphone's packets sent, this page's voice received and played.
  const n = (v) => (fresh(v) ? String(v) : '–');
  set('st-audio-dev', t ? `${n(t.packets_sent)} / ${n(t.packets_received)}` : '–');
  const play = [];
  if (t && fresh(t.jitter_ms)) play.push(`jitter ${Math.round(t.jitter_ms)} ms`);
  if (t && fresh(t.concealed)) play.push(`${t.concealed} concealed`);
  if (t && fresh(t.underruns)) play.push(`${t.underruns} underruns`);
  set('st-audio-play', play.length ? play.join(', ') : '–');
}

// ---------------------------------------------------------------- wiring

/// notify(text, kind, ms): the page's toast; typingIn(el): whether keys go to a text field there;
/// video: the <video> that plays the call.
export function initTalk(opts) {
  notify = opts.notify;
  typingIn = opts.typingIn;
  video = opts.video;
  audioState.sound = savedSound();
  video.muted = true; // until the Call click (autoplay with sound needs a gesture)
  render();
}

soundBtn.addEventListener('click', toggleSound);

// Hold the button: pointer capture, so letting go anywhere (having slid off) still ends it.
talkBtn.addEventListener('pointerdown', (ev) => {
  if (ev.button !== 0 || talkBtn.disabled) return;
  ev.preventDefault(); // no text selection, no long-press menu, no emulated mouse events
  pressPointer = ev.pointerId;
  try {
    talkBtn.setPointerCapture(ev.pointerId);
  } catch {
    // A pointer already gone: its up event ends the press.
  }
  press('pointer');
});
const pointerGone = (ev) => {
  if (ev.pointerId !== pressPointer) return;
  pressPointer = null;
  unpress('pointer');
};
talkBtn.addEventListener('pointerup', pointerGone);
talkBtn.addEventListener('pointercancel', pointerGone);
talkBtn.addEventListener('lostpointercapture', pointerGone);
talkBtn.addEventListener('contextmenu', (ev) => ev.preventDefault());
// A click with no press behind it (a screen reader's, or a test's): talk until the next one.
talkBtn.addEventListener('click', (ev) => {
  ev.preventDefault();
  if (pressSource || performance.now() - pressEndedAt < 600) return;
  if (talkState.talking) stopTalking();
  else startTalking();
});
// Enter held on the button talks like Space.
talkBtn.addEventListener('keydown', (ev) => {
  if (ev.key !== 'Enter' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  ev.preventDefault(); // also for the repeats: Enter would click the button
  if (!ev.repeat && !pressSource) press('key');
});
talkBtn.addEventListener('keyup', (ev) => {
  if (ev.key !== 'Enter') return;
  ev.preventDefault();
  unpress('key');
});

lockBtn.addEventListener('click', toggleLock);

// Space held during a call: push-to-talk, wherever the focus is, except where Space types or
// ticks something. (It also keeps Space from pressing a focused button, Hang up included: during a
// call Enter presses buttons.)
function spaceTypes(el) {
  if (!el) return false;
  if (typingIn(el)) return true;
  if (el.tagName === 'INPUT' && ['checkbox', 'radio', 'range'].includes(el.type)) return true;
  return el.tagName === 'SUMMARY' || el.getAttribute('role') === 'slider';
}

const isSpace = (ev) => ev.code === 'Space' || ev.key === ' ';

document.addEventListener('keydown', (ev) => {
  if (!isSpace(ev) || !inCall || ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (document.querySelector('dialog[open]') || spaceTypes(document.activeElement)) return;
  ev.preventDefault();
  if (ev.repeat || pressSource) return;
  press('key');
});
document.addEventListener('keyup', (ev) => {
  if (!isSpace(ev) || pressSource !== 'key') return;
  ev.preventDefault();
  unpress('key');
});
// Keys and pointers let go where the page cannot see them (another window took the focus).
window.addEventListener('blur', () => {
  if (pressSource === 'key') unpress('key');
});
document.addEventListener('visibilitychange', () => {
  if (document.hidden && pressSource) unpress(pressSource);
});
