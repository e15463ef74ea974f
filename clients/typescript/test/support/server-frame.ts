// Frames as a server writes them (every field of `Message`), for the fake server
// of the unit tests. Built with the generated code, like the client's own frames.
import { Builder } from 'flatbuffers';

import { ClientInfo } from '../../src/generated/framework/protocol/fbs/client-info.js';
import { HistoryPage } from '../../src/generated/framework/protocol/fbs/history-page.js';
import { Message } from '../../src/generated/framework/protocol/fbs/message.js';
import { PresenceList } from '../../src/generated/framework/protocol/fbs/presence-list.js';
import { Publication } from '../../src/generated/framework/protocol/fbs/publication.js';
import { Uuid } from '../../src/generated/framework/protocol/fbs/uuid.js';
import { uuidToBytes } from '../../src/uuid.js';

export interface ServerFrame {
  opcode: number;
  transactionId?: string | null;
  channel?: string;
  receiverId?: string;
  emitterId?: string;
  payload?: Uint8Array;
  traceId?: string;
  errorCode?: number;
  errorMessage?: string;
  nodeId?: string;
  retryAfterMs?: number;
  offset?: number;
  epoch?: string;
  recovered?: boolean;
  userId?: string;
  expiresAtMs?: number;
}

const uuid = (b: Builder, text: string) => Uuid.createUuid(b, Array.from(uuidToBytes(text)));

export function serverFrame(f: ServerFrame): Uint8Array {
  const b = new Builder(256);
  const channel = f.channel !== undefined ? b.createString(f.channel) : 0;
  const payload = f.payload !== undefined ? b.createByteVector(f.payload) : 0;
  const errorMessage = f.errorMessage !== undefined ? b.createString(f.errorMessage) : 0;
  const epoch = f.epoch !== undefined ? b.createString(f.epoch) : 0;
  const userId = f.userId !== undefined ? b.createString(f.userId) : 0;
  Message.startMessage(b);
  Message.addOpcode(b, f.opcode);
  if (f.transactionId) Message.addTransactionId(b, uuid(b, f.transactionId));
  if (channel) Message.addChannel(b, channel);
  if (f.receiverId) Message.addReceiverId(b, uuid(b, f.receiverId));
  if (f.emitterId) Message.addEmitterId(b, uuid(b, f.emitterId));
  if (payload) Message.addPayload(b, payload);
  if (f.traceId) Message.addTraceId(b, uuid(b, f.traceId));
  if (f.errorCode) Message.addErrorCode(b, f.errorCode);
  if (errorMessage) Message.addErrorMessage(b, errorMessage);
  if (f.nodeId) Message.addNodeId(b, uuid(b, f.nodeId));
  if (f.retryAfterMs) Message.addRetryAfterMs(b, f.retryAfterMs);
  if (f.offset) Message.addOffset(b, BigInt(f.offset));
  if (epoch) Message.addEpoch(b, epoch);
  if (f.recovered) Message.addRecovered(b, true);
  if (userId) Message.addUserId(b, userId);
  if (f.expiresAtMs) Message.addExpiresAtMs(b, BigInt(f.expiresAtMs));
  Message.finishMessageBuffer(b, Message.endMessage(b));
  return b.asUint8Array().slice();
}

export interface Info {
  sessionId: string;
  userId?: string;
  nodeId: string;
  info?: Uint8Array;
}

function clientInfo(b: Builder, c: Info): number {
  const user = b.createString(c.userId ?? '');
  const info = b.createByteVector(c.info ?? new Uint8Array(0));
  ClientInfo.startClientInfo(b);
  ClientInfo.addSessionId(b, uuid(b, c.sessionId));
  ClientInfo.addUserId(b, user);
  ClientInfo.addNodeId(b, uuid(b, c.nodeId));
  ClientInfo.addInfo(b, info);
  return ClientInfo.endClientInfo(b);
}

export function clientInfoPayload(c: Info): Uint8Array {
  const b = new Builder(128);
  b.finish(clientInfo(b, c));
  return b.asUint8Array().slice();
}

export function presencePayload(clients: Info[], numUsers: number): Uint8Array {
  const b = new Builder(256);
  const offsets = clients.map((c) => clientInfo(b, c));
  const vec = PresenceList.createClientsVector(b, offsets);
  PresenceList.startPresenceList(b);
  PresenceList.addClients(b, vec);
  PresenceList.addNumClients(b, clients.length);
  PresenceList.addNumUsers(b, numUsers);
  b.finish(PresenceList.endPresenceList(b));
  return b.asUint8Array().slice();
}

export function historyPayload(pubs: Array<{ offset: number; data: Uint8Array; emitterId: string; userId?: string }>): Uint8Array {
  const b = new Builder(256);
  const offsets = pubs.map((p) => {
    const payload = b.createByteVector(p.data);
    const user = p.userId !== undefined ? b.createString(p.userId) : 0;
    Publication.startPublication(b);
    Publication.addOffset(b, BigInt(p.offset));
    Publication.addPayload(b, payload);
    Publication.addEmitterId(b, uuid(b, p.emitterId));
    if (user) Publication.addUserId(b, user);
    return Publication.endPublication(b);
  });
  const vec = HistoryPage.createPublicationsVector(b, offsets);
  HistoryPage.startHistoryPage(b);
  HistoryPage.addPublications(b, vec);
  b.finish(HistoryPage.endHistoryPage(b));
  return b.asUint8Array().slice();
}
