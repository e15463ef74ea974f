//! Fuzz body `ws_frames`: the session's own RFC 6455 frame reader
//! (`framework/src/session/frames.rs`, through
//! `framework::__private::fuzz::read_ws_frames`) over a client's byte stream. The
//! first byte chooses the mode:
//!
//! - even, **raw**: the next bytes set `max_message_size` (1..=4096), the memory
//!   budget (0..=8191 bytes), `read_buffer_size` (139..=1024) and the sizes of
//!   the pieces the stream arrives in (up to 7, cycled); the rest is the stream;
//! - odd, **structured**: the bytes build a valid client stream: binary and text
//!   messages of every length encoding (7-bit, 16-bit, 64-bit), cut into fragments
//!   at any byte (a UTF-8 character too), pings and pongs between messages and
//!   between fragments, close frames with codes and reasons, every frame masked
//!   with a mask taken from the bytes; `max_message_size` at least the largest
//!   message (up to 64 KiB more), a budget of only 5/4 of the largest message
//!   (plus up to 3 bytes), pieces as in the raw mode but longer for a long
//!   stream (each piece is a read of its own).
//!
//! Checked: nothing panics; no byte stays counted in the budget once the reader is
//! gone, and the budget never counted more than its limit; every data message is
//! at most `max_message_size`, every control frame at most 125 bytes. **The
//! reader agrees with an independent model** ([`expect`], written from RFC 6455
//! rather than from the reader): the same messages and control frames, in order,
//! unmasked, and the same end (the stream's end, or the close code 1002, 1007 or
//! 1009 of the first violation). The model is checked against the stream read
//! all at once without a budget, in pieces with the budget and all at once with
//! the budget, so **the result does not depend on how the bytes arrive**. The one
//! exception is the budget: a message that is whole in the read buffer is cut out
//! of it without being counted, so whether the budget refuses a message depends
//! on the pieces; a run the budget stopped read a prefix of the model's messages,
//! only when `max_message_size` is over the budget (the reader never holds more
//! than `max_message_size` for one message, and [`READ_PAST`] bytes), and only at
//! a message whose need the model saw, plus a quarter and [`READ_PAST`] bytes, go
//! over the budget (its buffer grows by at most a quarter, and has room to read
//! that far past a frame). In the structured mode the stream the body built is
//! read back exactly: every message, in order, and nothing held after, never
//! refused by a budget of 5/4 of the largest message and [`READ_PAST`] bytes (a
//! message's buffer is its first frame's size, then grows by at most a quarter,
//! with room to read that far past a frame).
//!
//! Shared by the cargo-fuzz target (`fuzz/fuzz_targets/ws_frames.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`), which include this file by path.

use framework::__private::fuzz::{read_ws_frames, FramesRead, READ_PAST};
use tokio_tungstenite::tungstenite::Message;

/// A message or control frame as the model and the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: its code and reason, if it had a body.
    Close(Option<(u16, String)>),
}

/// What a server must make of a client's stream, by RFC 6455.
#[derive(Debug, Default)]
pub struct Expected {
    /// The messages and control frames, in order.
    pub items: Vec<Item>,
    /// The close code of the first violation; `None`: the stream just ends.
    pub close: Option<u16>,
    /// The most any data message announced it would need (bytes received so far
    /// plus the frame's length), over the headers that passed their checks.
    pub max_need: u64,
}

const PROTOCOL: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const TOO_BIG: u16 = 1009;

/// Close codes a peer may send (RFC 6455 §7.4, the IANA registry up to 1013,
/// 3000–4999 for libraries and applications). 1004–1006 and 1015 are never sent;
/// 1014 is refused too (the WebSocket library's choice, which the reader keeps).
fn allowed_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Whether `bytes` can still become UTF-8 (`whole`: must be UTF-8 as they are).
fn utf8_so_far(bytes: &[u8], whole: bool) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        // Only a character cut at the very end may still be completed.
        Err(e) => !whole && e.error_len().is_none(),
    }
}

/// The model: reads `stream` frame by frame as RFC 6455 §5 describes a server
/// must (client frames masked; no RSV bits, no extension being negotiated; only
/// opcodes 0, 1, 2, 8, 9, 10; control frames unfragmented and at most 125 bytes;
/// a continuation only inside a message, a new message only after the last one
/// ended; a 64-bit length with its top bit clear; close bodies of 0 or ≥ 2 bytes,
/// an allowed code, a UTF-8 reason; text UTF-8), with `max_message` bytes at most
/// per message. Checks that need only the first two bytes are made on them; the
/// length's once the header is whole (mask included); the size as the header
/// arrives (not after its payload); a text fragment's UTF-8 once that fragment is
/// whole (its text so far must be able to become UTF-8). Parsing goes on after a
/// close frame (what the session does with it is not the reader's business).
pub fn expect(stream: &[u8], max_message: usize) -> Expected {
    let mut out = Expected::default();
    let mut at = 0;
    // The message being assembled: whether it is text, its bytes.
    let mut open: Option<(bool, Vec<u8>)> = None;
    loop {
        let s = &stream[at..];
        if s.len() < 2 {
            return out;
        }
        let fin = s[0] & 0x80 != 0;
        let rsv = s[0] & 0x70;
        let opcode = s[0] & 0x0f;
        let masked = s[1] & 0x80 != 0;
        let short = s[1] & 0x7f;
        let control = opcode >= 8;
        let known = matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10);
        if rsv != 0 || !known || !masked || (control && (!fin || short > 125)) {
            out.close = Some(PROTOCOL);
            return out;
        }
        let ext = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + ext + 4;
        if s.len() < header {
            return out;
        }
        let len = match ext {
            0 => u64::from(short),
            2 => u64::from(u16::from_be_bytes([s[2], s[3]])),
            _ => u64::from_be_bytes(s[2..10].try_into().expect("8 bytes")),
        };
        if len >> 63 != 0 {
            out.close = Some(PROTOCOL);
            return out;
        }
        if !control {
            let continuation = opcode == 0;
            if continuation != open.is_some() {
                out.close = Some(PROTOCOL);
                return out;
            }
            let so_far = open.as_ref().map_or(0, |(_, data)| data.len() as u64);
            if so_far + len > max_message as u64 {
                out.close = Some(TOO_BIG);
                return out;
            }
            out.max_need = out.max_need.max(so_far + len);
        }
        // At most `max_message` or 125 here.
        let len = len as usize;
        if s.len() - header < len {
            return out;
        }
        let mask = &s[header - 4..header];
        let mut payload = s[header..header + len].to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        at += header + len;
        match opcode {
            9 => out.items.push(Item::Ping(payload)),
            10 => out.items.push(Item::Pong(payload)),
            8 => {
                if payload.is_empty() {
                    out.items.push(Item::Close(None));
                    continue;
                }
                if payload.len() == 1 {
                    out.close = Some(PROTOCOL);
                    return out;
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !allowed_close_code(code) {
                    out.close = Some(PROTOCOL);
                    return out;
                }
                let Ok(reason) = String::from_utf8(payload[2..].to_vec()) else {
                    out.close = Some(INVALID_PAYLOAD);
                    return out;
                };
                out.items.push(Item::Close(Some((code, reason))));
            }
            _ => {
                let (text, mut data) = open.take().unwrap_or((opcode == 1, Vec::new()));
                data.extend_from_slice(&payload);
                if text && !utf8_so_far(&data, fin) {
                    out.close = Some(INVALID_PAYLOAD);
                    return out;
                }
                if !fin {
                    open = Some((text, data));
                } else if text {
                    out.items
                        .push(Item::Text(String::from_utf8(data).expect("checked")));
                } else {
                    out.items.push(Item::Binary(data));
                }
            }
        }
    }
}

/// A message the reader returned, as an [`Item`]; checks its size.
fn item(message: &Message, max_message: usize) -> Item {
    let item = match message {
        Message::Text(t) => {
            assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "text not UTF-8");
            Item::Text(t.as_str().to_owned())
        }
        Message::Binary(b) => Item::Binary(b.to_vec()),
        Message::Ping(p) => Item::Ping(p.to_vec()),
        Message::Pong(p) => Item::Pong(p.to_vec()),
        Message::Close(c) => Item::Close(
            c.as_ref()
                .map(|c| (u16::from(c.code), c.reason.as_str().to_owned())),
        ),
        Message::Frame(_) => panic!("a raw frame handed up: {message:?}"),
    };
    match &item {
        Item::Text(t) => assert!(t.len() <= max_message, "a text of {} bytes", t.len()),
        Item::Binary(b) => assert!(b.len() <= max_message, "a message of {} bytes", b.len()),
        Item::Ping(p) | Item::Pong(p) => assert!(p.len() <= 125, "a control frame of {}", p.len()),
        Item::Close(Some((_, r))) => assert!(r.len() <= 123, "a close reason of {}", r.len()),
        Item::Close(None) => {}
    }
    item
}

/// Checks one run of the reader against the model.
fn check(what: &str, read: &FramesRead, want: &Expected, max_message: usize, budget: usize) {
    assert_eq!(read.held_after, 0, "{what}: bytes left in the budget");
    assert!(
        read.held_peak <= budget,
        "{what}: held {} over a budget of {budget}",
        read.held_peak
    );
    let got: Vec<Item> = read.messages.iter().map(|m| item(m, max_message)).collect();
    if !read.over_budget {
        assert_eq!(got, want.items, "{what}: messages");
        assert_eq!(read.close, want.close, "{what}: close code");
        return;
    }
    assert_eq!(
        read.close, None,
        "{what}: the budget decides, no close code"
    );
    assert!(
        max_message + READ_PAST > budget,
        "{what}: over a budget of {budget} with max_message_size {max_message}"
    );
    assert!(
        want.max_need * 5 + 4 * READ_PAST as u64 > budget as u64 * 4,
        "{what}: over a budget of {budget}, yet no message needed more than {}",
        want.max_need
    );
    assert!(
        got.len() <= want.items.len() && got[..] == want.items[..got.len()],
        "{what}: stopped by the budget, not after a prefix of the messages: {got:?}, want {:?}",
        want.items
    );
}

/// The input's bytes, taken in order; zeros once they run out.
struct Source<'a>(&'a [u8]);

impl Source<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn mask(&mut self) -> [u8; 4] {
        [self.byte(), self.byte(), self.byte(), self.byte()]
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reader settings from the input: `read_buffer_size` and the pieces.
fn settings(src: &mut Source<'_>) -> (usize, Vec<usize>) {
    let read_size = 139 + usize::from(src.u16()) % 886;
    let pieces = (0..src.byte() % 8)
        .map(|_| 1 + usize::from(src.byte()))
        .collect();
    (read_size, pieces)
}

/// The raw mode: the rest of the input is the stream.
fn raw(data: &[u8]) {
    let mut src = Source(data);
    let max_message = 1 + usize::from(src.u16()) % 4096;
    let budget = usize::from(src.u16()) % 8192;
    let (read_size, pieces) = settings(&mut src);
    let stream = src.0;
    let want = expect(stream, max_message);
    let whole = read_ws_frames(stream, &[], max_message, read_size, usize::MAX);
    assert!(!whole.over_budget, "over an unlimited budget");
    check(
        "all at once, no budget",
        &whole,
        &want,
        max_message,
        usize::MAX,
    );
    let split = read_ws_frames(stream, &pieces, max_message, read_size, budget);
    check("in pieces", &split, &want, max_message, budget);
    let once = read_ws_frames(stream, &[], max_message, read_size, budget);
    check("all at once", &once, &want, max_message, budget);
    if !split.over_budget && !once.over_budget {
        assert_eq!(split.messages, once.messages);
        assert_eq!(split.close, once.close);
    }
}

/// A masked client frame, its length in the fewest bytes.
pub fn frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(if fin { 0x80 | opcode } else { opcode });
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let from = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[from..].iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// A character of 1 to 4 UTF-8 bytes chosen by `b`.
fn character(b: u8) -> char {
    let k = u32::from(b >> 2);
    let code = match b % 4 {
        0 => u32::from(b'a') + k % 26,
        1 => 0xa0 + k * 29,    // 2 bytes: up to U+07C3
        2 => 0x4e00 + k * 97,  // 3 bytes: CJK
        _ => 0x1f600 + k % 80, // 4 bytes: emoji
    };
    char::from_u32(code).expect("a scalar value")
}

/// The next value of a cheap generator (for contents longer than the input).
fn step(x: &mut u32) -> u8 {
    *x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    (*x >> 16) as u8
}

/// A payload of `len` bytes (text: at least `len`, whole characters): the first
/// from the input, then from a generator seeded by it.
fn content(src: &mut Source<'_>, text: bool, len: usize) -> Vec<u8> {
    let mut seed = u32::from(src.u16());
    let mut out = Vec::with_capacity(len + 4);
    let mut taken = 0;
    while out.len() < len {
        let b = if taken < 64 && !src.is_empty() {
            taken += 1;
            src.byte()
        } else if text {
            step(&mut seed)
        } else {
            // The rest of a binary payload: cheaper still.
            let from = out.len();
            out.extend((from..len).map(|i| (i as u32).wrapping_mul(seed | 1).to_le_bytes()[1]));
            break;
        };
        if text {
            let mut buf = [0u8; 4];
            out.extend_from_slice(character(b).encode_utf8(&mut buf).as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// A control frame's payload (ping or pong), up to 125 bytes.
fn control_payload(src: &mut Source<'_>) -> Vec<u8> {
    let len = usize::from(src.byte()) % 126;
    content(src, false, len)
}

/// A close frame's body (code and reason, or nothing) and what it reads as.
fn close_body(src: &mut Source<'_>) -> (Vec<u8>, Item) {
    let c = src.byte();
    if c.is_multiple_of(4) {
        return (Vec::new(), Item::Close(None));
    }
    const CODES: [u16; 11] = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
    ];
    let code = if c % 4 == 3 {
        3000 + src.u16() % 2000
    } else {
        CODES[usize::from(src.byte()) % CODES.len()]
    };
    let reason =
        String::from_utf8(content(src, true, usize::from(c >> 2) % 100)).expect("characters");
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason.as_bytes());
    (body, Item::Close(Some((code, reason))))
}

/// Most bytes of payload the structured mode builds (a 64-bit length needs
/// 64 KiB).
const MAX_BUILT: usize = 100_000;

/// The structured mode: builds a valid stream from the input and reads it back.
fn structured(data: &[u8]) {
    let mut src = Source(data);
    let (read_size, pieces) = settings(&mut src);
    let mut stream = Vec::new();
    let mut items = Vec::new();
    let mut largest = 0;
    let mut built = 0;
    while !src.is_empty() && items.len() < 32 && built < MAX_BUILT {
        let op = src.byte();
        match op % 8 {
            kind @ 0..=4 => {
                let text = kind >= 3;
                let class = src.byte();
                // Mostly short; a long one (up to 64 KiB, or over it) now and then.
                let long = class & 0x38 == 0;
                let len = match class % 8 {
                    6 if long => usize::from(src.u16()),
                    7 if long => 0x1_0000 + usize::from(src.byte()),
                    4..=6 => 126 + usize::from(src.u16()) % 1024,
                    _ => usize::from(src.byte()) % 126,
                };
                // Texts up to 8 KiB (their checks cost more); a 64-bit length
                // is a binary message's.
                let len = if text { len % 8192 } else { len };
                let payload = content(&mut src, text, len);
                // Cut anywhere, a character too.
                let mut cuts: Vec<usize> = (0..src.byte() % 8)
                    .map(|_| usize::from(src.u16()) % (payload.len() + 1))
                    .collect();
                cuts.sort_unstable();
                cuts.push(payload.len());
                let mut from = 0;
                for (i, &to) in cuts.iter().enumerate() {
                    let first = i == 0;
                    let last = i + 1 == cuts.len();
                    let opcode = match (first, text) {
                        (false, _) => 0,
                        (true, true) => 1,
                        (true, false) => 2,
                    };
                    frame(&mut stream, last, opcode, &payload[from..to], src.mask());
                    from = to;
                    if !last {
                        // A ping or pong between two fragments.
                        let between = src.byte();
                        if between % 4 < 2 {
                            let p = control_payload(&mut src);
                            let ping = between % 4 == 0;
                            frame(&mut stream, true, if ping { 9 } else { 10 }, &p, src.mask());
                            items.push(if ping { Item::Ping(p) } else { Item::Pong(p) });
                        }
                    }
                }
                largest = largest.max(payload.len());
                built += payload.len();
                items.push(if text {
                    Item::Text(String::from_utf8(payload).expect("characters"))
                } else {
                    Item::Binary(payload)
                });
            }
            kind @ (5 | 6) => {
                let p = control_payload(&mut src);
                frame(
                    &mut stream,
                    true,
                    if kind == 5 { 9 } else { 10 },
                    &p,
                    src.mask(),
                );
                items.push(if kind == 5 {
                    Item::Ping(p)
                } else {
                    Item::Pong(p)
                });
            }
            _ => {
                let (body, item) = close_body(&mut src);
                frame(&mut stream, true, 8, &body, src.mask());
                items.push(item);
            }
        }
    }
    // The largest message fits, exactly or with room to spare (up to 64 KiB).
    let slack = src.u16();
    let max_message = largest
        + if slack % 2 == 0 {
            0
        } else {
            usize::from(slack)
        };
    // A message of L bytes never holds more than L + L/4 + READ_PAST (its first
    // frame's size, then growth by at most a quarter of less than L, and room to
    // read past a frame), whatever the pieces: a budget of that much, often far
    // below `max_message_size`, is never refused.
    let budget = largest + largest / 4 + READ_PAST + usize::from(src.byte() % 4);
    // A long stream comes in proportionately longer pieces (about 512 at most per
    // cycle of 1-byte pieces): every piece is a read.
    let scale = 1 + stream.len() / 512;
    let pieces: Vec<usize> = pieces.iter().map(|p| p * scale).collect();
    let want = expect(&stream, max_message);
    assert_eq!(want.items, items, "the model misreads a valid stream");
    assert_eq!(want.close, None);
    for (what, pieces) in [("in pieces", &pieces[..]), ("all at once", &[][..])] {
        let read = read_ws_frames(&stream, pieces, max_message, read_size, budget);
        assert!(!read.over_budget, "{what}: over a budget of {budget}");
        check(what, &read, &want, max_message, budget);
    }
}

/// The fuzz body.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        raw(rest);
    } else {
        structured(rest);
    }
}

/// A raw-mode input: `max_message` (1..=4096), `budget` (< 8192), `read_size`
/// (139..=1024), up to 7 piece sizes (1..=256), then the stream.
fn raw_input(
    max_message: u16,
    budget: u16,
    read_size: u16,
    pieces: &[u8],
    stream: &[u8],
) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(max_message - 1).to_le_bytes());
    out.extend_from_slice(&budget.to_le_bytes());
    out.extend_from_slice(&(read_size - 139).to_le_bytes());
    out.push(pieces.len() as u8);
    out.extend(pieces.iter().map(|p| p - 1));
    out.extend_from_slice(stream);
    out
}

/// Frames, masked with a mask that changes from frame to frame.
fn frames(list: &[(bool, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(fin, opcode, payload)) in list.iter().enumerate() {
        let i = i as u8;
        let mask = if i % 3 == 2 {
            [0; 4]
        } else {
            [0x37 ^ i, 0xfa, i, 0x21]
        };
        frame(&mut out, fin, opcode, payload, mask);
    }
    out
}

/// Seed inputs: valid streams (small and large binary messages, text with
/// characters cut between fragments, pings and pongs between fragments, close
/// frames with and without codes and reasons), streams breaking each rule, a
/// stream over the budget, and structured-mode inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let big: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let text = "héllo wörld — 😀 €".as_bytes();
    let close = |code: u16, reason: &str| [&code.to_be_bytes()[..], reason.as_bytes()].concat();
    let valid: Vec<Vec<u8>> = vec![
        frames(&[(true, 2, b"hello")]),
        frames(&[(true, 2, b""), (true, 2, b"a"), (true, 2, &[0xff; 125])]),
        frames(&[(true, 2, &big)]),
        frames(&[
            (true, 2, &big[..126]),
            (true, 1, b"x"),
            (true, 2, &big[..2000]),
        ]),
        frames(&[
            (false, 1, &text[..2]),
            (false, 0, &text[2..9]),
            (true, 9, b"ping"),
            (false, 0, &text[9..19]),
            (true, 10, b""),
            (true, 0, &text[19..]),
        ]),
        frames(&[
            (false, 2, &big[..1000]),
            (true, 9, b""),
            (false, 0, &big[1000..1001]),
            (false, 0, b""),
            (true, 10, b"pong"),
            (true, 0, &big[1001..]),
        ]),
        frames(&[
            (true, 1, "ünïcödé 😀".as_bytes()),
            (true, 8, &close(1000, "bye")),
        ]),
        frames(&[(true, 8, b"")]),
        frames(&[(true, 8, &close(3000, "app: ✓")), (true, 2, b"after")]),
        frames(&[(true, 9, &[7; 125]), (true, 8, &close(4999, ""))]),
    ];
    let mut out: Vec<Vec<u8>> = valid
        .iter()
        .map(|s| raw_input(4096, 8000, 512, &[], s))
        .collect();
    out.push(raw_input(4096, 8000, 139, &[1, 7, 200], &valid[4]));
    out.push(raw_input(3000, 4000, 1024, &[13, 1], &valid[2]));
    out.push(raw_input(3000, 8191, 139, &[2, 3], &valid[5]));
    // Over the budget: a fragmented message needs more than 1000 bytes.
    out.push(raw_input(4096, 1000, 139, &[5], &valid[5]));
    out.push(raw_input(4096, 100, 139, &[1], &valid[2]));
    // Over the budget in pieces only: all at once, the message is whole in the
    // read buffer and cut out of it uncounted.
    out.push(raw_input(
        4096,
        100,
        1024,
        &[1],
        &frames(&[(true, 2, &big[..500])]),
    ));
    let invalid: Vec<Vec<u8>> = vec![
        vec![0x82, 0x05, b'h', b'e', b'l', b'l', b'o'], // unmasked
        [&[0xc2, 0x80][..], &[0; 4]].concat(),          // RSV1
        [&[0x83, 0x80][..], &[0; 4]].concat(),          // reserved opcode
        frames(&[(false, 9, b"x")]),                    // fragmented ping
        [&[0x89, 0xfe, 0, 126][..], &[0; 130]].concat(), // ping of 126 bytes
        frames(&[(true, 0, b"x")]),                     // stray continuation
        frames(&[(false, 2, b"a"), (true, 2, b"b")]),   // new message inside one
        frames(&[(true, 8, &[3])]),                     // close of one byte
        frames(&[(true, 8, &close(1005, ""))]),         // close code 1005
        frames(&[(true, 8, &close(1000, "")), (true, 8, &[0x03, 0xe8, 0xff])]), // reason not UTF-8
        frames(&[(true, 1, &[0xc3, 0x28])]),            // text not UTF-8
        frames(&[(false, 1, &[0xf0, 0x9f]), (true, 0, &[0x98])]), // cut short
        frames(&[(false, 1, &[0xed, 0xa0]), (true, 0, &[0x80])]), // a surrogate
        frames(&[(true, 2, &big)]),                     // over max_message below
        [&[0x82, 0xff][..], &[0x80; 8], &[0; 4]].concat(), // 64-bit length, top bit
        frames(&[(true, 2, &big[..2000])])[..50].to_vec(), // the stream ends mid-frame
    ];
    out.extend(invalid.iter().map(|s| raw_input(2048, 8000, 256, &[3], s)));
    // Structured mode: mode, read_buffer_size, pieces, then messages.
    let structured = |pieces: &[u8], messages: &[&[u8]]| {
        let mut out = vec![1, 0x90, 0x01, pieces.len() as u8];
        out.extend_from_slice(pieces);
        out.extend(messages.concat());
        out
    };
    let text_of = |chars: &str| {
        chars
            .bytes()
            .chain([3, 9, 0, 0x7f, 0x10, 0xff, 0x01])
            .collect::<Vec<u8>>()
    };
    // What they build (the layout is `structured`'s): a binary message of 65,545
    // bytes (a 64-bit length) in fragments with a ping and pongs between them;
    // texts of 1- to 4-byte characters cut anywhere, pings between fragments;
    // close frames with codes (1012, 4993) and reasons.
    let mut long = vec![0, 7, 9, 5, 6];
    long.extend(0..64u8);
    long.extend([3, 0x00, 0x10, 0x00, 0x80, 0x00, 0xc0]);
    long.extend([1, 2, 3, 4, 0, 5, 0, 0, 1, 2, 3, 4, 5, 9, 8, 7, 6]);
    long.extend([5, 6, 7, 8, 1, 3, 0, 0, 7, 8, 9, 0, 0, 0]);
    long.extend([9, 10, 11, 12, 2, 13, 14, 15, 16]);
    let mut text = vec![3, 4, 0xc8, 0x00, 1, 2];
    text.extend((0..64u8).map(|i| i.wrapping_mul(61)));
    text.extend([5, 3, 0, 5, 0, 9, 0, 11, 0, 12, 0]);
    text.extend(text_of(""));
    let ping = [
        5, 20, 0, 1, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
        61, 1, 2, 3, 4,
    ];
    let close = [7, 9, 0, b'b', b'y', b'e', 0, 0, 0, 0];
    let close_app = [
        7, 0x23, 0xb8, 0x0b, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 9, 8, 7, 6,
    ];
    out.push(structured(&[], &[&long]));
    out.push(structured(&[0, 6, 200], &[&text, &ping, &long, &close]));
    out.push(structured(&[1], &[&ping, &text, &close_app, &text]));
    out.push(structured(
        &[3, 250],
        &[&[2, 5, 200], &[6, 0, 0, 0], &text, &[0, 0, 0]],
    ));
    out.push((0..=255u8).map(|b| b | 1).collect());
    out
}
