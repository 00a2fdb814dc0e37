// Subscribes to the publisher in VideoRoom ROOM through Janus's HTTP API and measures what it shows.
// Loaded by subscriber.html (served by simple-whip-server, see tests/browser/janus_support.py).
//
// It keeps subscribing: when Janus goes away (the restart test) or the publisher leaves, it tears
// everything down and starts over, so the test can see the publish come back.
//
// Stamp-to-display latency uses the page's own stripe decoder (web/stripe.js, served beside this
// file) exactly as web/app.js reads it: requestVideoFrameCallback, the top 32 rows of the frame
// through WebCodecs (`new VideoFrame(video)` + `copyTo` with a rect; a canvas if that fails),
// latency = performance.timeOrigin + expectedDisplayTime - stamp.

import { decodeStripe, lumaFromRGBA } from './stripe.js';

const params = new URLSearchParams(location.search);
const SERVER = params.get('server') || `http://${location.hostname}:8088/janus`;
const ROOM = Number(params.get('room') || 1234);
const STRIPE_ROWS = 32;
const MAX_STAMPS = 1200;

const video = document.getElementById('video');
const stateEl = document.getElementById('state');

const sub = {
  state: 'starting', // starting, connecting, waiting-publisher, subscribing, live
  sessions: 0, // Janus sessions created (one more after each loss)
  subscriptions: 0, // joins as a subscriber
  publisherId: null,
  errors: [], // the last few things that went wrong, for the test's report
  // requestVideoFrameCallback
  frames: 0,
  lastFrameWall: null,
  firstFrameWall: null,
  // getStats, inbound-rtp video
  statsTime: null,
  framesDecoded: 0,
  framesDropped: 0,
  keyFramesDecoded: 0,
  width: null,
  height: null,
  mimeType: null,
  sdpFmtpLine: null,
  nackCount: 0,
  pliCount: 0,
  packetsLost: 0,
  jitterBufferMs: null,
  // the stripe
  stripeFrames: 0,
  stripeInvalid: 0,
  stripeSkipped: 0,
  stripeMargin: null,
  stripeMethod: '',
  stamps: [], // [shown wall ms, stamp ms] of displayed frames, the last MAX_STAMPS
  // Every decoded frame (MediaStreamTrackProcessor): what Janus delivered, before the display
  // coalesces frames (requestVideoFrameCallback skips some when the machine is busy).
  decodedReader: '', // "track-processor" when it runs
  decodedFrames: 0,
  decodedInvalid: 0,
  decodedStamps: [], // [wall ms at decode output, stamp ms], the last MAX_STAMPS
};
window.sub = sub;

function setState(s) {
  sub.state = s;
  stateEl.textContent = s;
}

function noteError(what) {
  sub.errors.push(`${new Date().toISOString()} ${what}`);
  if (sub.errors.length > 20) sub.errors.shift();
}

// ---------------------------------------------------------------- Janus

let janus = null;
let handle = null;
let restartTimer = null;
let generation = 0; // bumps on every teardown: late callbacks of an old session do nothing

function restart(why, delay = 500) {
  if (why) noteError(why);
  generation++;
  const old = janus;
  janus = null;
  handle = null;
  video.srcObject = null;
  if (old) {
    try {
      old.destroy({ cleanupHandles: true, notifyDestroyed: false });
    } catch (e) {
      noteError(`destroy: ${e}`);
    }
  }
  clearTimeout(restartTimer);
  restartTimer = setTimeout(connect, delay);
}

function connect() {
  const gen = ++generation;
  setState('connecting');
  sub.sessions++;
  janus = new Janus({
    server: SERVER,
    iceServers: [], // no STUN: nothing leaves the machine
    destroyOnUnload: true,
    success: () => {
      if (gen !== generation) return;
      attach(gen);
    },
    error: (e) => {
      if (gen === generation) restart(`session: ${e}`);
    },
    destroyed: () => {},
  });
}

function attach(gen) {
  janus.attach({
    plugin: 'janus.plugin.videoroom',
    opaqueId: 'rtcam-test-subscriber',
    success: (h) => {
      if (gen !== generation) return;
      handle = h;
      findPublisher(gen);
    },
    error: (e) => {
      if (gen === generation) restart(`attach: ${e}`);
    },
    onmessage: (msg, jsep) => onMessage(gen, msg, jsep),
    onremotetrack: (track, mid, on) => {
      if (gen !== generation || track.kind !== 'video') return;
      if (on) {
        video.srcObject = new MediaStream([track]);
        video.play().catch(() => {});
        watchFrames();
        readDecodedFrames(gen, track);
      }
    },
    webrtcState: (up, reason) => {
      if (gen === generation && !up) restart(`peer connection down: ${reason || ''}`);
    },
    oncleanup: () => {},
  });
}

function findPublisher(gen) {
  setState('waiting-publisher');
  handle.send({
    message: { request: 'listparticipants', room: ROOM },
    success: (res) => {
      if (gen !== generation) return;
      const pub = (res && res.participants ? res.participants : []).find((p) => p.publisher);
      if (!pub) {
        setTimeout(() => gen === generation && findPublisher(gen), 300);
        return;
      }
      sub.publisherId = pub.id;
      setState('subscribing');
      sub.subscriptions++;
      handle.send({ message: { request: 'join', room: ROOM, ptype: 'subscriber', streams: [{ feed: pub.id }] } });
    },
    error: (e) => {
      if (gen === generation) restart(`listparticipants: ${e}`);
    },
  });
}

function onMessage(gen, msg, jsep) {
  if (gen !== generation) return;
  if (msg.error) {
    // e.g. "No such feed": the publisher left between the list and the join.
    restart(`videoroom error ${msg.error_code}: ${msg.error}`);
    return;
  }
  const ev = msg.videoroom;
  if (ev === 'event' && (msg.unpublished || msg.leaving)) {
    const who = msg.unpublished || msg.leaving;
    if (who === sub.publisherId) restart(`publisher ${sub.publisherId} left`);
    return;
  }
  if (jsep && jsep.type === 'offer') {
    handle.createAnswer({
      jsep,
      tracks: [], // receive only
      success: (answer) => {
        if (gen !== generation) return;
        handle.send({ message: { request: 'start', room: ROOM }, jsep: answer });
      },
      error: (e) => {
        if (gen === generation) restart(`createAnswer: ${e}`);
      },
    });
  }
}

// ---------------------------------------------------------------- frames and the stripe

let frameHandle = null;
let stripeBusy = false;
let useWebCodecs = typeof VideoFrame === 'function';
let webcodecsFailures = 0;
let copyBuf = null;
let canvas = null;
let ctx2d = null;

function watchFrames() {
  if (frameHandle !== null) video.cancelVideoFrameCallback(frameHandle);
  frameHandle = video.requestVideoFrameCallback(onVideoFrame);
}

function onVideoFrame(now, meta) {
  frameHandle = video.requestVideoFrameCallback(onVideoFrame);
  if (!video.srcObject) return;
  const shown = performance.timeOrigin + (meta && meta.expectedDisplayTime ? meta.expectedDisplayTime : now);
  sub.frames++;
  sub.lastFrameWall = shown;
  if (sub.firstFrameWall === null) sub.firstFrameWall = shown;
  if (sub.state !== 'live') setState('live');
  readStripe(shown);
}

function readStripe(shown) {
  if (stripeBusy) {
    sub.stripeSkipped++;
    return;
  }
  if (useWebCodecs) {
    stripeBusy = true;
    readStripeWebCodecs(shown)
      .then(() => {
        webcodecsFailures = 0;
      })
      .catch((e) => {
        if (++webcodecsFailures >= 5) {
          useWebCodecs = false;
          noteError(`WebCodecs stripe reading failed, canvas from now on: ${e}`);
        }
      })
      .finally(() => {
        stripeBusy = false;
      });
    return;
  }
  try {
    readStripeCanvas(shown);
  } catch {
    sub.stripeInvalid++;
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
    if (width < 64 || rows < 2) return;
    const rect = { x: vr.x & ~1, y: vr.y & ~1, width, height: rows };
    let fmt = frame.format;
    const opts = { rect };
    if (!YUV_FORMATS.has(fmt) && !RGB_FORMATS.has(fmt)) {
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
    sub.stripeMethod = 'webcodecs';
    recordStripe(res, shown);
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
  sub.stripeMethod = 'canvas';
  recordStripe(decodeStripe(lumaFromRGBA(img.data, width, rows, width * 4), width, rows, width), shown);
}

function recordStripe(res, shown) {
  if (!res) {
    sub.stripeInvalid++;
    return;
  }
  sub.stripeFrames++;
  sub.stamps.push([shown, res.stamp]);
  if (sub.stamps.length > MAX_STAMPS) sub.stamps.splice(0, sub.stamps.length - MAX_STAMPS);
  if (sub.stripeMargin === null || res.margin < sub.stripeMargin) sub.stripeMargin = res.margin;
}

// Every frame the decoder puts out, read from the track itself (Chromium's
// MediaStreamTrackProcessor); each is closed at once so the processor never queues.
async function readDecodedFrames(gen, track) {
  if (typeof MediaStreamTrackProcessor !== 'function') return;
  sub.decodedReader = 'track-processor';
  const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
  let buf = null;
  try {
    for (;;) {
      const { value: frame, done } = await reader.read();
      if (done) return;
      try {
        if (gen !== generation) return;
        const vr = frame.visibleRect;
        const width = vr.width & ~1;
        const rows = Math.min(STRIPE_ROWS, vr.height & ~1);
        let res = null;
        if (width >= 64 && rows >= 2 && YUV_FORMATS.has(frame.format)) {
          const opts = { rect: { x: vr.x & ~1, y: vr.y & ~1, width, height: rows } };
          const size = frame.allocationSize(opts);
          if (!buf || buf.length < size) buf = new Uint8Array(size);
          const layout = await frame.copyTo(buf, opts);
          res = decodeStripe(buf.subarray(layout[0].offset), width, rows, layout[0].stride);
        }
        if (res) {
          sub.decodedFrames++;
          sub.decodedStamps.push([Date.now(), res.stamp]);
          if (sub.decodedStamps.length > MAX_STAMPS) sub.decodedStamps.splice(0, sub.decodedStamps.length - MAX_STAMPS);
        } else {
          sub.decodedInvalid++;
        }
      } finally {
        frame.close();
      }
    }
  } catch (e) {
    if (gen === generation) noteError(`track processor: ${e}`);
  } finally {
    reader.releaseLock();
  }
}

// ---------------------------------------------------------------- getStats

async function pollStats() {
  const pc = handle && handle.webrtcStuff ? handle.webrtcStuff.pc : null;
  if (!pc) return;
  let report;
  try {
    report = await pc.getStats();
  } catch {
    return;
  }
  let inbound = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
  });
  if (!inbound) return;
  const codec = inbound.codecId ? report.get(inbound.codecId) : null;
  sub.framesDecoded = inbound.framesDecoded || 0;
  sub.framesDropped = inbound.framesDropped || 0;
  sub.keyFramesDecoded = inbound.keyFramesDecoded || 0;
  sub.width = inbound.frameWidth || null;
  sub.height = inbound.frameHeight || null;
  sub.mimeType = codec ? codec.mimeType : null;
  sub.sdpFmtpLine = codec ? codec.sdpFmtpLine || null : null;
  sub.nackCount = inbound.nackCount || 0;
  sub.pliCount = inbound.pliCount || 0;
  sub.packetsLost = inbound.packetsLost || 0;
  sub.jitterBufferMs = inbound.jitterBufferEmittedCount
    ? (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount
    : null;
  sub.statsTime = Date.now();
}

setInterval(pollStats, 250);

Janus.init({
  debug: false,
  dependencies: Janus.useDefaultDependencies(),
  callback: () => connect(),
});
