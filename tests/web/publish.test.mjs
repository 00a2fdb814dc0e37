// The page's WHIP panel: what a row says for each state /api/status reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ago, publishRow } from '../../web/publish.js';

const now = 1_800_000_000_000;

test('ago reads like a person would say it', () => {
  assert.equal(ago(now - 12_000, now), '12 s');
  assert.equal(ago(now - 180_000, now), '3 min');
  assert.equal(ago(now - 2 * 3600_000 - 300_000, now), '2 h 5 min');
  assert.equal(ago(now + 5000, now), '0 s');
});

test('a live target shows where, codec, for how long and its rate', () => {
  const r = publishRow(
    {
      url: 'https://sfu.example:8443/whip/endpoint/cam',
      codec: 'H.264',
      state: 'live',
      since_ms: now - 65_000,
      bitrate_kbps: 1500,
      bwe_kbps: 4200,
      last_error: 'old error',
    },
    now,
  );
  assert.equal(r.where, 'sfu.example:8443/whip/endpoint/cam');
  assert.equal(r.word, 'live');
  assert.equal(r.detail, 'H.264 · live for 1 min · 1500 kbit/s · link ≈ 4.2 Mbit/s');
  assert.equal(r.problem, '', 'a past error is not shown once live');
});

test('a failing target says why and that it retries', () => {
  const r = publishRow(
    { url: 'http://10.0.0.2:7080/w', codec: 'VP8', state: 'waiting', since_ms: now - 4000, last_error: 'the receiver refused the token (403)' },
    now,
  );
  assert.equal(r.word, 'retrying');
  assert.equal(r.detail, 'VP8 · retrying for 4 s');
  assert.equal(r.problem, 'the receiver refused the token (403)');
});

test('unknown states and odd input do not break the row', () => {
  const r = publishRow({ url: 'not a url', state: 'exploded', last_error: 42 }, now);
  assert.equal(r.where, 'not a url');
  assert.equal(r.state, 'waiting');
  assert.equal(r.problem, '');
});
