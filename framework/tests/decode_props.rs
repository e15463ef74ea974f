//! Property tests of the frame decoder against untrusted bytes.
//!
//! - `Frame::decode` never panics on arbitrary bytes (0..4096 of them), on buffers
//!   that carry the `FWK1` identifier with random contents, or on valid frames with
//!   random fields that were then bit-flipped, extended, shortened or overwritten.
//! - Whenever it accepts a buffer, every accessor of the frame (and its `Debug`
//!   output) works without panicking.
//! - For random valid fields, encode → decode gives every field back.

use bytes::Bytes;
use framework::protocol::{DecodeLimits, ErrorCode, Frame, FrameError, FrameFields, Opcode};
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

/// Owned random values for a [`FrameFields`] (which borrows its strings).
#[derive(Debug, Clone)]
struct Fields {
    opcode: u16,
    transaction_id: Option<u128>,
    requires_ack: bool,
    channel: Option<String>,
    receiver_id: Option<u128>,
    emitter_id: Option<u128>,
    payload: Option<Vec<u8>>,
    token: Option<String>,
    trace_id: Option<u128>,
    span_id: u64,
    parent_span_id: u64,
    error_code: u16,
    error_message: Option<String>,
    node_id: Option<u128>,
    retry_after_ms: u32,
    v11: V11,
}

/// The v1.1 fields.
#[derive(Debug, Clone)]
struct V11 {
    offset: u64,
    epoch: Option<String>,
    recover: bool,
    recovered: bool,
    limit: u32,
    user_id: Option<String>,
    expires_at_ms: u64,
}

impl Fields {
    fn frame_fields(&self) -> FrameFields<'_> {
        FrameFields {
            opcode: self.opcode,
            transaction_id: self.transaction_id.map(Uuid::from_u128),
            requires_ack: self.requires_ack,
            channel: self.channel.as_deref(),
            receiver_id: self.receiver_id.map(Uuid::from_u128),
            emitter_id: self.emitter_id.map(Uuid::from_u128),
            payload: self.payload.as_deref(),
            token: self.token.as_deref(),
            trace_id: self.trace_id.map(Uuid::from_u128),
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            error_code: ErrorCode(self.error_code),
            error_message: self.error_message.as_deref(),
            node_id: self.node_id.map(Uuid::from_u128),
            retry_after_ms: self.retry_after_ms,
            offset: self.v11.offset,
            epoch: self.v11.epoch.as_deref(),
            recover: self.v11.recover,
            recovered: self.v11.recovered,
            limit: self.v11.limit,
            user_id: self.v11.user_id.as_deref(),
            expires_at_ms: self.v11.expires_at_ms,
        }
    }
}

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,16}",
        vec(any::<char>(), 0..64).prop_map(|c| c.into_iter().collect::<String>()),
    ])
}

fn opcode() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..=20, 200u16..=210, any::<u16>()]
}

fn fields() -> impl Strategy<Value = Fields> {
    let uuid = || proptest::option::of(any::<u128>());
    (
        (opcode(), uuid(), any::<bool>(), text(), uuid(), uuid()),
        (
            proptest::option::of(vec(any::<u8>(), 0..512)),
            text(),
            uuid(),
            any::<u64>(),
            any::<u64>(),
        ),
        (any::<u16>(), text(), uuid(), any::<u32>()),
        (
            any::<u64>(),
            text(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            text(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (opcode, transaction_id, requires_ack, channel, receiver_id, emitter_id),
                (payload, token, trace_id, span_id, parent_span_id),
                (error_code, error_message, node_id, retry_after_ms),
                (offset, epoch, recover, recovered, limit, user_id, expires_at_ms),
            )| Fields {
                opcode,
                transaction_id,
                requires_ack,
                channel,
                receiver_id,
                emitter_id,
                payload,
                token,
                trace_id,
                span_id,
                parent_span_id,
                error_code,
                error_message,
                node_id,
                retry_after_ms,
                v11: V11 {
                    offset,
                    epoch,
                    recover,
                    recovered,
                    limit,
                    user_id,
                    expires_at_ms,
                },
            },
        )
}

/// A corruption applied to an encoded frame (positions are taken modulo its length).
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, n: usize },
    Truncate { len: usize },
    Overwrite32 { at: usize, value: u32 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Remove { at, n }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (
            any::<usize>(),
            prop_oneof![any::<u32>(), 0u32..256, Just(u32::MAX), Just(0x8000_0000)]
        )
            .prop_map(|(at, value)| Mutation::Overwrite32 { at, value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::Set { at, byte } if len > 0 => bytes[at % len] = *byte,
        Mutation::Insert { at, bytes: new } => {
            let at = at % (len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove { at, n } if len > 0 => {
            let at = at % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate { len: to } => bytes.truncate(to % (len + 1)),
        Mutation::Overwrite32 { at, value } if len >= 4 => {
            let at = at % (len - 3);
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        _ => {}
    }
}

/// Calls every accessor of an accepted frame; any panic fails the property.
fn touch_everything(frame: &Frame) {
    let _ = frame.opcode();
    let _ = frame.opcode_enum().variant_name();
    let _ = frame.transaction_id();
    let _ = frame.requires_ack();
    let _ = frame.channel().map(str::len);
    let _ = frame.receiver_id();
    let _ = frame.emitter_id();
    let payload = frame.payload();
    assert!(frame.has_payload() || payload.is_empty());
    assert!(payload.len() <= frame.bytes().len());
    let _ = frame.token().map(str::len);
    let _ = frame.trace_id();
    let _ = frame.span_id();
    let _ = frame.parent_span_id();
    let _ = frame.error_code().variant_name();
    let _ = frame.error_message().map(str::len);
    let _ = frame.node_id();
    let _ = frame.retry_after_ms();
    let _ = (frame.offset(), frame.epoch().map(str::len), frame.recover());
    let _ = (
        frame.recovered(),
        frame.limit(),
        frame.user_id().map(str::len),
    );
    let _ = frame.expires_at_ms();
    let m = frame.message();
    let _ = m.payload().map(|p| p.iter().map(u32::from).sum::<u32>());
    let _ = format!("{frame:?}");
    let _ = frame.clone().bytes().len();
}

/// Decodes with the default limits and a small one; checks accepted frames.
fn decode_and_touch(bytes: Vec<u8>) {
    let bytes = Bytes::from(bytes);
    for limits in [DecodeLimits::default(), DecodeLimits::for_max_size(256)] {
        match Frame::decode(bytes.clone(), &limits) {
            Ok(frame) => {
                assert!(bytes.len() <= limits.max_size);
                touch_everything(&frame);
            }
            Err(FrameError::Empty) => assert!(bytes.is_empty()),
            Err(FrameError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (bytes.len(), limits.max_size));
                assert!(size > limit);
            }
            Err(e @ (FrameError::MissingIdentifier | FrameError::Invalid(_))) => {
                assert_eq!(e.code(), ErrorCode::BadFrame);
                let _ = e.to_string();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
        decode_and_touch(bytes);
    }

    #[test]
    fn identified_random_buffers_never_panic(
        root in prop_oneof![0u32..128, any::<u32>()],
        tail in vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = root.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"FWK1");
        bytes.extend(tail);
        decode_and_touch(bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        fields in fields(),
        mutations in vec(mutation(), 1..6),
    ) {
        let mut bytes = fields.frame_fields().encode().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_and_touch(bytes);
    }

    #[test]
    fn valid_frames_round_trip_every_field(fields in fields()) {
        let bytes = fields.frame_fields().encode();
        prop_assert_eq!(&bytes[4..8], b"FWK1");
        let f = Frame::decode(bytes.clone(), &DecodeLimits::default())
            .map_err(|e| TestCaseError::fail(format!("a valid frame was refused: {e}")))?;
        let uuid = |v: Option<u128>| v.map(Uuid::from_u128);
        prop_assert_eq!(f.opcode(), fields.opcode);
        prop_assert_eq!(f.opcode_enum(), Opcode(fields.opcode));
        prop_assert_eq!(f.transaction_id(), uuid(fields.transaction_id));
        prop_assert_eq!(f.requires_ack(), fields.requires_ack);
        prop_assert_eq!(f.channel(), fields.channel.as_deref());
        prop_assert_eq!(f.receiver_id(), uuid(fields.receiver_id));
        prop_assert_eq!(f.emitter_id(), uuid(fields.emitter_id));
        prop_assert_eq!(f.has_payload(), fields.payload.is_some());
        prop_assert_eq!(&f.payload()[..], fields.payload.as_deref().unwrap_or_default());
        prop_assert_eq!(f.token(), fields.token.as_deref());
        prop_assert_eq!(f.trace_id(), uuid(fields.trace_id));
        prop_assert_eq!(f.span_id(), fields.span_id);
        prop_assert_eq!(f.parent_span_id(), fields.parent_span_id);
        prop_assert_eq!(f.error_code(), ErrorCode(fields.error_code));
        prop_assert_eq!(f.error_message(), fields.error_message.as_deref());
        prop_assert_eq!(f.node_id(), uuid(fields.node_id));
        prop_assert_eq!(f.retry_after_ms(), fields.retry_after_ms);
        prop_assert_eq!(f.offset(), fields.v11.offset);
        prop_assert_eq!(f.epoch(), fields.v11.epoch.as_deref());
        prop_assert_eq!(f.recover(), fields.v11.recover);
        prop_assert_eq!(f.recovered(), fields.v11.recovered);
        prop_assert_eq!(f.limit(), fields.v11.limit);
        prop_assert_eq!(f.user_id(), fields.v11.user_id.as_deref());
        prop_assert_eq!(f.expires_at_ms(), fields.v11.expires_at_ms);
        prop_assert_eq!(f.bytes(), &bytes);
        touch_everything(&f);
    }
}
