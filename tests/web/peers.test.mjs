// The page's row of other rtcams: what each card says and where it leads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peerCard } from '../../web/peers.js';

test('a peer opens by its .local name, with its address as the fallback', () => {
  const c = peerCard({
    name: 'garage (3fa2)',
    host: 'garage.local',
    addresses: ['fe80::1', '192.168.1.23'],
    port: 8443,
    camera: 'HD Pro Webcam C920',
    live: true,
  });
  assert.equal(c.title, 'garage');
  assert.equal(c.href, 'https://garage.local:8443/');
  assert.equal(c.alt, 'https://192.168.1.23:8443/');
  assert.equal(c.sub, 'HD Pro Webcam C920');
  assert.equal(c.live, true);
});

test('a peer that stopped answering says so', () => {
  const c = peerCard({ name: 'porch', host: 'porch.local', addresses: ['10.0.0.7'], port: 9443, camera: 'imx708', live: false });
  assert.equal(c.sub, 'imx708 · not answering');
  assert.equal(c.href, 'https://porch.local:9443/');
  assert.equal(c.live, false);
});

test('odd entries still give a usable card or none', () => {
  assert.equal(peerCard({ addresses: ['169.254.1.2'] }).href, 'https://169.254.1.2:8443/');
  assert.equal(peerCard({}).href, '');
});
