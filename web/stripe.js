// Timestamp stripe decoder, version 1 (shared/TIMESTAMP_STRIPE.md, section 6).
//
// The sender draws 64 black/white blocks into the top 32 rows of every frame:
// a start marker 1010, a 48-bit Unix-millisecond timestamp (MSB first), its
// CRC-8/SMBUS and an end marker 0101. A frame whose markers or CRC do not
// check out carries no stamp: we return null and never guess.

const BLOCKS = 64;
const START = [1, 0, 1, 0];
const END = [0, 1, 0, 1];
const THRESHOLD = 128;

/** CRC-8/SMBUS (poly 0x07, init 0, no reflection, no final XOR) over bytes. */
export function crc8(bytes) {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b & 0xff;
    for (let k = 0; k < 8; k++) {
      crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
    }
  }
  return crc;
}

/** The 6 big-endian bytes of a 48-bit timestamp (exact: 2^48 < 2^53). */
function stampBytes(stamp) {
  const out = new Array(6);
  let v = stamp;
  for (let k = 5; k >= 0; k--) {
    out[k] = v % 256;
    v = Math.floor(v / 256);
  }
  return out;
}

/**
 * Reads the 64 block averages with block width B and stripe height R
 * (both may be fractional), then checks markers and CRC.
 * Returns {stamp, margin} or null.
 */
function decodeWith(luma, width, height, stride, B, R) {
  const y0 = Math.floor(R / 4);
  const y1 = Math.ceil((3 * R) / 4);
  if (!(B > 0) || y1 > height || y1 <= y0) return null;
  const bits = new Array(BLOCKS);
  let margin = Infinity;
  for (let i = 0; i < BLOCKS; i++) {
    const x0 = Math.floor(i * B + B / 4);
    const x1 = Math.ceil(i * B + (3 * B) / 4);
    if (x1 > width || x1 <= x0) return null;
    let sum = 0;
    for (let y = y0; y < y1; y++) {
      const row = y * stride;
      for (let x = x0; x < x1; x++) sum += luma[row + x];
    }
    const avg = sum / ((x1 - x0) * (y1 - y0));
    if (!(avg >= 0)) return null; // NaN: buffer too short
    bits[i] = avg >= THRESHOLD ? 1 : 0;
    const m = Math.abs(avg - THRESHOLD);
    if (m < margin) margin = m;
  }
  for (let k = 0; k < 4; k++) {
    if (bits[k] !== START[k] || bits[60 + k] !== END[k]) return null;
  }
  let stamp = 0;
  for (let i = 4; i < 52; i++) stamp = stamp * 2 + bits[i];
  let crc = 0;
  for (let i = 52; i < 60; i++) crc = crc * 2 + bits[i];
  if (crc8(stampBytes(stamp)) !== crc) return null;
  return { stamp, margin };
}

/**
 * Decodes the stripe from a luma plane (Uint8Array, Uint8ClampedArray or any
 * indexable array of 0..255 values). `width` and `height` are the pixels
 * available (height may be just the 32 stripe rows), `stride` the distance
 * between rows in elements (defaults to width).
 * Returns {stamp, margin} (stamp in Unix ms, margin = min |average - 128|
 * over the blocks) or null when the frame carries no valid stripe.
 */
export function decodeStripe(luma, width, height, stride = width) {
  if (!luma || !(width > 0) || !(height > 0) || !(stride >= width)) return null;
  if (luma.length < (height - 1) * stride + width) {
    // Accept a buffer holding at least the rows we need; decodeWith checks.
    height = Math.floor((luma.length - width) / stride) + 1;
    if (!(height > 0)) return null;
  }
  // 1. The geometry for this width.
  let primaryB = null;
  if (width >= 1024) primaryB = 16;
  else if (width >= 384) primaryB = Math.floor(width / 64);
  if (primaryB !== null) {
    const r = decodeWith(luma, width, height, stride, primaryB, 32);
    if (r) return r;
  }
  // 2. A stream scaled down from a 1280-wide original.
  const scaledB = (16 * width) / 1280;
  const scaledR = (32 * width) / 1280;
  if (scaledB !== primaryB || scaledR !== 32) {
    return decodeWith(luma, width, height, stride, scaledB, scaledR);
  }
  return null;
}

/** Luma (BT.601 weights) from interleaved RGBA / BGRA bytes, as Uint8Array. */
export function lumaFromRGBA(data, width, height, stride, bgr = false) {
  // stride in bytes; returns a tightly packed width x height plane.
  const out = new Uint8Array(width * height);
  const ri = bgr ? 2 : 0;
  const bi = bgr ? 0 : 2;
  for (let y = 0; y < height; y++) {
    let s = y * stride;
    let d = y * width;
    for (let x = 0; x < width; x++, s += 4, d++) {
      out[d] = 0.299 * data[s + ri] + 0.587 * data[s + 1] + 0.114 * data[s + bi];
    }
  }
  return out;
}
