// Tests for web/stripe.js against the test vectors of shared/TIMESTAMP_STRIPE.md (section 7).
// Run: node --test tests/web/
//
// web/stripe.js is an ES module served to browsers as /stripe.js; there is no package.json
// (node would treat a .js file as CommonJS), so it is loaded through a data: URL.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const src = readFileSync(new URL('../../web/stripe.js', import.meta.url), 'utf8');
const { decodeStripe, crc8, lumaFromRGBA } = await import(
  'data:text/javascript;base64,' + Buffer.from(src).toString('base64')
);

// Section 7: timestamp, CRC, the 64 blocks (left to right, 1 = white).
const VECTORS = [
  { stamp: 0, crc: 0x00, blocks: '1010' + '0'.repeat(48) + '00000000' + '0101' },
  {
    stamp: 1700000000000,
    crc: 0x2a,
    blocks: '1010' + '000000011000101111001111111001010110100000000000' + '00101010' + '0101',
  },
  {
    stamp: 1767225600123,
    crc: 0x0b,
    blocks: '1010' + '000000011001101101110110110110101010100001111011' + '00001011' + '0101',
  },
];

// A tiny deterministic PRNG, so "noise" is the same on every run.
function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * Builds a luma plane `width` x `height` (stride >= width) carrying the stripe given as a
 * 64-char block string, drawn with block width B and stripe height R (integers), white/black
 * levels `hi`/`lo`, optional +-noise, a busy picture below the stripe and garbage in the
 * stride padding.
 */
function makeLuma({ blocks, width, height = 48, stride = width, B, R = 32, hi = 235, lo = 16, noise = 0, seed = 1 }) {
  assert.equal(blocks.length, 64);
  const rnd = prng(seed);
  const buf = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < stride; x++) {
      let v;
      if (x >= width) v = 200; // stride padding: must never be read
      else if (y >= R) v = Math.floor(rnd() * 256); // the picture below the stripe
      else if (x >= 64 * B) v = lo; // right of the last block: black
      else v = blocks[Math.floor(x / B)] === '1' ? hi : lo;
      if (x < width && y < R && noise) v += Math.round((rnd() * 2 - 1) * noise);
      buf[y * stride + x] = Math.max(0, Math.min(255, v));
    }
  }
  return buf;
}

/** Scales a plane down by 2 in both directions (box filter), like a 1280 -> 640 stream. */
function halve(buf, width, height, stride) {
  const w = width / 2;
  const h = height / 2;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const a = buf[2 * y * stride + 2 * x] + buf[2 * y * stride + 2 * x + 1];
      const b = buf[(2 * y + 1) * stride + 2 * x] + buf[(2 * y + 1) * stride + 2 * x + 1];
      out[y * w + x] = Math.round((a + b) / 4);
    }
  }
  return out;
}

function withBlock(blocks, i, value) {
  return blocks.slice(0, i) + value + blocks.slice(i + 1);
}

test('CRC-8/SMBUS check value and vector CRCs', () => {
  assert.equal(crc8(Buffer.from('123456789', 'ascii')), 0xf4);
  for (const v of VECTORS) {
    const bytes = [];
    let s = v.stamp;
    for (let k = 0; k < 6; k++) {
      bytes.unshift(s % 256);
      s = Math.floor(s / 256);
    }
    assert.equal(crc8(bytes), v.crc, `crc of ${v.stamp}`);
    // The vector's blocks carry that CRC.
    assert.equal(parseInt(v.blocks.slice(52, 60), 2), v.crc);
    assert.equal(parseInt(v.blocks.slice(4, 52), 2), v.stamp);
  }
});

for (const v of VECTORS) {
  test(`1280 wide, limited range: ${v.stamp}`, () => {
    const luma = makeLuma({ blocks: v.blocks, width: 1280, B: 16 });
    const r = decodeStripe(luma, 1280, 48, 1280);
    assert.ok(r, 'decodes');
    assert.equal(r.stamp, v.stamp);
    assert.ok(r.margin >= 107 && r.margin <= 127, `margin ${r.margin}`);
  });

  test(`1280 wide, full range, only the 32 stripe rows, padded stride: ${v.stamp}`, () => {
    const luma = makeLuma({ blocks: v.blocks, width: 1280, height: 32, stride: 1344, B: 16, hi: 255, lo: 0 });
    const r = decodeStripe(luma, 1280, 32, 1344);
    assert.ok(r);
    assert.equal(r.stamp, v.stamp);
    assert.equal(r.margin, 127);
  });

  test(`1280 wide with coding noise (+-40): ${v.stamp}`, () => {
    const luma = makeLuma({ blocks: v.blocks, width: 1280, B: 16, noise: 40, seed: v.stamp % 1000 + 7 });
    const r = decodeStripe(luma, 1280, 48);
    assert.ok(r);
    assert.equal(r.stamp, v.stamp);
  });

  test(`640 wide (B = 10): ${v.stamp}`, () => {
    const luma = makeLuma({ blocks: v.blocks, width: 640, B: 10 });
    const r = decodeStripe(luma, 640, 48, 640);
    assert.ok(r, 'decodes');
    assert.equal(r.stamp, v.stamp);
    assert.ok(r.margin >= 107, `margin ${r.margin}`);
  });

  test(`1280 original scaled to 640 (B = 8, R = 16 fallback): ${v.stamp}`, () => {
    const full = makeLuma({ blocks: v.blocks, width: 1280, height: 64, B: 16 });
    const small = halve(full, 1280, 64, 1280);
    const r = decodeStripe(small, 640, 32, 640);
    assert.ok(r, 'decodes with the scaled geometry');
    assert.equal(r.stamp, v.stamp);
  });

  test(`1280 wide read from RGBA: ${v.stamp}`, () => {
    const luma = makeLuma({ blocks: v.blocks, width: 1280, height: 32, B: 16, hi: 255, lo: 0 });
    const rgba = new Uint8ClampedArray(1280 * 32 * 4);
    for (let i = 0; i < luma.length; i++) rgba.fill(luma[i], 4 * i, 4 * i + 3), (rgba[4 * i + 3] = 255);
    const y = lumaFromRGBA(rgba, 1280, 32, 1280 * 4);
    const r = decodeStripe(y, 1280, 32);
    assert.ok(r);
    assert.equal(r.stamp, v.stamp);
  });
}

test('a corrupted timestamp block gives null (1280 and 640)', () => {
  for (const v of VECTORS) {
    for (const [width, B] of [
      [1280, 16],
      [640, 10],
    ]) {
      for (const i of [4, 20, 51]) {
        const flipped = withBlock(v.blocks, i, v.blocks[i] === '1' ? '0' : '1');
        const luma = makeLuma({ blocks: flipped, width, B });
        assert.equal(decodeStripe(luma, width, 48), null, `${v.stamp} block ${i} flipped at ${width}`);
      }
    }
  }
});

test('a corrupted CRC block gives null', () => {
  const v = VECTORS[1];
  for (const i of [52, 55, 59]) {
    const flipped = withBlock(v.blocks, i, v.blocks[i] === '1' ? '0' : '1');
    assert.equal(decodeStripe(makeLuma({ blocks: flipped, width: 1280, B: 16 }), 1280, 48), null, `block ${i}`);
  }
});

test('a broken start or end marker gives null even with a matching CRC', () => {
  const v = VECTORS[2];
  for (const i of [0, 1, 2, 3, 60, 61, 62, 63]) {
    const flipped = withBlock(v.blocks, i, v.blocks[i] === '1' ? '0' : '1');
    assert.equal(decodeStripe(makeLuma({ blocks: flipped, width: 1280, B: 16 }), 1280, 48), null, `block ${i}`);
  }
});

test('a grey block (collapsed encoder) that reads the wrong way gives null', () => {
  const v = VECTORS[1];
  // Block 11 is a 1 in this vector; mid-grey just below the threshold reads 0.
  assert.equal(v.blocks[11], '1');
  const luma = makeLuma({ blocks: v.blocks, width: 1280, B: 16 });
  for (let y = 0; y < 32; y++) luma.fill(120, y * 1280 + 11 * 16, y * 1280 + 12 * 16);
  assert.equal(decodeStripe(luma, 1280, 48), null);
});

test('no stripe at all: grey, black, white, random pictures give null', () => {
  const rnd = prng(42);
  const pics = [
    new Uint8Array(1280 * 48).fill(128),
    new Uint8Array(1280 * 48).fill(16),
    new Uint8Array(1280 * 48).fill(235),
    Uint8Array.from({ length: 1280 * 48 }, () => Math.floor(rnd() * 256)),
  ];
  for (const p of pics) assert.equal(decodeStripe(p, 1280, 48), null);
});

test('too few rows or a too short buffer gives null, not an exception', () => {
  const v = VECTORS[1];
  const luma = makeLuma({ blocks: v.blocks, width: 1280, height: 32, B: 16 });
  assert.equal(decodeStripe(luma.subarray(0, 1280 * 20), 1280, 20), null);
  assert.equal(decodeStripe(luma.subarray(0, 1280 * 10), 1280, 32), null);
  assert.equal(decodeStripe(new Uint8Array(0), 1280, 32), null);
  assert.equal(decodeStripe(null, 1280, 32), null);
});
