// Tests for web/camera.js: the notice the page shows for /api/status's `source`.
// Run: node --test tests/web/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const src = readFileSync(new URL('../../web/camera.js', import.meta.url), 'utf8');
const { cameraNotice } = await import('data:text/javascript;base64,' + Buffer.from(src).toString('base64'));

test('a live camera needs no notice', () => {
  assert.equal(cameraNotice({ state: 'live', kind: 'v4l2' }), null);
  assert.equal(cameraNotice(undefined), null);
  assert.equal(cameraNotice('lost'), null);
});

test('a lost camera is named with what went wrong', () => {
  const n = cameraNotice({
    state: 'lost',
    card: 'vivid',
    device: '/dev/video0',
    problem: '/dev/video0 stopped delivering frames',
  });
  assert.equal(n.kind, 'lost');
  assert.match(n.text, /^Camera lost\./);
  assert.match(n.text, /vivid \(\/dev\/video0\)/);
  assert.match(n.text, /stopped delivering frames/);
});

test('a camera missing from the start is lost too, without a name', () => {
  const n = cameraNotice({ state: 'lost', card: null, problem: 'no camera found' });
  assert.match(n.text, /^Camera lost\. The camera is gone: no camera found/);
});
