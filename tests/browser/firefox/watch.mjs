// Drives Debian's /usr/bin/firefox-esr (never a downloaded browser) over WebDriver BiDi with
// puppeteer-core: logs in to rtcam's page, presses Call and measures what the page shows.
// tests/browser/test_firefox.py runs it (inside the network namespace the test made) and
// asserts on what it reports; it makes no verdict of its own.
//
//   node watch.mjs --url https://127.0.0.1:PORT/ --password PW [--seconds 5]
//
// Protocol: every report is one line on stdout, `RTCAM {json}` with an `event` field:
//   launched {version}          Firefox is up
//   idle                        logged in, the viewer page is idle
//   live {snapshot}             the call is live (a first frame was shown)
//   failed {state, reason, ...} the call did not go live (state line, reasons, console)
//   result {...}                one measurement window (after a `measure` command)
//   closed                      peer connections closed, browser closed
//   value {id, value | error}   the answer to an `eval` command
// Commands, one per line on stdin: `measure` (a window of --seconds; answered by `result`),
// `eval {"id": N, "fn": "async (arg) => ...", "arg": ...}` (runs fn(arg) in the page, awaits it,
// answers `value` with its JSON value or the error's text), `quit` (hang up, close every peer
// connection, close the browser, exit). End of stdin = quit.
// Options for other tests (tests/browser/test_firefox_audio.py): --prefs '{JSON}' adds Firefox
// prefs; --init FILE runs FILE's script in every document before the page's own scripts.
// Anything else the script prints (progress, console lines) is for people, on stderr.

import { readFileSync } from 'node:fs';
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const URL_BASE = (args.url || '').replace(/\/$/, '');
const PASSWORD = args.password || '';
const SECONDS = Number(args.seconds || 5);
const FIREFOX = process.env.RTCAM_FIREFOX || '/usr/bin/firefox-esr';
const LIVE_TIMEOUT_MS = Number(args['live-timeout-ms'] || 20000);
// A hard bound on the whole run: whatever hangs, this process is gone by then.
const DEADLINE_MS = Number(args['deadline-ms'] || 90000);
const EXTRA_PREFS = args.prefs ? JSON.parse(args.prefs) : {};
const INIT_SCRIPT = args.init ? readFileSync(args.init, 'utf8') : null;

if (!URL_BASE || !PASSWORD) {
  console.error('usage: node watch.mjs --url https://127.0.0.1:PORT/ --password PW [--seconds 5]');
  process.exit(2);
}

const t0 = Date.now();
const say = (event, data = {}) => process.stdout.write(`RTCAM ${JSON.stringify({ event, t: Date.now() - t0, ...data })}\n`);
const log = (...m) => console.error(`[firefox +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...m);

let browser = null;
let page = null;
const consoleLines = [];

const deadline = setTimeout(() => {
  log(`deadline of ${DEADLINE_MS} ms reached: giving up`);
  say('failed', { state: 'deadline', reason: `watch.mjs ran out of its ${DEADLINE_MS} ms`, console: consoleLines.slice(-40) });
  shutdown(3);
}, DEADLINE_MS);
deadline.unref();

// Before any page script: keep every RTCPeerConnection the page makes, so this script can read
// getStats itself (the codec entry's mimeType) and close them all before the browser goes.
const PC_HOOK = () => {
  const Orig = window.RTCPeerConnection;
  if (typeof Orig !== 'function' || window.__rtcamPcs) return;
  window.__rtcamPcs = [];
  class Kept extends Orig {
    constructor(...a) {
      super(...a);
      window.__rtcamPcs.push(this);
    }
  }
  window.RTCPeerConnection = Kept;
};

// The page's own figures (web/app.js keeps window.rtcam up to date): a copy without functions.
const SNAPSHOT = (withLatencies) => {
  const r = window.rtcam;
  if (!r) return null;
  const out = {};
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === 'function') continue;
    if (k === 'latencies' && !withLatencies) continue;
    out[k] = Array.isArray(v) ? v.slice() : v;
  }
  return out;
};

// getStats straight from the page's live peer connection: inbound video and its codec.
const DIRECT_STATS = async () => {
  const pcs = (window.__rtcamPcs || []).filter((pc) => pc.connectionState !== 'closed');
  const pc = pcs[pcs.length - 1];
  if (!pc) return { hooked: Array.isArray(window.__rtcamPcs), pcs: 0 };
  const report = await pc.getStats();
  let inbound = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && (s.kind === 'video' || s.mediaType === 'video')) inbound = s;
  });
  const codec = inbound && inbound.codecId ? report.get(inbound.codecId) : null;
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'candidate-pair' && (s.selected || s.nominated) && s.state === 'succeeded') pair = s;
  });
  const cand = (id) => {
    const c = id ? report.get(id) : null;
    return c ? `${c.candidateType} ${c.address || c.ip}:${c.port}` : null;
  };
  return {
    hooked: true,
    pcs: pcs.length,
    ice: pc.iceConnectionState,
    framesDecoded: inbound ? inbound.framesDecoded : null,
    keyFramesDecoded: inbound ? inbound.keyFramesDecoded : null,
    frameWidth: inbound ? inbound.frameWidth : null,
    frameHeight: inbound ? inbound.frameHeight : null,
    nackCount: inbound ? inbound.nackCount : null,
    pliCount: inbound ? inbound.pliCount : null,
    packetsLost: inbound ? inbound.packetsLost : null,
    mimeType: codec ? codec.mimeType : null,
    sdpFmtpLine: codec ? codec.sdpFmtpLine || '' : null,
    local: pair ? cand(pair.localCandidateId) : null,
    remote: pair ? cand(pair.remoteCandidateId) : null,
  };
};

const CLOSE_ALL = () => {
  const b = document.getElementById('hangup');
  const hungUp = Boolean(b && !b.disabled);
  if (hungUp) b.click(); // the page says bye to the camera and closes its connection
  let n = 0;
  for (const pc of window.__rtcamPcs || []) {
    if (pc.connectionState !== 'closed') {
      pc.close();
      n++;
    }
  }
  const left = (window.__rtcamPcs || []).filter((pc) => pc.connectionState !== 'closed').length;
  return { hungUp, closedHere: n, stillOpen: left };
};

function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.round((p / 100) * (s.length - 1))))];
}

async function waitStats(after, timeoutMs) {
  await page.waitForFunction(
    (t) => window.rtcam && window.rtcam.statsTime !== null && (t === null || window.rtcam.statsTime >= t),
    { timeout: timeoutMs, polling: 100 },
    after,
  );
}

async function start() {
  if (!URL_BASE.startsWith('https://')) throw new Error(`--url must be https: ${URL_BASE}`);
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    acceptInsecureCerts: true, // rtcam's self-signed certificate
    protocolTimeout: 30000,
    extraPrefsFirefox: {
      'media.navigator.permission.disabled': true,
      'media.autoplay.default': 0,
      'media.gmp-manager.updateEnabled': false,
      ...EXTRA_PREFS,
    },
  });
  const version = await browser.version();
  say('launched', { version });
  log(`launched ${version}`);

  page = await browser.newPage();
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e && e.message ? e.message : e}`));
  page.setDefaultTimeout(15000);
  await page.evaluateOnNewDocument(PC_HOOK);
  if (INIT_SCRIPT !== null) await page.evaluateOnNewDocument(INIT_SCRIPT);

  // Log in through the form, like a person.
  await page.goto(`${URL_BASE}/login`, { waitUntil: 'load' });
  await page.waitForSelector('#password', { visible: true });
  await page.type('#password', PASSWORD);
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#login')]);
  try {
    await page.waitForSelector('#call', { visible: true });
    await page.waitForFunction(() => window.rtcam && window.rtcam.state === 'idle', { polling: 100 });
  } catch (e) {
    const msg = await page.evaluate(() => {
      const m = document.getElementById('login-message');
      return m ? m.textContent : null;
    }).catch(() => null);
    throw new Error(`login failed: at ${page.url()}, login message ${JSON.stringify(msg)}: ${e.message}`);
  }
  say('idle', { url: page.url() });

  await page.click('#call');
  try {
    // 'error' ends a call for good; a refused offer (the camera's error message) lands there at once.
    await page.waitForFunction(() => window.rtcam && ['live', 'error', 'ended'].includes(window.rtcam.state), {
      timeout: LIVE_TIMEOUT_MS,
      polling: 100,
    });
  } catch {
    /* reported below with whatever state the page is in */
  }
  const snap = await page.evaluate(SNAPSHOT, false);
  const stateLine = await page.evaluate(() => {
    const s = document.getElementById('state');
    return { state: s.dataset.state, text: s.textContent };
  });
  const placeholder = await page.evaluate(() => document.getElementById('placeholder').textContent.trim());
  if (!snap || snap.state !== 'live') {
    say('failed', {
      state: snap ? snap.state : null,
      reason: snap ? snap.reason : null,
      stateLine,
      placeholder,
      snapshot: snap,
      direct: await page.evaluate(DIRECT_STATS).catch((e) => ({ error: String(e) })),
      console: consoleLines.slice(-40),
    });
    return false;
  }
  say('live', { snapshot: snap, stateLine });
  log(`live after ${Math.round(snap.clickToFirstFrameMs)} ms`);
  return true;
}

async function measure() {
  await waitStats(null, 10000);
  const before = await page.evaluate(SNAPSHOT, false);
  const directBefore = await page.evaluate(DIRECT_STATS);
  await waitStats(before.statsTime + SECONDS * 1000, SECONDS * 1000 + 10000);
  const after = await page.evaluate(SNAPSHOT, true);
  const direct = await page.evaluate(DIRECT_STATS);
  const dt = (after.statsTime - before.statsTime) / 1000;
  const frames = after.framesDecoded - before.framesDecoded;
  const stripeOk = after.stripeFrames - before.stripeFrames;
  const n = Math.max(0, stripeOk);
  const lat = n ? after.latencies.slice(-n) : [];
  const res = {
    seconds: dt,
    statsTime0: before.statsTime, // wall-clock ms (Date.now() scale) of the window's two samples
    statsTime1: after.statsTime,
    frames,
    fps: dt > 0 ? frames / dt : 0,
    width: after.width,
    height: after.height,
    codec: after.codec,
    mimeType: direct.mimeType,
    direct,
    directBefore,
    state: after.state,
    framesDropped: after.framesDropped,
    stripeOk,
    stripeInvalid: after.stripeInvalid - before.stripeInvalid,
    stripeSkipped: after.stripeSkipped - before.stripeSkipped,
    stripeMethod: after.stripeMethod,
    stripeMargin: after.stripeMargin,
    latencyCount: lat.length,
    latencyP50: percentile(lat, 50),
    latencyP95: percentile(lat, 95),
    latencyMin: lat.length ? Math.min(...lat) : null,
    latencyMax: lat.length ? Math.max(...lat) : null,
    jitterBufferMs: after.jitterBufferMs,
    clickToFirstFrameMs: after.clickToFirstFrameMs,
    serverErrors: after.serverErrors,
    retries: after.retries,
    attempt: after.attempt,
  };
  say('result', res);
  log(
    `${res.fps.toFixed(1)} fps, ${res.width}x${res.height} ${res.mimeType || res.codec}, ` +
      `latency p50 ${res.latencyP50} p95 ${res.latencyP95} over ${lat.length} stamps`,
  );
}

// `eval`: a function's source and its argument, run in the page; its (awaited) value goes back.
async function evalInPage(text) {
  let req;
  try {
    req = JSON.parse(text);
  } catch (e) {
    say('value', { id: null, error: `eval: not JSON: ${e.message}` });
    return;
  }
  try {
    const value = await page.evaluate(`(${req.fn})(${JSON.stringify(req.arg === undefined ? null : req.arg)})`);
    say('value', { id: req.id, value: value === undefined ? null : value });
  } catch (e) {
    say('value', { id: req.id, error: String(e && e.message ? e.message : e) });
  }
}

let shuttingDown = false;
async function shutdown(code) {
  if (shuttingDown) return;
  shuttingDown = true;
  const bound = setTimeout(() => process.exit(code || 4), 15000);
  try {
    if (page) {
      const closed = await page.evaluate(CLOSE_ALL).catch(() => null);
      log(`peer connections: ${JSON.stringify(closed)}`);
      // Give the hangup message and the DTLS close a moment to leave before the browser goes.
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    if (browser) {
      const tc = Date.now();
      await browser.close().catch((e) => log(`browser.close: ${e.message}`));
      log(`browser closed in ${Date.now() - tc} ms`);
    }
    say('closed', { console: consoleLines.slice(-40) });
    clearTimeout(bound);
    process.exit(code);
  }
}

async function main() {
  let live = false;
  try {
    live = await start();
  } catch (e) {
    say('failed', { state: 'exception', reason: String(e && e.stack ? e.stack : e), console: consoleLines.slice(-40) });
    await shutdown(1);
    return;
  }
  const rl = readline.createInterface({ input: process.stdin });
  let busy = Promise.resolve();
  rl.on('line', (line) => {
    const cmd = line.trim();
    busy = busy.then(async () => {
      if (cmd === 'measure') {
        if (!live) {
          say('failed', { state: 'not-live', reason: 'measure asked of a call that is not live' });
          return;
        }
        try {
          await measure();
        } catch (e) {
          say('failed', { state: 'measure', reason: String(e && e.stack ? e.stack : e), console: consoleLines.slice(-40) });
        }
      } else if (cmd.startsWith('eval ')) {
        if (!page) {
          say('value', { id: null, error: 'eval: no page' });
          return;
        }
        await evalInPage(cmd.slice(5));
      } else if (cmd === 'quit') {
        await shutdown(0);
      }
    });
  });
  rl.on('close', () => {
    busy.then(() => shutdown(0));
  });
}

main();
