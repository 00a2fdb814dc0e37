// rtcam viewer page: one WebRTC call to the camera (video received; audio both ways, see
// talk.js), JSON signaling over wss://<host>/ws, live stats and per-frame glass-to-glass
// latency from the timestamp stripe (shared/TIMESTAMP_STRIPE.md), the link readout, the
// camera's state, full screen and snapshots. No framework, no inline code (the page runs
// under a strict CSP).
//
// Test / console hooks (window.rtcam):
//   rtcam.inject(msg)        one rtcam-channel message (an object or its JSON text) through the
//                            same dispatcher as the channel's: controls, camera, serial, chat,
//                            telemetry, motion, error. Returns true when a handler took it.
//   rtcam.injectSerial(data) bytes as if from the `serial` channel (ArrayBuffer, typed array,
//                            array of numbers, or a string, sent as UTF-8).
//   rtcam.chat, rtcam.controls, rtcam.serial, rtcam.camera, rtcam.link, rtcam.snapshot,
//   rtcam.recordings (clips, motion events, the Motion badge, the zones and their editor): state
//                            (rtcam.chat.upload: the picture being shared; rtcam.chat.lines[i].image:
//                            a line's picture, with its state 'loading' | 'loaded' | 'gone').
//   rtcam.talk               talking to the device: {holder (who holds the talk floor, or null), youHold,
//                            talking (this page's microphone is on), locked (hands-free), level (the
//                            microphone's level 0..1 while talking), micError (why the microphone could not
//                            be had, or null), may (Talk is possible now), why (why not), asked, sent /
//                            lastSent (talk messages sent: {on, at}), refusals ({reason, message, at}),
//                            trackState}.
//   rtcam.audio              the device's sound: {message (its last {"type":"audio"} message), mayTalk, echo,
//                            sound (the Sound toggle), blocked (the browser held the sound back), tracks,
//                            packetsReceived, packetsLost, lossPct, jitterMs, concealedPct, jitterBufferMs,
//                            codec, statsTime (received audio, getStats inbound-rtp kind=audio), sendLevel,
//                            telemetry (the device's telemetry `audio` object)}.
//   rtcam.startTalking()     what pressing Talk does (the microphone through navigator.mediaDevices.getUserMedia,
//                            then {"type":"talk","on":true}); a promise of true when talking, false (and a
//                            toast saying why) when not.
//   rtcam.stopTalking()      what letting go of Talk does ({"type":"talk","on":false} if it was asked for).

import { decodeStripe, lumaFromRGBA } from './stripe.js';
import { cameraNotice, cameraOverlay, fetchSnapshot } from './camera.js';
import { renderPublish } from './publish.js';
import { watchPeers } from './peers.js';
import { clearMotion, noteMotion, recordingsState, watchRecordings } from './recordings.js';
import { attachChat, chatState, detachChat, dispatch, on, onChannel } from './chat.js';
import { controlsState, initControls, closeControls } from './controls.js';
import { attachSerial, detachSerial, feedSerial, serialState } from './serial.js';
import {
  attachTalk,
  audioState,
  detachTalk,
  endTalk,
  initTalk,
  noteAudioStats,
  noteTrack,
  playVideo,
  primeSound,
  renderAudioStats,
  startTalking,
  stopTalking,
  talkState,
} from './talk.js';

const MAX_RETRIES = 3;
const BACKOFF_MS = [1000, 2000, 4000];
const ATTEMPT_TIMEOUT_MS = 15000; // no first frame by then: the attempt failed
const DISCONNECTED_TIMEOUT_MS = 8000; // ICE "disconnected" that long: start afresh
const STATS_INTERVAL_MS = 500;
const MAX_LATENCIES = 600;
const STRIPE_ROWS = 32;

const $ = (id) => document.getElementById(id);
const video = $('video');
const screen = $('screen');
const callBtn = $('call');
const hangupBtn = $('hangup');
const stateEl = $('state');
const placeholder = $('placeholder');
const statsEl = $('stats');
const statsBtn = $('stats-toggle');
const logoutBtn = $('logout');
const readout = $('link-readout');
const fullscreenBtn = $('fullscreen');
const fullscreenExitBtn = $('fullscreen-exit');
const snapshotBtn = $('snapshot');
const toastEl = $('toast');
const picture = $('picture');

const wallNow = () => performance.timeOrigin + performance.now();

// Everything a person or a test may want to read, kept up to date.
const rtcam = {
  state: 'idle',
  reason: '',
  clickTime: null, // wall-clock ms (like Date.now()) of the Call click
  firstFrameTime: null, // wall-clock ms at which the first frame was due on screen
  clickToFirstFrameMs: null,
  // When each step of the call's start was first reached, ms after the click (a retry that gets
  // further adds the steps it reached):
  // ws (signaling open), offer (sent), answer (received), ice (connected), dtls (the connection
  // connected), track (the video track), frame (the first frame due on screen).
  phases: {},
  framesDecoded: 0,
  framesDropped: 0,
  fps: 0,
  width: 0,
  height: 0,
  codec: '',
  statsTime: null, // wall-clock ms of the getStats sample behind framesDecoded/fps/...
  jitterBufferMs: null,
  latencies: [], // last 600 stamp-to-display latencies, ms
  lastLatency: null,
  stripeFrames: 0,
  stripeInvalid: 0,
  stripeSkipped: 0, // frames not read because the previous read was still busy
  stripeMargin: null, // smallest block margin seen (spec section 6.5)
  stripeMethod: '', // "webcodecs" or "canvas"
  lastStamp: null,
  attempt: 0,
  retries: 0,
  serverErrors: [], // error messages the camera sent during a call that went on
  lastShown: null, // wall-clock ms the last frame was due on screen
  longestGapMs: 0, // the longest time between two frames on screen since the call went live
  gaps: [], // (at, ms) of the last 100 gaps over 100 ms: what a viewer sees as a freeze
  packetsLost: 0, // packets never repaired (getStats)
  nacks: 0, // NACKs the browser sent
  plis: 0, // keyframe requests it sent
  freezes: 0, // freezes by the browser's own count
  retransmitted: 0, // retransmissions (RTX) that arrived
  bitrateKbps: null, // received, from getStats bytesReceived over the last sample
  lossFraction: null, // packets lost / expected over the last sample (getStats)
  rttMs: null, // the selected candidate pair's current round trip (getStats)
};
// The link readout under the video, as shown (rtcam.link.quality: 'good' | 'fair' | 'poor' | null).
const link = {
  quality: null,
  latencyMs: null, // median of the last stamp-to-display latencies (stripe), null without a stripe
  fps: null,
  kbps: null,
  rttMs: null,
  lossPct: null,
  text: '',
};
// The camera's state: from {"type":"camera"} messages during a call, else /api/status's source.
const camera = { state: null, name: null, problem: null, from: null, overlay: null };
// The last snapshot: {ok, status, name, bytes, error, at}.
const snapshotState = { busy: false, last: null, count: 0 };
rtcam.chat = chatState;
rtcam.controls = controlsState;
rtcam.serial = serialState;
rtcam.camera = camera;
rtcam.link = link;
rtcam.snapshot = snapshotState;
rtcam.recordings = recordingsState;
rtcam.talk = talkState;
rtcam.audio = audioState;
rtcam.startTalking = () => startTalking();
rtcam.stopTalking = () => stopTalking();
// Test / console hooks (see the top of this file).
rtcam.inject = (msg) => {
  let m = msg;
  if (typeof m === 'string') {
    try {
      m = JSON.parse(m);
    } catch {
      return false;
    }
  }
  return dispatch(m);
};
rtcam.injectSerial = (data) => feedSerial(data);
window.rtcam = rtcam;

// ---------------------------------------------------------------- state line

function setState(state, reason = '') {
  rtcam.state = state;
  rtcam.reason = reason;
  stateEl.dataset.state = state;
  stateEl.textContent = reason ? `${state}: ${reason}` : state;
  stateEl.title = stateEl.textContent;
  const active = state === 'connecting' || state === 'live' || state === 'reconnecting';
  const hadFocus = document.activeElement === callBtn || document.activeElement === hangupBtn;
  callBtn.disabled = active;
  hangupBtn.disabled = !active;
  callBtn.hidden = active;
  hangupBtn.hidden = !active;
  // The button pressed went away: keep the focus on its twin, where the keyboard user is.
  if (hadFocus) (active ? hangupBtn : callBtn).focus();
  document.body.dataset.call = state;
  readout.hidden = !(state === 'live' || state === 'reconnecting');
  screen.classList.toggle('has-video', state === 'live' || (state === 'reconnecting' && video.srcObject !== null));
  const text = {
    idle: 'Press Call to watch the camera',
    connecting: 'Connecting…',
    live: '',
    reconnecting: 'Reconnecting…',
    ended: 'Call ended',
    error: reason ? `Error: ${reason}` : 'Error',
  }[state];
  placeholder.querySelector('.placeholder-text').textContent = text;
  placeholder.dataset.state = state;
}

// ---------------------------------------------------------------- the call

let cur = null; // the current attempt (one WebSocket + one RTCPeerConnection)
let attemptSeq = 0;
let retryTimer = null;
let hungUp = true; // no call wanted (idle, ended, error)
let decodedBase = 0; // frames decoded by earlier attempts of this call
let droppedBase = 0;
let statsTimer = null;

// Notes when a step of the call's start was first reached (rtcam.phases).
function phase(name, at = wallNow()) {
  if (rtcam.clickTime !== null && !(name in rtcam.phases)) rtcam.phases[name] = at - rtcam.clickTime;
}

function resetCallStats() {
  Object.assign(rtcam, {
    clickTime: wallNow(),
    firstFrameTime: null,
    clickToFirstFrameMs: null,
    phases: {},
    lastShown: null,
    longestGapMs: 0,
    gaps: [],
    framesDecoded: 0,
    framesDropped: 0,
    fps: 0,
    width: 0,
    height: 0,
    codec: '',
    statsTime: null,
    jitterBufferMs: null,
    bitrateKbps: null,
    lossFraction: null,
    rttMs: null,
    latencies: [],
    lastLatency: null,
    stripeFrames: 0,
    stripeInvalid: 0,
    stripeSkipped: 0,
    stripeMargin: null,
    lastStamp: null,
    retries: 0,
    serverErrors: [],
  });
  decodedBase = 0;
  droppedBase = 0;
  chatState.telemetry = null; // the last call's
}

function call() {
  if (!hungUp) return;
  if (typeof RTCPeerConnection !== 'function') {
    setState('error', 'this browser has no WebRTC');
    return;
  }
  hungUp = false;
  primeSound(); // this click is the gesture that lets the device's sound play
  resetCallStats();
  setState('connecting');
  startAttempt();
  if (!statsTimer) statsTimer = setInterval(pollStats, STATS_INTERVAL_MS);
}

function startAttempt() {
  const a = {
    id: ++attemptSeq,
    ws: null,
    pc: null,
    wsOpened: false,
    outbox: [], // messages waiting for the socket to open
    offerSent: false,
    early: [], // local candidates gathered before the offer went out
    endSent: false,
    remoteSet: false,
    remoteCandidates: [],
    live: false,
    closed: false,
    timers: new Set(),
    disconnectTimer: null,
    lastDecoded: 0,
    lastDropped: 0,
    prevStats: null,
    window: [], // the last getStats deltas, for bitrate and loss
    stream: null, // what the <video> plays: the call's video and audio tracks
  };
  cur = a;
  rtcam.attempt = a.id;

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  try {
    a.ws = new WebSocket(`${scheme}//${location.host}/ws`);
  } catch (e) {
    failAttempt(a, `cannot open signaling: ${e.message}`);
    return;
  }
  a.ws.onopen = () => {
    if (a !== cur || a.closed) return;
    a.wsOpened = true;
    phase('ws');
    for (const m of a.outbox.splice(0)) a.ws.send(JSON.stringify(m));
  };
  a.ws.onmessage = (ev) => {
    if (a !== cur || a.closed) return;
    onServerMessage(a, ev.data);
  };
  a.ws.onclose = (ev) => {
    if (a !== cur || a.closed) return;
    if (a.wsOpened) {
      failAttempt(a, `signaling closed${ev.reason ? `: ${ev.reason}` : ` (code ${ev.code})`}`);
      return;
    }
    // A refused upgrade looks just like an unreachable camera: ask whether the login is over.
    sessionExpired().then((expired) => {
      if (a !== cur || a.closed) return;
      if (expired) toLogin('session expired');
      else failAttempt(a, 'cannot reach the camera');
    });
  };

  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: [] });
  } catch (e) {
    endCall('error', `cannot create the connection: ${e.message}`, false);
    return;
  }
  a.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  // After the video (which keeps mid 0): the device's microphone in, this page's voice out. No
  // track yet: Talk puts the microphone on it with replaceTrack (no renegotiation).
  attachTalk(pc.addTransceiver('audio', { direction: 'sendrecv' }));
  // Made before the offer, so the offer carries them: chat and serial need no renegotiation.
  attachChat(pc.createDataChannel('rtcam'));
  const serialDc = pc.createDataChannel('serial', { ordered: true });
  serialDc.binaryType = 'arraybuffer';
  attachSerial(serialDc);

  // Video and audio play in one element from one stream, so the browser keeps them in sync.
  pc.ontrack = (ev) => {
    if (a !== cur || a.closed) return;
    const given = ev.streams && ev.streams[0] ? ev.streams[0] : null;
    if (!a.stream) a.stream = given || new MediaStream();
    if (!a.stream.getTracks().includes(ev.track)) a.stream.addTrack(ev.track);
    noteTrack(ev.track);
    if (video.srcObject !== a.stream) video.srcObject = a.stream;
    playVideo();
    if (ev.track.kind === 'video') {
      phase('track');
      watchFrames();
    }
  };

  pc.onicecandidate = (ev) => {
    if (a !== cur || a.closed) return;
    const c = ev.candidate;
    if (!c || !c.candidate) {
      sendEndOfCandidates(a);
      return;
    }
    queueCandidate(a, {
      type: 'candidate',
      candidate: c.candidate,
      sdpMid: c.sdpMid,
      sdpMLineIndex: c.sdpMLineIndex,
    });
  };
  pc.onicegatheringstatechange = () => {
    if (a === cur && !a.closed && pc.iceGatheringState === 'complete') sendEndOfCandidates(a);
  };
  pc.oniceconnectionstatechange = () => onIceState(a);
  pc.onconnectionstatechange = () => {
    if (a === cur && !a.closed && pc.connectionState === 'connected') phase('dtls');
    if (a === cur && !a.closed && pc.connectionState === 'failed') failAttempt(a, 'connection failed');
  };

  addTimer(a, ATTEMPT_TIMEOUT_MS, () => {
    if (!a.live) failAttempt(a, 'no video from the camera');
  });

  (async () => {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (a !== cur || a.closed) return;
    // Trickle ICE: the offer goes out at once, candidates follow it.
    send(a, { type: 'offer', sdp: pc.localDescription.sdp });
    phase('offer');
    a.offerSent = true;
    for (const m of a.early.splice(0)) send(a, m);
  })().catch((e) => {
    if (a === cur && !a.closed) endCall('error', `cannot create an offer: ${e.message}`, true);
  });
}

function addTimer(a, ms, fn) {
  const t = setTimeout(() => {
    a.timers.delete(t);
    if (a === cur && !a.closed) fn();
  }, ms);
  a.timers.add(t);
  return t;
}

function send(a, msg) {
  if (a.ws && a.ws.readyState === WebSocket.OPEN) a.ws.send(JSON.stringify(msg));
  else a.outbox.push(msg);
}

function queueCandidate(a, msg) {
  if (a.offerSent) send(a, msg);
  else a.early.push(msg);
}

function sendEndOfCandidates(a) {
  if (a.endSent) return;
  a.endSent = true;
  queueCandidate(a, { type: 'candidate', candidate: '' });
}

async function onServerMessage(a, data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  switch (msg && msg.type) {
    case 'answer':
      phase('answer');
      try {
        await a.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      } catch (e) {
        if (a === cur && !a.closed) endCall('error', `bad answer from the camera: ${e.message}`, true);
        return;
      }
      if (a !== cur || a.closed) return;
      a.remoteSet = true;
      for (const c of a.remoteCandidates.splice(0)) addRemoteCandidate(a, c);
      break;
    case 'candidate':
      if (a.remoteSet) addRemoteCandidate(a, msg);
      else a.remoteCandidates.push(msg);
      break;
    case 'hangup':
      endCall('ended', msg.reason || 'the camera hung up', false);
      break;
    case 'error':
      if (a.remoteSet && !a.closed) {
        // After the answer, an error is about one message (say a trickled candidate the
        // camera could not use); the call itself lives or dies by its ICE state.
        rtcam.serverErrors.push(String(msg.message || ''));
        if (rtcam.serverErrors.length > 20) rtcam.serverErrors.shift();
        console.warn('rtcam: camera reported:', msg.message);
      } else {
        endCall('error', msg.message || 'the camera refused the call', false);
      }
      break;
    default:
      break;
  }
}

function addRemoteCandidate(a, msg) {
  let p;
  if (!msg.candidate) {
    p = a.pc.addIceCandidate(); // end of candidates
  } else {
    const init = { candidate: msg.candidate, sdpMid: msg.sdpMid ?? '0', sdpMLineIndex: msg.sdpMLineIndex ?? 0 };
    p = a.pc.addIceCandidate(init);
  }
  if (p && p.catch) p.catch(() => {}); // a bad candidate alone must not end the call
}

function onIceState(a) {
  if (a !== cur || a.closed) return;
  const s = a.pc.iceConnectionState;
  if (s === 'disconnected') {
    if (rtcam.state === 'live') setState('reconnecting', 'connection interrupted');
    if (!a.disconnectTimer) {
      a.disconnectTimer = addTimer(a, DISCONNECTED_TIMEOUT_MS, () => failAttempt(a, 'connection lost'));
    }
  } else if (s === 'connected' || s === 'completed') {
    phase('ice');
    if (a.disconnectTimer) {
      clearTimeout(a.disconnectTimer);
      a.timers.delete(a.disconnectTimer);
      a.disconnectTimer = null;
    }
    if (a.live && rtcam.state === 'reconnecting') setState('live');
  } else if (s === 'failed') {
    failAttempt(a, 'connection failed');
  }
}

// Closes one attempt's socket and connection. With `sayBye`, tell the camera first.
function teardown(a, sayBye) {
  if (!a || a.closed) return;
  a.closed = true;
  for (const t of a.timers) clearTimeout(t);
  a.timers.clear();
  decodedBase += a.lastDecoded;
  droppedBase += a.lastDropped;
  a.lastDecoded = 0;
  a.lastDropped = 0;
  if (a.ws) {
    try {
      if (sayBye && a.ws.readyState === WebSocket.OPEN) a.ws.send(JSON.stringify({ type: 'hangup' }));
    } catch {
      /* closing anyway */
    }
    a.ws.onopen = a.ws.onmessage = a.ws.onclose = null;
    try {
      a.ws.close(1000, 'bye');
    } catch {
      /* already closed */
    }
  }
  if (a.pc) {
    detachTalk(); // lets go of the talk floor while the channel is still open
    detachChat();
    detachSerial();
    a.pc.ontrack = a.pc.onicecandidate = a.pc.onicegatheringstatechange = null;
    a.pc.oniceconnectionstatechange = a.pc.onconnectionstatechange = null;
    try {
      a.pc.close();
    } catch {
      /* already closed */
    }
  }
}

function releaseVideo() {
  if (video.srcObject) {
    video.pause();
    video.srcObject = null;
  }
}

// An attempt failed: retry from scratch (a new socket and connection) a few times.
function failAttempt(a, reason) {
  if (a !== cur || a.closed || hungUp) return;
  teardown(a, true);
  if (rtcam.retries < MAX_RETRIES) {
    const delay = BACKOFF_MS[Math.min(rtcam.retries, BACKOFF_MS.length - 1)];
    rtcam.retries += 1;
    setState('reconnecting', `${reason}; retry ${rtcam.retries} of ${MAX_RETRIES}`);
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (!hungUp && cur === a) startAttempt();
    }, delay);
  } else {
    endCall('error', reason, false);
  }
}

// The call is over: by the user (sayBye), by the camera, or for good after an error.
function endCall(state, reason, sayBye) {
  hungUp = true;
  if (retryTimer) {
    clearTimeout(retryTimer);
    retryTimer = null;
  }
  endTalk(); // the floor let go, the microphone given back
  teardown(cur, sayBye);
  releaseVideo();
  if (statsTimer) {
    clearInterval(statsTimer);
    statsTimer = null;
  }
  setState(state, reason);
  renderStats();
}

function hangup() {
  if (hungUp) return;
  endCall('ended', '', true);
}

// ---------------------------------------------------------------- login session

// True when the camera says this page's session is gone (401), not when it is unreachable.
async function sessionExpired() {
  try {
    const r = await fetch('/api/status', { cache: 'no-store', credentials: 'same-origin' });
    return r.status === 401;
  } catch {
    return false;
  }
}

function toLogin(reason) {
  if (!hungUp) endCall('ended', reason, false);
  location.replace('/login');
}

async function logout() {
  logoutBtn.disabled = true;
  if (!hungUp) endCall('ended', 'logged out', true);
  try {
    const r = await fetch('/logout', { method: 'POST', cache: 'no-store', credentials: 'same-origin' });
    // 401: the session had already ended, which is what we want.
    if (!r.ok && r.status !== 401) throw new Error(`the camera answered ${r.status}`);
  } catch (e) {
    logoutBtn.disabled = false;
    setState('error', `cannot log out: ${e.message || e}`);
    return;
  }
  location.replace('/login');
}

// ---------------------------------------------------------------- frames and the stripe

let frameHandle = null;
let stripeBusy = false;
let webcodecsFailures = 0;
let useWebCodecs = typeof VideoFrame === 'function';
let canvas = null;
let ctx2d = null;
let copyBuf = null;

function watchFrames() {
  if (typeof video.requestVideoFrameCallback === 'function') {
    if (frameHandle !== null) video.cancelVideoFrameCallback(frameHandle);
    frameHandle = video.requestVideoFrameCallback(onVideoFrame);
  }
}

function onVideoFrame(now, meta) {
  frameHandle = video.requestVideoFrameCallback(onVideoFrame);
  const a = cur;
  if (!a || a.closed || hungUp) return;
  const shown = performance.timeOrigin + (meta && meta.expectedDisplayTime ? meta.expectedDisplayTime : now);
  if (!a.live) frameArrived(a, shown);
  noteGap(shown);
  readStripe(shown);
}

// Browsers without requestVideoFrameCallback: go live on the first played frame.
// (Not on the call's sound alone: the picture has a size.)
function playedFrame() {
  if (typeof video.requestVideoFrameCallback === 'function' || !video.videoWidth) return;
  const a = cur;
  if (a && !a.closed && !a.live && !hungUp && !video.paused) frameArrived(a, wallNow());
}
video.addEventListener('playing', playedFrame);
video.addEventListener('resize', playedFrame);

function noteGap(shown) {
  if (rtcam.lastShown !== null) {
    const gap = shown - rtcam.lastShown;
    if (gap > rtcam.longestGapMs) rtcam.longestGapMs = gap;
    if (gap > 100) {
      rtcam.gaps.push([shown, Math.round(gap)]);
      if (rtcam.gaps.length > 100) rtcam.gaps.shift();
    }
  }
  rtcam.lastShown = shown;
}

function frameArrived(a, shown) {
  a.live = true;
  rtcam.retries = 0;
  if (rtcam.firstFrameTime === null) {
    rtcam.firstFrameTime = shown;
    rtcam.clickToFirstFrameMs = shown - rtcam.clickTime;
    phase('frame', shown);
  }
  const ice = a.pc.iceConnectionState;
  if (ice !== 'disconnected' && ice !== 'failed') setState('live');
}

function readStripe(shown) {
  if (stripeBusy) {
    rtcam.stripeSkipped++;
    return;
  }
  if (useWebCodecs) {
    stripeBusy = true;
    readStripeWebCodecs(shown)
      .then((ok) => {
        if (ok) webcodecsFailures = 0;
      })
      .catch(() => {
        // Not every browser can wrap a <video> in a VideoFrame or copy it out.
        if (++webcodecsFailures >= 5) useWebCodecs = false;
      })
      .finally(() => {
        stripeBusy = false;
      });
    return;
  }
  try {
    readStripeCanvas(shown);
  } catch {
    rtcam.stripeInvalid++;
  }
}

const YUV_FORMATS = new Set(['I420', 'I420A', 'I422', 'I422A', 'I444', 'I444A', 'NV12']);
const RGB_FORMATS = new Set(['RGBA', 'RGBX', 'BGRA', 'BGRX']);

async function readStripeWebCodecs(shown) {
  const frame = new VideoFrame(video);
  try {
    const vr = frame.visibleRect;
    const width = vr.width & ~1;
    const rows = Math.min(STRIPE_ROWS, vr.height & ~1);
    if (width < 64 || rows < 2) return false;
    const rect = { x: vr.x & ~1, y: vr.y & ~1, width, height: rows };
    let fmt = frame.format;
    const opts = { rect };
    if (!YUV_FORMATS.has(fmt) && !RGB_FORMATS.has(fmt)) {
      // Opaque (GPU) or exotic frames: ask for an RGBA conversion (Chromium 127+).
      opts.format = 'RGBA';
      fmt = 'RGBA';
    }
    const size = frame.allocationSize(opts);
    if (!copyBuf || copyBuf.length < size) copyBuf = new Uint8Array(size);
    const layout = await frame.copyTo(copyBuf, opts);
    const plane = layout[0];
    let res;
    if (YUV_FORMATS.has(fmt)) {
      res = decodeStripe(copyBuf.subarray(plane.offset), width, rows, plane.stride);
    } else {
      const luma = lumaFromRGBA(copyBuf.subarray(plane.offset), width, rows, plane.stride, fmt.startsWith('BGR'));
      res = decodeStripe(luma, width, rows, width);
    }
    rtcam.stripeMethod = 'webcodecs';
    recordStripe(res, shown);
    return true;
  } finally {
    frame.close();
  }
}

function readStripeCanvas(shown) {
  const width = video.videoWidth & ~1;
  const rows = Math.min(STRIPE_ROWS, video.videoHeight);
  if (width < 64 || rows < 2) return;
  if (!canvas) {
    canvas = document.createElement('canvas');
    ctx2d = canvas.getContext('2d', { willReadFrequently: true });
  }
  if (canvas.width !== width || canvas.height !== rows) {
    canvas.width = width;
    canvas.height = rows;
  }
  ctx2d.drawImage(video, 0, 0, width, rows, 0, 0, width, rows);
  const img = ctx2d.getImageData(0, 0, width, rows);
  const luma = lumaFromRGBA(img.data, width, rows, width * 4);
  rtcam.stripeMethod = 'canvas';
  recordStripe(decodeStripe(luma, width, rows, width), shown);
}

function recordStripe(res, shown) {
  if (!res) {
    rtcam.stripeInvalid++;
    return;
  }
  const latency = shown - res.stamp;
  rtcam.stripeFrames++;
  rtcam.lastStamp = res.stamp;
  rtcam.lastLatency = latency;
  rtcam.latencies.push(latency);
  if (rtcam.latencies.length > MAX_LATENCIES) rtcam.latencies.splice(0, rtcam.latencies.length - MAX_LATENCIES);
  if (rtcam.stripeMargin === null || res.margin < rtcam.stripeMargin) rtcam.stripeMargin = res.margin;
}

// ---------------------------------------------------------------- getStats

async function pollStats() {
  const a = cur;
  if (!a || a.closed || !a.pc) return;
  let report;
  try {
    report = await a.pc.getStats();
  } catch {
    return;
  }
  if (a !== cur || a.closed) return;
  noteAudioStats(report);
  let inbound = null;
  let pair = null;
  let selectedPairId = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && (s.kind === 'video' || s.mediaType === 'video')) inbound = s;
    if (s.type === 'transport' && s.selectedCandidatePairId) selectedPairId = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type !== 'candidate-pair') return;
    if (selectedPairId ? s.id === selectedPairId : (s.selected || s.nominated) && s.state === 'succeeded') pair = s;
  });
  if (!inbound) return;
  const t = wallNow();
  a.lastDecoded = inbound.framesDecoded || 0;
  a.lastDropped = inbound.framesDropped || 0;
  rtcam.framesDecoded = decodedBase + a.lastDecoded;
  rtcam.framesDropped = droppedBase + a.lastDropped;
  if (typeof inbound.framesPerSecond === 'number') {
    rtcam.fps = inbound.framesPerSecond;
  } else if (a.prevStats && t > a.prevStats.t) {
    rtcam.fps = ((a.lastDecoded - a.prevStats.decoded) * 1000) / (t - a.prevStats.t);
  }
  // Received bitrate and loss over the last sample (this attempt's counters only go up).
  const bytes = inbound.bytesReceived || 0;
  const recv = inbound.packetsReceived || 0;
  const lost = inbound.packetsLost || 0;
  if (a.prevStats && t > a.prevStats.t && bytes >= a.prevStats.bytes) {
    // Over the last 2 s (four samples): steadier than one 500 ms sample.
    a.window.push({
      ms: t - a.prevStats.t,
      bytes: bytes - a.prevStats.bytes,
      got: Math.max(0, recv - a.prevStats.recv),
      missed: Math.max(0, lost - a.prevStats.lost),
    });
    if (a.window.length > 4) a.window.shift();
    const sum = (k) => a.window.reduce((acc, w) => acc + w[k], 0);
    rtcam.bitrateKbps = (sum('bytes') * 8) / sum('ms');
    const expected = sum('got') + sum('missed');
    if (expected > 0) rtcam.lossFraction = sum('missed') / expected;
  }
  if (pair && typeof pair.currentRoundTripTime === 'number') rtcam.rttMs = pair.currentRoundTripTime * 1000;
  a.prevStats = { t, decoded: a.lastDecoded, bytes, recv, lost };
  // What the link did, as the browser saw it (this attempt of the call).
  rtcam.packetsLost = inbound.packetsLost || 0;
  rtcam.nacks = inbound.nackCount || 0;
  rtcam.plis = inbound.pliCount || 0;
  rtcam.freezes = inbound.freezeCount || 0;
  rtcam.retransmitted = inbound.retransmittedPacketsReceived || 0;
  rtcam.width = inbound.frameWidth || video.videoWidth || 0;
  rtcam.height = inbound.frameHeight || video.videoHeight || 0;
  if (inbound.jitterBufferEmittedCount) {
    rtcam.jitterBufferMs = (inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount) * 1000;
  }
  const codec = inbound.codecId ? report.get(inbound.codecId) : null;
  if (codec && codec.mimeType) {
    const m = /profile-level-id=([0-9a-fA-F]{6})/.exec(codec.sdpFmtpLine || '');
    rtcam.codec = m ? `${codec.mimeType} ${m[1].toLowerCase()}` : codec.mimeType;
  }
  rtcam.statsTime = t;
  renderStats();
  renderLink();
}

// ---------------------------------------------------------------- stats panel

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))));
  return sorted[i];
}

const ms = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${Math.round(v)} ms`);

function renderStats() {
  renderAudioStats();
  if (statsEl.hidden) return;
  const set = (id, text) => {
    $(id).textContent = text;
  };
  set('st-res', rtcam.width ? `${rtcam.width}×${rtcam.height}` : '–');
  set('st-fps', rtcam.statsTime ? rtcam.fps.toFixed(1) : '–');
  set('st-codec', rtcam.codec || '–');
  set('st-lat', ms(rtcam.lastLatency));
  const recent = rtcam.latencies.slice(-90).sort((x, y) => x - y);
  set('st-latp', recent.length ? `${ms(percentile(recent, 50))} / ${ms(percentile(recent, 95))}` : '–');
  set('st-first', ms(rtcam.clickToFirstFrameMs));
  set('st-frames', `${rtcam.framesDecoded} decoded, ${rtcam.framesDropped} dropped`);
  set(
    'st-stripe',
    rtcam.stripeFrames || rtcam.stripeInvalid
      ? `${rtcam.stripeFrames} ok, ${rtcam.stripeInvalid} bad${rtcam.stripeMethod ? ` (${rtcam.stripeMethod})` : ''}`
      : '–',
  );
}

function toggleStats() {
  statsEl.hidden = !statsEl.hidden;
  statsBtn.setAttribute('aria-pressed', String(!statsEl.hidden));
  renderStats();
}

// ---------------------------------------------------------------- wiring

callBtn.addEventListener('click', call);
hangupBtn.addEventListener('click', hangup);
statsBtn.addEventListener('click', toggleStats);
logoutBtn.addEventListener('click', logout);

// Leaving the page: tell the camera and close the connection, so it does not keep a
// zombie session until ICE consent times out.
window.addEventListener('pagehide', () => {
  if (!hungUp) endCall('ended', 'page closed', true);
});

// ---------------------------------------------------------------- the link readout

const LINK_ITEMS = {
  latency: $('lq-latency'),
  fps: $('lq-fps'),
  rate: $('lq-rate'),
  rtt: $('lq-rtt'),
  loss: $('lq-loss'),
};
const lqWord = $('lq-word');
const lqExtra = $('lq-extra');
const RANK = { good: 0, fair: 1, poor: 2 };
const WORD = { good: 'Good', fair: 'Fair', poor: 'Poor' };

// good / fair / poor for one figure, null without one. Lower is better (good up to `good`, fair
// up to `fair`), or with `higher`, higher is (good from `good`, fair from `fair`).
function grade(v, good, fair, higher = false) {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  if (higher) return v >= good ? 'good' : v >= fair ? 'fair' : 'poor';
  return v <= good ? 'good' : v <= fair ? 'fair' : 'poor';
}

function setItem(el, value, q) {
  el.querySelector('.lq-v').textContent = value;
  el.dataset.q = q || '';
  el.hidden = value === null;
}

function rate(kbps) {
  if (!Number.isFinite(kbps)) return null;
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

function renderLink() {
  const t = chatState.telemetry;
  const fresh = (x) => x !== null && x !== undefined && Number.isFinite(x);
  // Latency from the stripe, when frames carry one (and did in the last 2 s).
  let latency = null;
  if (rtcam.lastStamp !== null && rtcam.lastShown !== null && rtcam.latencies.length) {
    const recent = rtcam.latencies.slice(-30).sort((x, y) => x - y);
    if (wallNow() - rtcam.lastShown < 2000) latency = percentile(recent, 50);
  }
  const fps = rtcam.statsTime ? rtcam.fps : t && fresh(t.fps) ? t.fps : null;
  const kbps = fresh(rtcam.bitrateKbps) ? rtcam.bitrateKbps : t && fresh(t.bitrate_kbps) ? t.bitrate_kbps : null;
  const rtt = t && fresh(t.rtt_ms) ? t.rtt_ms : fresh(rtcam.rttMs) ? rtcam.rttMs : null;
  const lossF = t && fresh(t.wire_loss) ? t.wire_loss : fresh(rtcam.lossFraction) ? rtcam.lossFraction : null;
  const lossPct = lossF === null ? null : lossF * 100;
  const target = t && fresh(t.capture_fps) && t.capture_fps > 0 ? t.capture_fps : null;

  // While the camera is lost or starting, rtcam sends its slate at a few frames a second: that
  // says nothing about the link, so fps then counts for nothing.
  const slate = camera.state === 'lost' || camera.state === 'starting';
  const q = {
    latency: grade(latency, 150, 400),
    fps: slate ? null : target ? grade(fps === null ? null : fps / target, 0.8, 0.5, true) : grade(fps, 20, 10, true),
    rtt: grade(rtt, 100, 300),
    loss: grade(lossPct, 1, 5),
  };
  // (A display time estimated a hair early can put a stamp a millisecond in the future.)
  setItem(LINK_ITEMS.latency, latency === null ? null : `${Math.max(0, Math.round(latency))} ms`, q.latency);
  setItem(LINK_ITEMS.fps, fps === null ? '–' : `${Math.round(fps)}`, q.fps);
  setItem(LINK_ITEMS.rate, rate(kbps), null);
  setItem(LINK_ITEMS.rtt, rtt === null ? null : `${Math.round(rtt)} ms`, q.rtt);
  setItem(
    LINK_ITEMS.loss,
    lossPct === null ? null : `${lossPct < 10 ? lossPct.toFixed(1) : Math.round(lossPct)} %`,
    q.loss,
  );
  let overall = null;
  for (const g of Object.values(q)) if (g && (overall === null || RANK[g] > RANK[overall])) overall = g;
  if (rtcam.state === 'reconnecting') overall = 'poor';
  readout.dataset.q = overall || '';
  lqWord.textContent = rtcam.state === 'reconnecting' ? 'Reconnecting' : overall ? `${WORD[overall]} link` : 'Measuring…';

  const extra = [];
  if (t && t.thinned) extra.push('slow link: half the frames');
  if (t && t.copies > 1) extra.push(`sent ×${t.copies}`);
  if (t && Number.isFinite(t.viewers)) extra.push(`${t.viewers} watching`);
  lqExtra.textContent = extra.join(' · ');
  lqExtra.hidden = !extra.length;

  Object.assign(link, { quality: overall, latencyMs: latency, fps, kbps, rttMs: rtt, lossPct });
  link.text = readout.textContent.replace(/\s+/g, ' ').trim();
}

on('telemetry', renderLink);

// ---------------------------------------------------------------- the camera itself

// The camera can vanish (unplugged, a driver timeout) while the call goes on: rtcam then sends
// a "camera lost" slate and looks for it. An overlay on the video says so. During a call the
// camera's own messages ({"type":"camera"}) say what it does; otherwise /api/status does.
const noticeEl = $('camera-notice');
const noticeTitle = $('camera-notice-title');
const noticeDetail = $('camera-notice-detail');
let cameraFromMessages = false; // a camera message came on this call's channel

function showCamera(c, from) {
  Object.assign(camera, {
    state: c && typeof c.state === 'string' ? c.state : null,
    name: c && typeof c.name === 'string' ? c.name : c && c.card ? c.card : null,
    problem: c && typeof c.problem === 'string' ? c.problem : null,
    from,
  });
  const o = cameraOverlay(c);
  camera.overlay = o;
  // Only what changed: the notice is an alert, and a rewritten alert is read out again.
  const title = o ? o.title : '';
  const detail = o ? o.detail : '';
  if (noticeTitle.textContent !== title) noticeTitle.textContent = title;
  if (noticeDetail.textContent !== detail) noticeDetail.textContent = detail;
  noticeDetail.hidden = !detail;
  noticeEl.dataset.kind = o ? o.kind : '';
  noticeEl.hidden = !o;
  screen.dataset.camera = camera.state || '';
}

on('camera', (m) => {
  cameraFromMessages = true;
  showCamera(m, 'message');
});
onChannel((open) => {
  if (open) return;
  cameraFromMessages = false;
  clearMotion(); // the Motion badge is about the live picture
});

async function watchCamera() {
  try {
    const r = await fetch('/api/status', { cache: 'no-store', credentials: 'same-origin' });
    if (r.ok) {
      const status = await r.json();
      // cameraNotice is what the page said before the camera messages (and what its tests check);
      // the overlay shows the same states.
      if (!cameraFromMessages) showCamera(cameraNotice(status.source) ? status.source : null, 'status');
      renderPublish($('publish'), $('publish-list'), status.whip);
    }
  } catch {
    // Unreachable: the call's own state says so.
  }
  setTimeout(watchCamera, 1000);
}
watchCamera();
watchPeers($('peers'), $('peers-list'));
watchRecordings();
on('motion', noteMotion); // {"type":"motion"}: the badge, the timeline, a refresh

// The picture's shape follows the stream's (4:3 cameras get no black bars on the sides).
video.addEventListener('resize', () => {
  if (video.videoWidth && video.videoHeight) {
    picture.style.setProperty('--ar', `${video.videoWidth} / ${video.videoHeight}`);
    document.documentElement.style.setProperty('--ar-num', String(video.videoWidth / video.videoHeight));
  }
});

// ---------------------------------------------------------------- a short message

let toastTimer = null;
function toast(text, kind = 'info', ms = 4000) {
  toastEl.textContent = text;
  toastEl.dataset.kind = kind;
  toastEl.hidden = false;
  if (toastTimer) clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    toastEl.hidden = true;
    toastTimer = null;
  }, ms);
}
initControls({ notify: (text, kind) => toast(text, kind, 6000) });
initTalk({ notify: toast, typingIn, video });

// ---------------------------------------------------------------- full screen

function fullscreenElement() {
  return document.fullscreenElement || document.webkitFullscreenElement || null;
}

function toggleFullscreen() {
  if (fullscreenElement()) {
    const exit = document.exitFullscreen || document.webkitExitFullscreen;
    if (exit) {
      const p = exit.call(document);
      if (p && p.catch) p.catch(() => {});
    }
    return;
  }
  const req = screen.requestFullscreen || screen.webkitRequestFullscreen;
  if (req) {
    const p = req.call(screen);
    if (p && p.catch) p.catch((e) => toast(`Full screen is not available: ${e.message || e}`, 'error'));
  } else if (typeof video.webkitEnterFullscreen === 'function') {
    video.webkitEnterFullscreen(); // iPhone Safari: only the video itself goes full screen
  } else {
    toast('This browser has no full screen mode.', 'error');
  }
}

function onFullscreenChange() {
  const full = fullscreenElement() === screen;
  screen.classList.toggle('is-fullscreen', full);
  fullscreenBtn.setAttribute('aria-pressed', String(full));
  rtcam.fullscreen = full;
  if (!full && document.activeElement === fullscreenExitBtn) fullscreenBtn.focus();
}
document.addEventListener('fullscreenchange', onFullscreenChange);
document.addEventListener('webkitfullscreenchange', onFullscreenChange);
rtcam.fullscreen = false;

// ---------------------------------------------------------------- snapshot

function pad(n) {
  return String(n).padStart(2, '0');
}

function snapshotName(d = new Date()) {
  return (
    `rtcam-${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-` +
    `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.jpg`
  );
}

async function takeSnapshot() {
  if (snapshotState.busy) return;
  snapshotState.busy = true;
  // Not disabled (that would drop a keyboard user's focus): busy, and a second press waits.
  snapshotBtn.setAttribute('aria-busy', 'true');
  const at = Date.now();
  try {
    const blob = await fetchSnapshot();
    const name = snapshotName();
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    snapshotState.last = { ok: true, status: 200, name, bytes: blob.size, error: null, at };
    snapshotState.count++;
    screen.classList.remove('flashing');
    void screen.offsetWidth; // restart the animation
    screen.classList.add('flashing');
    toast(`Saved ${name}`, 'ok');
  } catch (e) {
    const msg = e && e.message ? e.message : String(e);
    snapshotState.last = { ok: false, status: (e && e.status) || 0, name: null, bytes: 0, error: msg, at };
    toast(`No snapshot: ${msg}`, 'error', 6000);
  } finally {
    snapshotState.busy = false;
    snapshotBtn.removeAttribute('aria-busy');
  }
}
screen.addEventListener('animationend', () => screen.classList.remove('flashing'));

// ---------------------------------------------------------------- keys

function typingIn(el) {
  if (!el) return false;
  if (el.isContentEditable) return true;
  const tag = el.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
  if (tag !== 'INPUT') return false;
  return !['button', 'checkbox', 'radio', 'range', 'submit', 'reset'].includes(el.type);
}

document.addEventListener('keydown', (ev) => {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  if (document.querySelector('dialog[open]')) return; // the picture lightbox has the keys (Esc closes it)
  if ((ev.key === 'f' || ev.key === 'F') && !typingIn(document.activeElement)) {
    ev.preventDefault();
    toggleFullscreen();
  } else if (ev.key === 'Escape' && controlsState.open) {
    // Esc outside the drawer (it handles its own) closes it too, unless full screen takes it.
    if (!fullscreenElement()) closeControls();
  }
});

fullscreenBtn.addEventListener('click', toggleFullscreen);
fullscreenExitBtn.addEventListener('click', toggleFullscreen);
snapshotBtn.addEventListener('click', takeSnapshot);
// Double-click (or double-tap) on the picture: full screen.
picture.addEventListener('dblclick', toggleFullscreen);

setState('idle');
