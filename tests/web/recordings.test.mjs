// The page's Recordings panel and motion zones: what its lines say, how clips and motion events
// make one timeline, and where a zone lands on a letterboxed picture.
// Dates are made in local time (new Date(y, m, d, ...)): the tests hold in any time zone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_ZONES,
  applyMotion,
  contentRect,
  formatDuration,
  formatSize,
  fromFraction,
  motionEvent,
  moveRect,
  normalizeRect,
  stateLine,
  timelineItems,
  toFraction,
  validZones,
  whenText,
  zonesForSave,
  zonesSummary,
} from '../../web/recordings.js';

const now = new Date(2026, 11, 6, 18, 0, 0).getTime();
const at = (d, h, m, s) => new Date(2026, 11, d, h, m, s).getTime();
const close = (a, b) => Math.abs(a - b) < 1e-9;

test('durations read like a person would say them, rounded to the second', () => {
  assert.equal(formatDuration(0), '0 s');
  assert.equal(formatDuration(12_345), '12 s');
  assert.equal(formatDuration(59_499), '59 s');
  assert.equal(formatDuration(59_500), '1 min', '59.5 s rounds up to a whole minute, not "60 s"');
  assert.equal(formatDuration(64_000), '1 min 4 s');
  assert.equal(formatDuration(3_599_000), '59 min 59 s');
  assert.equal(formatDuration(3_599_600), '1 h', 'rounds up to the hour, not "60 min"');
  assert.equal(formatDuration(3_600_000), '1 h');
  assert.equal(formatDuration(3_690_000), '1 h 2 min');
  assert.equal(formatDuration(7_500_000), '2 h 5 min');
});

test('no duration gives no text', () => {
  for (const v of [null, undefined, -1, NaN, Infinity, '12000', {}]) assert.equal(formatDuration(v), '', String(v));
});

test('sizes: bytes, KB, one decimal of MB, whole figures from 100 up', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(812), '812 B');
  assert.equal(formatSize(1023), '1023 B');
  assert.equal(formatSize(1024), '1 KB');
  assert.equal(formatSize(340 * 1024), '340 KB');
  assert.equal(formatSize(1_048_064), '1.0 MB', '1023.5 KB is not "1024 KB"');
  assert.equal(formatSize(Math.round(3.4 * 1024 * 1024)), '3.4 MB');
  assert.equal(formatSize(Math.round(99.96 * 1024 * 1024)), '100 MB', 'not "100.0 MB"');
  assert.equal(formatSize(250 * 1024 * 1024), '250 MB');
  assert.equal(formatSize(1023.7 * 1024 * 1024), '1.0 GB');
  assert.equal(formatSize(1.2 * 1024 ** 3), '1.2 GB');
  for (const v of [null, undefined, -5, NaN, '123456', []]) assert.equal(formatSize(v), '', String(v));
});

test('times: the clock today, the day otherwise', () => {
  assert.equal(whenText(at(6, 15, 30, 12), now), '15:30:12');
  assert.equal(whenText(at(6, 0, 0, 0), now), '00:00:00');
  assert.equal(whenText(at(5, 9, 5, 3), now), 'yesterday 09:05:03');
  assert.equal(whenText(at(3, 15, 30, 12), now), '3 Dec 15:30:12');
  assert.equal(whenText(new Date(2025, 11, 31, 23, 59, 59).getTime(), now), '31 Dec 2025 23:59:59');
  // Yesterday across a year's end.
  assert.equal(whenText(new Date(2025, 11, 31, 8, 0, 0).getTime(), new Date(2026, 0, 1, 9, 0, 0).getTime()), 'yesterday 08:00:00');
  for (const v of [null, NaN, '2026-12-06', 1e300]) assert.equal(whenText(v, now), '', String(v));
});

test('the state line for each mode and state', () => {
  assert.deepEqual(stateLine({ mode: 'motion', state: 'idle', problem: null }), {
    text: 'Recording on motion · idle',
    kind: 'idle',
    note: '',
  });
  assert.equal(stateLine({ mode: 'motion', state: 'recording' }).text, 'Recording on motion · recording');
  assert.equal(stateLine({ mode: 'continuous', state: 'recording' }).text, 'Recording continuously · recording');
  assert.deepEqual(stateLine({ mode: 'off', state: 'off', problem: null }), { text: 'Recording off', kind: 'off', note: '' });
  const full = 'the disk is full (12 MB free, floor 200 MB)';
  assert.deepEqual(stateLine({ mode: 'motion', state: 'stopped', problem: full }), {
    text: `Stopped: ${full}`,
    kind: 'stopped',
    note: '',
  });
  assert.equal(stateLine({ mode: 'continuous', state: 'stopped', problem: null }).text, 'Stopped');
  // A problem while it still records is a note under the line.
  const low = stateLine({ mode: 'continuous', state: 'recording', problem: 'the disk is nearly full' });
  assert.equal(low.kind, 'recording');
  assert.equal(low.note, 'the disk is nearly full');
});

test('an odd recordings answer gives "unknown", not an exception', () => {
  for (const r of [null, undefined, 'motion', 42, [], {}, { mode: 'sometimes', state: 'idle' }, { mode: 7 }]) {
    assert.equal(stateLine(r).kind, 'unknown', JSON.stringify(r));
  }
  assert.equal(stateLine({ mode: 'motion', state: 'dreaming' }).text, 'Recording on motion');
  assert.equal(stateLine({ mode: 'motion', state: 'stopped', problem: 12 }).text, 'Stopped');
  assert.equal(stateLine({ mode: 'toString', state: 'idle' }).kind, 'unknown');
});

const clipA = {
  id: '20261206-153012-motion',
  start_ms: at(6, 15, 30, 12),
  duration_ms: 64_000,
  size: Math.round(3.4 * 1024 * 1024),
  trigger: 'motion',
  thumbnail: '/api/recordings/20261206-153012-motion.jpg',
  recording: false,
};
const clipB = {
  id: '20261206-170000-continuous',
  start_ms: at(6, 17, 0, 0),
  duration_ms: 120_000,
  size: 9000,
  trigger: 'continuous',
  thumbnail: null,
  recording: true,
};

test('clips and events make one timeline, newest first; a recorded event folds into its clip', () => {
  const events = [
    { id: 9, started_ms: at(6, 17, 30, 0), ended_ms: null, area: 0.1, snapshot: '/api/events/9.jpg', clip: null },
    { id: 8, started_ms: at(6, 16, 0, 0), ended_ms: at(6, 16, 0, 8), area: 0.02, snapshot: '/api/events/8.jpg', clip: null },
    { id: 7, started_ms: at(6, 15, 30, 15), ended_ms: at(6, 15, 30, 22), area: 0.053, snapshot: '/api/events/7.jpg', clip: clipA.id },
  ];
  const items = timelineItems([clipB, clipA], events, now);
  assert.deepEqual(
    items.map((i) => i.key),
    ['event:9', 'clip:20261206-170000-continuous', 'event:8', 'clip:20261206-153012-motion'],
  );
  const [ongoing, live, missed, clip] = items;
  assert.equal(clip.when, '15:30:12');
  assert.equal(clip.meta, '1 min 4 s · 3.4 MB · motion');
  assert.equal(clip.events, 1);
  assert.equal(clip.thumb, '/api/recordings/20261206-153012-motion.jpg');
  assert.equal(clip.alt, 'Recording from 15:30:12');
  assert.equal(clip.play, '/api/recordings/20261206-153012-motion.mp4');
  assert.equal(clip.download, '/api/recordings/20261206-153012-motion.mp4?download=1');
  assert.equal(clip.remove, '/api/recordings/20261206-153012-motion');
  assert.equal(clip.iso, new Date(clipA.start_ms).toISOString());

  // Being written: no play, download or delete yet.
  assert.equal(live.duration, 'recording…');
  assert.equal(live.meta, 'recording… · 9 KB · continuous');
  assert.equal(live.recording, true);
  assert.equal(live.play, null);
  assert.equal(live.download, null);
  assert.equal(live.remove, null);
  assert.equal(live.thumb, null);

  assert.equal(missed.kind, 'event');
  assert.equal(missed.meta, 'motion, not recorded · 8 s');
  assert.equal(missed.thumb, '/api/events/8.jpg');
  assert.equal(missed.alt, 'Motion at 16:00:00');
  assert.equal(missed.play, null);

  assert.equal(ongoing.ongoing, true);
  assert.equal(ongoing.meta, 'motion now');
});

test('a clip without a thumbnail shows its motion snapshot; continuous clips say they hold motion', () => {
  const c = { ...clipB, recording: false, thumbnail: null };
  const items = timelineItems([c], [{ id: 3, started_ms: c.start_ms + 5000, ended_ms: null, snapshot: '/api/events/3.jpg', clip: c.id }], now);
  assert.equal(items.length, 1);
  assert.equal(items[0].thumb, '/api/events/3.jpg');
  assert.equal(items[0].trigger, 'continuous, with motion');
  assert.equal(items[0].meta, '2 min · 9 KB · continuous, with motion');
});

test('an event naming a clip that is no longer listed stays an event and says so', () => {
  const items = timelineItems([], [{ id: 4, started_ms: at(5, 23, 0, 0), ended_ms: at(5, 23, 1, 4), clip: 'old-clip' }], now);
  assert.equal(items[0].kind, 'event');
  assert.equal(items[0].when, 'yesterday 23:00:00');
  assert.equal(items[0].meta, 'motion, clip no longer kept · 1 min 4 s');
});

test('empty and wrong-typed server data give a shorter timeline, never an exception', () => {
  assert.deepEqual(timelineItems([], [], now), []);
  assert.deepEqual(timelineItems(null, undefined, now), []);
  assert.deepEqual(timelineItems({ clips: [] }, 'events', now), []);
  const items = timelineItems(
    [
      null,
      42,
      { id: 7, start_ms: now },
      { id: '../../etc/passwd', start_ms: now },
      { id: 'a/b', start_ms: now },
      { id: 'ok-1', start_ms: '1765035012345' },
      { id: 'ok-2', start_ms: 1e300 },
      { id: 'ok-3', start_ms: at(6, 10, 0, 0), duration_ms: '12', size: -1, trigger: 5, thumbnail: 'https://elsewhere.example/x.jpg', recording: 'yes' },
      { id: 'ok-3', start_ms: at(6, 11, 0, 0) },
    ],
    [
      { id: '7', started_ms: now },
      { id: 1.5, started_ms: now },
      { id: -2, started_ms: now },
      { id: 5, started_ms: null },
      { id: 6, started_ms: at(6, 9, 0, 0), ended_ms: at(6, 8, 0, 0), snapshot: '/api/events/../../secret.jpg', clip: 12 },
      { id: 6, started_ms: at(6, 9, 30, 0) },
    ],
    now,
  );
  assert.deepEqual(
    items.map((i) => i.key),
    ['clip:ok-3', 'event:6'],
    'the first of two with one id is kept',
  );
  const [clip, ev] = items;
  assert.equal(clip.meta, '', 'no duration, size or trigger to show');
  assert.equal(clip.thumb, null, 'a picture from elsewhere is not shown');
  assert.equal(clip.recording, false);
  assert.equal(clip.play, '/api/recordings/ok-3.mp4');
  assert.equal(ev.thumb, null);
  assert.equal(ev.ongoing, true, 'an end before the start is no end');
});

test('motion messages: a start is listed first once, an end closes it', () => {
  const started = { type: 'motion', id: 7, state: 'started', at: at(6, 17, 50, 12), area: 0.053, snapshot: '/api/events/7.jpg' };
  const ended = { type: 'motion', id: 7, state: 'ended', at: at(6, 17, 50, 20), lasted_ms: 7655 };
  const old = [{ id: 6, started_ms: at(6, 17, 0, 0), ended_ms: at(6, 17, 0, 5) }];
  const one = applyMotion(old, started);
  assert.deepEqual(one[0], { id: 7, started_ms: started.at, ended_ms: null, area: 0.053, snapshot: '/api/events/7.jpg', clip: null });
  assert.equal(one.length, 2);
  assert.equal(old.length, 1, 'the list given is not changed');
  assert.equal(applyMotion(one, started).length, 2, 'a repeated start is not listed twice');
  const two = applyMotion(one, ended);
  assert.equal(two[0].ended_ms, ended.at);
  assert.equal(timelineItems([], two, now)[0].meta, 'motion, not recorded · 8 s');
  // An end whose start this page never saw: placed by its length.
  const late = applyMotion(old, { type: 'motion', id: 8, state: 'ended', at: at(6, 17, 59, 0), lasted_ms: 4000 });
  assert.deepEqual(late[0], { id: 8, started_ms: at(6, 17, 58, 56), ended_ms: at(6, 17, 59, 0), area: null, snapshot: null, clip: null });
  assert.equal(applyMotion(old, { type: 'motion', id: 9, state: 'ended', at: now }).length, 1, 'nothing to place it by');
});

test('odd motion messages change nothing', () => {
  const old = [{ id: 1, started_ms: now }];
  for (const m of [
    null,
    'motion',
    { type: 'camera', id: 2, state: 'started', at: now },
    { type: 'motion', id: '2', state: 'started', at: now },
    { type: 'motion', id: 2, state: 'paused', at: now },
    { type: 'motion', id: 2, state: 'started', at: 'now' },
    { type: 'motion', id: 2, state: 'started' },
  ]) {
    assert.equal(motionEvent(m), null, JSON.stringify(m));
    assert.deepEqual(applyMotion(old, m), old);
  }
  assert.deepEqual(applyMotion(null, { type: 'motion', id: 2, state: 'started', at: now }).length, 1);
  const m = motionEvent({ type: 'motion', id: 2, state: 'started', at: now, area: 3, snapshot: 'javascript:alert(1)' });
  assert.equal(m.area, 1);
  assert.equal(m.snapshot, null);
});

test('the content box of a letterboxed picture, both ways', () => {
  // 4:3 in a 16:9 box: bars on the sides.
  assert.deepEqual(contentRect(1600, 900, 640, 480), { x: 200, y: 0, w: 1200, h: 900 });
  // 16:9 in a square: bars above and below.
  assert.deepEqual(contentRect(800, 800, 1920, 1080), { x: 0, y: 175, w: 800, h: 450 });
  assert.deepEqual(contentRect(1280, 720, 1920, 1080), { x: 0, y: 0, w: 1280, h: 720 });
  // No picture yet: the whole element. No element: nothing.
  assert.deepEqual(contentRect(640, 360, 0, 0), { x: 0, y: 0, w: 640, h: 360 });
  assert.deepEqual(contentRect(640, 360, NaN, 480), { x: 0, y: 0, w: 640, h: 360 });
  assert.deepEqual(contentRect(0, 360, 640, 480), { x: 0, y: 0, w: 0, h: 0 });
  assert.deepEqual(contentRect(undefined, undefined, 640, 480), { x: 0, y: 0, w: 0, h: 0 });
});

test('pointer coordinates to fractions of the picture and back', () => {
  const rect = contentRect(1600, 900, 640, 480); // x 200..1400
  assert.deepEqual(toFraction(200, 0, rect), { x: 0, y: 0 });
  assert.deepEqual(toFraction(800, 450, rect), { x: 0.5, y: 0.5 });
  assert.deepEqual(toFraction(1400, 900, rect), { x: 1, y: 1 });
  // On the bars, or past the element: held at the picture's edge.
  assert.deepEqual(toFraction(100, -20, rect), { x: 0, y: 0 });
  assert.deepEqual(toFraction(1500, 1000, rect), { x: 1, y: 1 });
  const p = fromFraction(0.25, 0.75, rect);
  assert.deepEqual(p, { x: 500, y: 675 });
  const back = toFraction(p.x, p.y, rect);
  assert.ok(close(back.x, 0.25) && close(back.y, 0.75));
  const tall = contentRect(800, 800, 1920, 1080); // y 175..625
  assert.deepEqual(toFraction(400, 175, tall), { x: 0.5, y: 0 });
  assert.deepEqual(fromFraction(1, 1, tall), { x: 800, y: 625 });
  assert.deepEqual(toFraction(10, 10, { x: 0, y: 0, w: 0, h: 0 }), { x: 0, y: 0 }, 'no picture, no division by zero');
  assert.deepEqual(toFraction(NaN, 450, rect), { x: 0, y: 0.5 }, 'a coordinate that is not a number is the edge');
});

test('a dragged rectangle is ordered, kept inside the picture and not smaller than the minimum', () => {
  const r = normalizeRect(0.1, 0.2, 0.4, 0.45);
  assert.ok(close(r.x, 0.1) && close(r.y, 0.2) && close(r.w, 0.3) && close(r.h, 0.25), JSON.stringify(r));
  const back = normalizeRect(0.6, 0.7, 0.2, 0.3); // dragged up and to the left
  assert.ok(close(back.x, 0.2) && close(back.y, 0.3) && close(back.w, 0.4) && close(back.h, 0.4));
  assert.deepEqual(normalizeRect(-0.5, -1, 1.5, 2), { x: 0, y: 0, w: 1, h: 1 });
  // Too small: grown from the anchor towards the pointer...
  const small = normalizeRect(0.5, 0.5, 0.505, 0.49);
  assert.ok(close(small.x, 0.5) && close(small.w, 0.02), JSON.stringify(small));
  assert.ok(close(small.y, 0.48) && close(small.h, 0.02), JSON.stringify(small));
  // ...and pushed back inside at an edge.
  const edge = normalizeRect(0.995, 0.005, 1, 0);
  assert.ok(close(edge.x, 0.98) && close(edge.w, 0.02), JSON.stringify(edge));
  assert.ok(close(edge.y, 0) && close(edge.h, 0.02), JSON.stringify(edge));
  const tap = normalizeRect(0.3, 0.3, 0.3, 0.3, 0.1);
  assert.ok(close(tap.x, 0.3) && close(tap.y, 0.3) && close(tap.w, 0.1) && close(tap.h, 0.1), JSON.stringify(tap));
  const junk = normalizeRect(NaN, 'a', undefined, null);
  assert.ok(close(junk.x, 0) && close(junk.w, 0.02) && close(junk.h, 0.02));
});

test('a moved zone stays whole inside the picture', () => {
  const z = { x: 0.7, y: 0.1, w: 0.25, h: 0.2, kind: 'ignore' };
  const r = moveRect(z, 0.2, -0.5);
  assert.ok(close(r.x, 0.75) && r.y === 0 && r.w === 0.25 && r.kind === 'ignore', JSON.stringify(r));
  assert.deepEqual(moveRect(z, NaN, 0), z);
});

test('valid zones: finite, inside the picture, a known kind, at most 16', () => {
  const good = { x: 0.1, y: 0.2, w: 0.3, h: 0.25, kind: 'watch' };
  assert.deepEqual(validZones([good]), [good]);
  assert.deepEqual(validZones([]), []);
  for (const v of [null, undefined, 'zones', { zones: [good] }, 7]) assert.deepEqual(validZones(v), [], String(v));
  const bad = [
    null,
    'x',
    { ...good, kind: 'maybe' },
    { ...good, kind: undefined },
    { ...good, x: '0.1' },
    { ...good, w: NaN },
    { ...good, h: Infinity },
    { ...good, x: -0.01 },
    { ...good, w: 0 },
    { ...good, x: 0.8, w: 0.3 },
    { ...good, y: 0.9, h: 0.2 },
  ];
  assert.deepEqual(validZones([...bad, good]), [good]);
  // A hair past the edge from adding two fractions is the edge.
  const edge = validZones([{ x: 0.7, y: 0.1, w: 0.30000000000000004, h: 0.9, kind: 'ignore' }]);
  assert.equal(edge.length, 1);
  assert.ok(edge[0].x + edge[0].w <= 1);
  const many = Array.from({ length: 20 }, (_, i) => ({ x: i / 40, y: 0, w: 0.02, h: 0.5, kind: i % 2 ? 'ignore' : 'watch' }));
  const kept = validZones(many);
  assert.equal(kept.length, MAX_ZONES);
  assert.equal(kept[15].x, 15 / 40);
});

test('zones saved are rounded to 4 decimals and stay inside the picture', () => {
  const out = zonesForSave([
    { x: 0.123456, y: 0.7, w: 0.876544, h: 0.30000000000000004, kind: 'watch' },
    { x: 0.33333333, y: 0.1, w: 0.33333333, h: 0.2, kind: 'ignore' },
    { x: 2, y: 0, w: 0.1, h: 0.1, kind: 'watch' },
  ]);
  assert.equal(out.length, 2);
  assert.deepEqual(out[0], { x: 0.1235, y: 0.7, w: 0.8765, h: 0.3, kind: 'watch' });
  for (const z of out) {
    assert.ok(z.x + z.w <= 1 + 1e-12 && z.y + z.h <= 1 + 1e-12, JSON.stringify(z));
    for (const v of [z.x, z.y, z.w, z.h]) assert.ok(close(v, Math.round(v * 1e4) / 1e4), `${v} has 4 decimals`);
  }
  // A zone dragged a little keeps its size (not 0.2999 for 0.3).
  const moved = zonesForSave([{ x: 0.20000001, y: 0.15000001, w: 0.3, h: 0.29999999, kind: 'ignore' }]);
  assert.deepEqual(moved, [{ x: 0.2, y: 0.15, w: 0.3, h: 0.3, kind: 'ignore' }]);
  // At the far edge, and a sliver: inside, and not nothing.
  const edge = zonesForSave([{ x: 0.99996, y: 0.5, w: 0.00004, h: 0.5, kind: 'watch' }])[0];
  assert.ok(edge.x + edge.w <= 1 && edge.w > 0 && edge.y + edge.h <= 1, JSON.stringify(edge));
  assert.deepEqual(zonesForSave('nope'), []);
});

test('the zones in words', () => {
  const w = { x: 0, y: 0, w: 0.5, h: 0.5, kind: 'watch' };
  const i = { x: 0.5, y: 0.5, w: 0.5, h: 0.5, kind: 'ignore' };
  assert.equal(zonesSummary([]), 'none: the whole picture is watched');
  assert.equal(zonesSummary(null), 'none: the whole picture is watched');
  assert.equal(zonesSummary([w, w]), '2 watched');
  assert.equal(zonesSummary([i]), '1 ignored, the rest watched');
  assert.equal(zonesSummary([w, i, { ...i, kind: 'bad' }]), '1 watched, 1 ignored');
});
