/**
 * UUIDs as the protocol carries them: 16 bytes in RFC 4122 (network) order, shown
 * to users in their canonical text form (`00112233-4455-6677-8899-aabbccddeeff`).
 * @packageDocumentation
 */

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push((i + 0x100).toString(16).slice(1));

/** The nil UUID: the `emitter_id` of deliveries the server itself made (its HTTP API). */
export const NIL_UUID = '00000000-0000-0000-0000-000000000000';

/** 16 random bytes with the version (4) and variant bits of a v4 UUID. */
export function randomUuidBytes(): Uint8Array {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return bytes;
}

/** The canonical text form of 16 bytes. */
export function uuidToString(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += '-';
    s += HEX[bytes[i]! & 0xff];
  }
  return s;
}

/**
 * The 16 bytes of a UUID in text form (with or without dashes, any case).
 * @throws TypeError when `text` is not a UUID.
 */
export function uuidToBytes(text: string): Uint8Array {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not a UUID: ${JSON.stringify(text)}`);
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}
