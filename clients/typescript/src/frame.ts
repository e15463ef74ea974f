/**
 * Frames: one protocol `Message` per binary WebSocket message, a FlatBuffers
 * buffer finished with the file identifier `FWK1`. {@link encodeFrame} writes one
 * from plain fields; {@link decodeFrame} reads one into a plain object.
 * @packageDocumentation
 */
import { Builder, ByteBuffer } from 'flatbuffers';

import { ClientInfo as FbsClientInfo } from './generated/framework/protocol/fbs/client-info.js';
import { HistoryPage as FbsHistoryPage } from './generated/framework/protocol/fbs/history-page.js';
import { Message } from './generated/framework/protocol/fbs/message.js';
import { PresenceList } from './generated/framework/protocol/fbs/presence-list.js';
import { Uuid } from './generated/framework/protocol/fbs/uuid.js';
import { uuidToString } from './uuid.js';

/** The fields of a frame a client sends (everything optional but `opcode`). */
export interface OutgoingFrame {
  /** The opcode (an `Opcode` value, or an application opcode 200..65535). */
  opcode: number;
  /** 16 bytes: correlates the reply. */
  transactionId?: Uint8Array;
  requiresAck?: boolean;
  channel?: string;
  /** 16 bytes: the target session of a `Send`. */
  receiverId?: Uint8Array;
  payload?: Uint8Array;
  token?: string;
  /** 16 bytes. */
  traceId?: Uint8Array;
  spanId?: bigint;
  offset?: number;
  epoch?: string;
  recover?: boolean;
  limit?: number;
}

/**
 * A frame as received, every field read (absent ones as their defaults: `null`
 * for strings and ids, 0, `false`, an empty payload). Ids are UUIDs in text form.
 */
export interface Frame {
  opcode: number;
  transactionId: string | null;
  requiresAck: boolean;
  channel: string | null;
  receiverId: string | null;
  emitterId: string | null;
  payload: Uint8Array;
  token: string | null;
  traceId: string | null;
  spanId: bigint;
  errorCode: number;
  errorMessage: string | null;
  nodeId: string | null;
  retryAfterMs: number;
  offset: number;
  epoch: string | null;
  recover: boolean;
  recovered: boolean;
  limit: number;
  userId: string | null;
  expiresAtMs: number;
}

const EMPTY = new Uint8Array(0);

function uuidBytes(uuid: Uuid | null): string | null {
  if (!uuid) return null;
  const bytes = new Array<number>(16);
  for (let i = 0; i < 16; i++) bytes[i] = uuid.bytes(i) ?? 0;
  return uuidToString(bytes);
}

function writeUuid(b: Builder, bytes: Uint8Array): number {
  return Uuid.createUuid(b, Array.from(bytes));
}

/** Encodes a frame (a `Message` finished with `FWK1`). */
export function encodeFrame(f: OutgoingFrame): Uint8Array {
  const b = new Builder(128 + (f.payload?.length ?? 0));
  // Strings and vectors first: a table is written after its children.
  const channel = f.channel != null ? b.createString(f.channel) : 0;
  const payload = f.payload != null ? b.createByteVector(f.payload) : 0;
  const token = f.token != null ? b.createString(f.token) : 0;
  const epoch = f.epoch ? b.createString(f.epoch) : 0; // empty: absent
  Message.startMessage(b);
  Message.addOpcode(b, f.opcode);
  // Structs are written inline, right before their field is added.
  if (f.transactionId) Message.addTransactionId(b, writeUuid(b, f.transactionId));
  if (f.requiresAck) Message.addRequiresAck(b, true);
  if (channel) Message.addChannel(b, channel);
  if (f.receiverId) Message.addReceiverId(b, writeUuid(b, f.receiverId));
  if (payload) Message.addPayload(b, payload);
  if (token) Message.addToken(b, token);
  if (f.traceId) Message.addTraceId(b, writeUuid(b, f.traceId));
  if (f.spanId) Message.addSpanId(b, f.spanId);
  if (f.offset) Message.addOffset(b, BigInt(f.offset));
  if (epoch) Message.addEpoch(b, epoch);
  if (f.recover) Message.addRecover(b, true);
  if (f.limit) Message.addLimit(b, f.limit);
  Message.finishMessageBuffer(b, Message.endMessage(b));
  return b.asUint8Array();
}

/**
 * Decodes a frame.
 * @throws RangeError or TypeError when `bytes` is not a `FWK1` frame.
 */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length < 8) throw new RangeError('frame shorter than 8 bytes');
  const bb = new ByteBuffer(bytes);
  if (!Message.bufferHasIdentifier(bb)) throw new TypeError('frame without the FWK1 identifier');
  const m = Message.getRootAsMessage(bb);
  return {
    opcode: m.opcode(),
    transactionId: uuidBytes(m.transactionId()),
    requiresAck: m.requiresAck(),
    channel: m.channel(),
    receiverId: uuidBytes(m.receiverId()),
    emitterId: uuidBytes(m.emitterId()),
    payload: m.payloadArray() ?? EMPTY,
    token: m.token(),
    traceId: uuidBytes(m.traceId()),
    spanId: m.spanId(),
    errorCode: m.errorCode(),
    errorMessage: m.errorMessage(),
    nodeId: uuidBytes(m.nodeId()),
    retryAfterMs: m.retryAfterMs(),
    offset: Number(m.offset()),
    epoch: m.epoch(),
    recover: m.recover(),
    recovered: m.recovered(),
    limit: m.limit(),
    userId: m.userId(),
    expiresAtMs: Number(m.expiresAtMs()),
  };
}

/** A session in a channel's presence, or the subject of a `Join` / `Leave` event. */
export interface ClientInfo {
  /** The session (the id `send` reaches). */
  sessionId: string;
  /** Its authenticated user; empty when anonymous. */
  userId: string;
  /** The node that owns the session. */
  nodeId: string;
  /** Bytes the server attached to the connection (e.g. a display name); often empty. */
  info: Uint8Array;
}

/** Who is subscribed to a channel, on every node ({@link Client.presence}). */
export interface PresenceResult {
  /** One entry per subscribed session, in no particular order. */
  clients: ClientInfo[];
  /** How many sessions are subscribed. */
  numClients: number;
  /** How many distinct authenticated users they belong to. */
  numUsers: number;
}

/** One retained publication of a channel ({@link HistoryPage.publications}). */
export interface HistoryPublication {
  /** Its position in the channel's epoch (1, 2, 3, …). */
  offset: number;
  /** What was published. */
  data: Uint8Array;
  /** The publishing session; {@link NIL_UUID} when the server published. */
  emitterId: string | null;
  /** The publisher's user; `null` when anonymous. */
  userId: string | null;
  /** The publication's trace id. */
  traceId: string | null;
}

/** A page of a channel's history ({@link Client.history}). */
export interface HistoryPage {
  /** The channel's current epoch. */
  epoch: string;
  /** The channel's latest offset (that of its newest publication). */
  offset: number;
  /** The publications, ascending by offset. */
  publications: HistoryPublication[];
}

/** Copies a payload out of a received buffer. */
function copy(bytes: Uint8Array | null): Uint8Array {
  return bytes ? bytes.slice() : new Uint8Array(0);
}

/** Reads a `ClientInfo` table (the payload of `Join` and `Leave`, or a presence entry). */
export function readClientInfo(c: FbsClientInfo): ClientInfo {
  return {
    sessionId: uuidBytes(c.sessionId()) ?? '',
    userId: c.userId() ?? '',
    nodeId: uuidBytes(c.nodeId()) ?? '',
    info: copy(c.infoArray()),
  };
}

/** Decodes the payload of a `Join` or `Leave` frame. */
export function decodeClientInfo(payload: Uint8Array): ClientInfo {
  return readClientInfo(FbsClientInfo.getRootAsClientInfo(new ByteBuffer(payload)));
}

/** Decodes the payload of a `Presence` reply. */
export function decodePresence(payload: Uint8Array): PresenceResult {
  if (payload.length === 0) return { clients: [], numClients: 0, numUsers: 0 };
  const list = PresenceList.getRootAsPresenceList(new ByteBuffer(payload));
  const clients: ClientInfo[] = [];
  for (let i = 0; i < list.clientsLength(); i++) {
    const c = list.clients(i);
    if (c) clients.push(readClientInfo(c));
  }
  return { clients, numClients: list.numClients(), numUsers: list.numUsers() };
}

/** Decodes a `History` reply (its envelope and its `HistoryPage` payload). */
export function decodeHistory(reply: Frame): HistoryPage {
  const page: HistoryPage = { epoch: reply.epoch ?? '', offset: reply.offset, publications: [] };
  if (reply.payload.length === 0) return page;
  const table = FbsHistoryPage.getRootAsHistoryPage(new ByteBuffer(reply.payload));
  for (let i = 0; i < table.publicationsLength(); i++) {
    const p = table.publications(i);
    if (!p) continue;
    page.publications.push({
      offset: Number(p.offset()),
      data: copy(p.payloadArray()),
      emitterId: uuidBytes(p.emitterId()),
      userId: p.userId(),
      traceId: uuidBytes(p.traceId()),
    });
  }
  return page;
}
