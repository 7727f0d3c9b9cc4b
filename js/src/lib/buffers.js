// Binary trait decoding. ipywidgets hands a traitlets `Bytes` to the front end as a DataView
// (other hosts may give an ArrayBuffer or a Uint8Array); all are accepted.

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class BufferError extends Error {}

/**
 * A Float64Array over a little-endian float64 buffer.
 * Zero-copy when the platform is little-endian and the view is 8-byte aligned (the usual case);
 * otherwise one copy. `null`/`undefined` give an empty array.
 * @param {DataView|ArrayBuffer|ArrayBufferView|null|undefined} value
 * @param {string} [name] trait name for the error message
 * @returns {Float64Array}
 * @throws {BufferError} when the value is not binary or its length is not a multiple of 8
 */
export function toFloat64(value, name = "buffer") {
  if (value === null || value === undefined) return new Float64Array(0);
  let buffer;
  let offset;
  let length;
  if (value instanceof ArrayBuffer) {
    buffer = value;
    offset = 0;
    length = value.byteLength;
  } else if (ArrayBuffer.isView(value)) {
    buffer = value.buffer;
    offset = value.byteOffset;
    length = value.byteLength;
  } else {
    throw new BufferError(`${name}: expected binary data (DataView/ArrayBuffer), got ${typeof value}`);
  }
  if (length % 8 !== 0) {
    throw new BufferError(`${name}: byte length ${length} is not a multiple of 8 (float64)`);
  }
  const count = length / 8;
  if (LITTLE_ENDIAN && offset % 8 === 0) return new Float64Array(buffer, offset, count);
  const out = new Float64Array(count);
  const dv = new DataView(buffer, offset, length);
  for (let i = 0; i < count; i++) out[i] = dv.getFloat64(i * 8, true);
  return out;
}
