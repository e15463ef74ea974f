#!/usr/bin/env python3
"""Cross-language client for protocol v1.

Usage: client.py <ws-url> <dir-with-flatc-generated-python>

A `wss://` URL is checked with Python's `ssl` against the CA certificate in the
PEM file named by $FRAMEWORK_TEST_CA (else the system's roots).

Speaks to a running server using only the code `flatc --python` generates from
schemas/protocol.fbs, the `flatbuffers` runtime and `websockets`: the schema is the
contract, nothing here knows the server's implementation. Exits 0 when every check
passes, non-zero with a message naming the failed check otherwise.
"""

import asyncio
import os
import ssl
import sys
import uuid

FILE_IDENTIFIER = b"FWK1"
TIMEOUT_S = 10.0


class Mismatch(Exception):
    """A check against the protocol contract failed."""


def fail(msg):
    raise Mismatch(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def usage_and_imports():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    url, gen_dir = sys.argv[1], sys.argv[2]
    if not os.path.isdir(os.path.join(gen_dir, "framework", "protocol", "fbs")):
        sys.stderr.write(
            f"FAIL: {gen_dir} does not hold flatc's Python output for schemas/protocol.fbs\n"
        )
        sys.exit(2)
    sys.path.insert(0, gen_dir)
    return url, gen_dir


URL, GEN_DIR = usage_and_imports()

try:
    import flatbuffers  # noqa: E402
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"FAIL: python package 'flatbuffers' missing ({e}); run scripts/test.sh\n")
    sys.exit(3)
try:
    try:
        from websockets.asyncio.client import connect as ws_connect  # websockets >= 13
    except ImportError:  # pragma: no cover
        from websockets import connect as ws_connect  # websockets 12
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"FAIL: python package 'websockets' missing ({e}); run scripts/test.sh\n")
    sys.exit(3)

from framework.protocol.fbs import Message as M  # noqa: E402
from framework.protocol.fbs.ErrorCode import ErrorCode  # noqa: E402
from framework.protocol.fbs.Opcode import Opcode  # noqa: E402
from framework.protocol.fbs.Uuid import CreateUuid  # noqa: E402

OPCODE_NAMES = {v: k for k, v in vars(Opcode).items() if not k.startswith("__")}
ERROR_NAMES = {v: k for k, v in vars(ErrorCode).items() if not k.startswith("__")}


def opname(op):
    return OPCODE_NAMES.get(op, str(op))


def errname(code):
    return ERROR_NAMES.get(code, str(code))


# ---------------------------------------------------------------------------
# Encoding: generated builders only.


def encode(
    opcode,
    transaction_id=None,
    requires_ack=False,
    channel=None,
    receiver_id=None,
    payload=None,
    trace_id=None,
    identifier=FILE_IDENTIFIER,
):
    """Builds one `Message`. UUIDs are `uuid.UUID`; strings/vectors go first, structs inline."""
    b = flatbuffers.Builder(256)
    channel_off = b.CreateString(channel) if channel is not None else None
    payload_off = b.CreateByteVector(payload) if payload is not None else None
    M.MessageStart(b)
    M.MessageAddOpcode(b, opcode)
    if transaction_id is not None:
        M.MessageAddTransactionId(b, CreateUuid(b, list(transaction_id.bytes)))
    if requires_ack:
        M.MessageAddRequiresAck(b, True)
    if channel_off is not None:
        M.MessageAddChannel(b, channel_off)
    if receiver_id is not None:
        M.MessageAddReceiverId(b, CreateUuid(b, list(receiver_id.bytes)))
    if payload_off is not None:
        M.MessageAddPayload(b, payload_off)
    if trace_id is not None:
        M.MessageAddTraceId(b, CreateUuid(b, list(trace_id.bytes)))
    root = M.MessageEnd(b)
    if identifier is None:
        b.Finish(root)
    else:
        b.Finish(root, identifier)
    return bytes(b.Output())


# ---------------------------------------------------------------------------
# Decoding: generated accessors only.


def as_uuid(s):
    """Generated `Uuid` struct (or None) -> uuid.UUID (or None)."""
    if s is None:
        return None
    return uuid.UUID(bytes=bytes(s.Bytes()))


class Frame:
    """A decoded server frame: plain Python values read with the generated accessors."""

    def __init__(self, data):
        check(isinstance(data, (bytes, bytearray)), f"server sent a text message: {data!r}")
        data = bytes(data)
        check(len(data) >= 8, f"server frame of {len(data)} bytes is too short")
        check(
            M.Message.MessageBufferHasIdentifier(data, 0),
            f"server frame lacks the FWK1 identifier: {data[:8].hex()}",
        )
        m = M.Message.GetRootAs(data, 0)
        self.opcode = m.Opcode()
        self.transaction_id = as_uuid(m.TransactionId())
        self.requires_ack = m.RequiresAck()
        self.channel = m.Channel().decode() if m.Channel() is not None else None
        self.receiver_id = as_uuid(m.ReceiverId())
        self.emitter_id = as_uuid(m.EmitterId())
        self.payload = None if m.PayloadIsNone() else bytes(m.Payload(i) for i in range(m.PayloadLength()))
        self.token = m.Token()
        self.trace_id = as_uuid(m.TraceId())
        self.span_id = m.SpanId()
        self.error_code = m.ErrorCode()
        self.error_message = m.ErrorMessage().decode() if m.ErrorMessage() is not None else None
        self.node_id = as_uuid(m.NodeId())
        self.retry_after_ms = m.RetryAfterMs()

    def __repr__(self):
        fields = {k: v for k, v in vars(self).items() if v not in (None, False, 0)}
        fields["opcode"] = opname(self.opcode)
        if self.error_code:
            fields["error_code"] = errname(self.error_code)
        return f"Frame({fields})"


class Conn:
    def __init__(self, name, ws):
        self.name = name
        self.ws = ws
        self.session_id = None
        self.node_id = None

    async def send(self, data):
        await self.ws.send(data)

    async def recv(self, what):
        try:
            data = await asyncio.wait_for(self.ws.recv(), TIMEOUT_S)
        except asyncio.TimeoutError:
            fail(f"[{self.name}] no frame within {TIMEOUT_S}s while waiting for {what}")
        except Exception as e:  # connection closed etc.
            fail(f"[{self.name}] connection failed while waiting for {what}: {e!r}")
        return Frame(data)

    async def expect(self, what, opcode):
        f = await self.recv(what)
        check(
            f.opcode == opcode,
            f"[{self.name}] expected {opname(opcode)} for {what}, got {f!r}",
        )
        return f


def tls_context():
    """For wss:// only: certificates and host names checked (the defaults)."""
    if not URL.startswith("wss://"):
        return None
    ca = os.environ.get("FRAMEWORK_TEST_CA")
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


async def connect(name):
    options = {"max_size": None}
    context = tls_context()
    if context is not None:
        options["ssl"] = context
    ws = await asyncio.wait_for(ws_connect(URL, **options), TIMEOUT_S)
    if context is not None:
        tls = ws.transport.get_extra_info("ssl_object")
        check(tls is not None, f"[{name}] a wss:// connection without TLS")
        print(f"[{name}] tls: {tls.version()}")
    c = Conn(name, ws)
    w = await c.expect("Welcome", Opcode.Welcome)
    check(w.receiver_id is not None, f"[{name}] Welcome has no receiver_id: {w!r}")
    check(w.receiver_id.int != 0, f"[{name}] Welcome receiver_id is nil")
    check(w.node_id is not None, f"[{name}] Welcome has no node_id: {w!r}")
    c.session_id, c.node_id = w.receiver_id, w.node_id
    print(f"[{name}] welcome: session {c.session_id}, node {c.node_id}")
    return c


def expect_error(f, who, what, code, tx):
    check(f.opcode == Opcode.Error, f"[{who}] {what}: expected Error/{errname(code)}, got {f!r}")
    check(
        f.error_code == code,
        f"[{who}] {what}: expected error code {errname(code)}, got {errname(f.error_code)} ({f!r})",
    )
    check(
        f.transaction_id == tx,
        f"[{who}] {what}: Error transaction_id {f.transaction_id} != {tx}",
    )


async def ping(c, what="Ping"):
    tx, trace = uuid.uuid4(), uuid.uuid4()
    await c.send(encode(Opcode.Ping, transaction_id=tx, trace_id=trace))
    p = await c.expect(what, Opcode.Pong)
    check(p.transaction_id == tx, f"[{c.name}] Pong transaction_id {p.transaction_id} != {tx}")
    check(p.trace_id == trace, f"[{c.name}] Pong trace_id {p.trace_id} != {trace}")


async def main():
    a = await connect("A")

    # Ping -> Pong with the ping's transaction_id and trace_id.
    await ping(a)
    print("[A] ping/pong ok")

    # Subscribe with requires_ack -> Ack carrying the transaction_id.
    channel = "py-room-" + uuid.uuid4().hex[:8]
    tx = uuid.uuid4()
    await a.send(encode(Opcode.Subscribe, transaction_id=tx, requires_ack=True, channel=channel))
    ack = await a.expect("Subscribe ack", Opcode.Ack)
    check(ack.transaction_id == tx, f"[A] Subscribe Ack transaction_id {ack.transaction_id} != {tx}")
    print("[A] subscribe/ack ok")

    # Publish to that channel: the publisher is subscribed, so it gets its own delivery
    # (emitter_id = own session id), plus the Ack it asked for, in either order.
    tx, body = uuid.uuid4(), b"hello from python \x00\xff"
    await a.send(
        encode(Opcode.Publish, transaction_id=tx, requires_ack=True, channel=channel, payload=body)
    )
    got = [await a.recv("Publish delivery/ack"), await a.recv("Publish delivery/ack")]
    acks = [f for f in got if f.opcode == Opcode.Ack]
    deliveries = [f for f in got if f.opcode == Opcode.Publish]
    check(len(acks) == 1 and len(deliveries) == 1, f"[A] expected one Ack and one Publish, got {got!r}")
    check(acks[0].transaction_id == tx, f"[A] Publish Ack transaction_id {acks[0].transaction_id} != {tx}")
    d = deliveries[0]
    check(d.channel == channel, f"[A] delivery channel {d.channel!r} != {channel!r}")
    check(d.payload == body, f"[A] delivery payload {d.payload!r} != {body!r}")
    check(d.emitter_id == a.session_id, f"[A] delivery emitter_id {d.emitter_id} != own {a.session_id}")
    check(d.token is None, f"[A] delivery carries a token: {d.token!r}")
    check(d.trace_id is not None, "[A] delivery has no trace_id")
    print("[A] publish/delivery ok")

    # Application opcode 200: the server's handler echoes the payload reversed, in a
    # response with the same opcode and transaction_id.
    tx, body = uuid.uuid4(), bytes(range(1, 40))
    await a.send(encode(200, transaction_id=tx, payload=body))
    r = await a.expect("opcode 200 response", 200)
    check(r.transaction_id == tx, f"[A] opcode 200 response transaction_id {r.transaction_id} != {tx}")
    check(r.payload == body[::-1], f"[A] opcode 200 payload {r.payload!r} != reversed {body[::-1]!r}")
    print("[A] opcode 200 ok")

    # A second connection sends to the first.
    b = await connect("B")
    check(b.session_id != a.session_id, "[B] got the same session id as A")
    tx, body = uuid.uuid4(), b"direct message"
    await b.send(
        encode(Opcode.Send, transaction_id=tx, requires_ack=True, receiver_id=a.session_id, payload=body)
    )
    ack = await b.expect("Send ack", Opcode.Ack)
    check(ack.transaction_id == tx, f"[B] Send Ack transaction_id {ack.transaction_id} != {tx}")
    d = await a.expect("Send delivery", Opcode.Send)
    check(d.payload == body, f"[A] Send payload {d.payload!r} != {body!r}")
    check(d.emitter_id == b.session_id, f"[A] Send emitter_id {d.emitter_id} != B {b.session_id}")
    check(d.transaction_id is None, f"[A] Send delivery leaks the sender's transaction_id {d.transaction_id}")
    check(d.token is None, f"[A] Send delivery carries a token: {d.token!r}")
    print("[B->A] send ok")

    # Send to a session nobody owns -> Error/NotFound with the transaction_id.
    tx = uuid.uuid4()
    await b.send(encode(Opcode.Send, transaction_id=tx, receiver_id=uuid.uuid4(), payload=b"x"))
    expect_error(await b.recv("Send NotFound"), "B", "Send to unknown session", ErrorCode.NotFound, tx)
    print("[B] send to unknown session -> NotFound ok")

    # Malformed input -> Error/BadFrame, and the connection stays usable.
    await a.send(b"\x01\x02\x03")
    expect_error(await a.recv("BadFrame"), "A", "3 garbage bytes", ErrorCode.BadFrame, None)
    await a.send(encode(Opcode.Ping, transaction_id=uuid.uuid4(), identifier=None))
    expect_error(await a.recv("BadFrame"), "A", "frame without FWK1", ErrorCode.BadFrame, None)
    await a.send("text is not a protocol frame")
    expect_error(await a.recv("BadFrame"), "A", "text message", ErrorCode.BadFrame, None)
    await ping(a, "Ping after malformed input")
    await ping(b, "Ping on the other connection")
    print("[A] malformed frames -> BadFrame ok, connection alive")

    # Unknown framework opcode -> Error/UnknownOpcode with the transaction_id.
    tx = uuid.uuid4()
    await a.send(encode(150, transaction_id=tx))
    expect_error(await a.recv("UnknownOpcode"), "A", "opcode 150", ErrorCode.UnknownOpcode, tx)
    print("[A] unknown opcode ok")

    await a.ws.close()
    await b.ws.close()
    print("OK: all cross-language checks passed")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 120))
    except asyncio.TimeoutError:
        sys.stderr.write("FAIL: the client did not finish within 120 s\n")
        sys.exit(1)
    except Mismatch as e:
        sys.stderr.write(f"FAIL: {e}\n")
        sys.exit(1)
