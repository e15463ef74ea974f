//! A table of scalars written without a `FlatBufferBuilder`: what a
//! [`Message::FLAT`](super::Message::FLAT) message's reply is encoded with.

use super::Scalar;

/// The most fields a table written this way holds; a message with more is
/// encoded with the builder.
const MAX_FIELDS: usize = 16;
/// The longest vtable written this way (field ids up to 125); a message whose
/// fields reach further is encoded with the builder.
const MAX_VTABLE: usize = 256;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The field's vtable slot (`4 + 2 * id`).
    slot: u16,
    /// 1, 2, 4 or 8 bytes.
    size: u8,
    /// Its little-endian bytes (the first `size`).
    bytes: [u8; 8],
}

/// The fields of one table of scalars (and enums), collected by
/// `Message::write_flat` and written as a standalone FlatBuffers buffer, laid
/// out as flatbuffers' verifier requires: the root offset, the vtable, then the
/// table (aligned to its largest field), its fields largest first, each aligned
/// to its size. A reply of such a message is written straight into the reply
/// frame: the builder's table (its slot bookkeeping, the search for an equal
/// vtable, `finish`, `reset`) was ~420 instructions of ~6,150 per rpc request
/// (callgrind). Readers see the same fields as in the builder's encoding (the
/// tests compare both, field by field).
///
/// A field the table cannot hold (not a scalar, too many fields, an id too
/// large) marks it [refused](FlatTable::refused): the caller uses the builder.
///
/// ```
/// use framework::message::{FlatTable, Message};
///
/// #[derive(framework::Message, Debug, PartialEq)]
/// struct Sum { total: i64, ok: bool }
///
/// let sum = Sum { total: 42, ok: true };
/// let mut table = FlatTable::new();
/// sum.write_flat(&mut table);
/// assert!(!table.refused());
/// let mut bytes = Vec::new();
/// table.write(&mut bytes);
/// assert_eq!(bytes.len(), table.len());
/// assert_eq!(Sum::decode(&bytes).unwrap(), sum);
/// ```
#[doc(hidden)]
#[derive(Clone)]
pub struct FlatTable {
    fields: [Slot; MAX_FIELDS],
    count: u8,
    refused: bool,
    /// The largest slot set (the vtable's length follows from it).
    last_slot: u16,
    /// How many fields of 8, 4, 2 and 1 bytes are set.
    sizes: [u8; 4],
}

impl Default for FlatTable {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FlatTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatTable")
            .field("fields", &usize::from(self.count))
            .field("refused", &self.refused)
            .finish()
    }
}

/// The index of a field of `size` bytes in `FlatTable::sizes`.
const fn class(size: usize) -> usize {
    match size {
        8 => 0,
        4 => 1,
        2 => 2,
        _ => 3,
    }
}

impl FlatTable {
    /// An empty table.
    #[inline]
    pub fn new() -> Self {
        FlatTable {
            fields: [Slot::default(); MAX_FIELDS],
            count: 0,
            refused: false,
            last_slot: 0,
            sizes: [0; 4],
        }
    }

    /// `message`'s table written this way; `None` when the message is not
    /// [`FLAT`](super::Message::FLAT) or one of its fields refuses it (the
    /// builder encodes it then).
    #[inline]
    pub(crate) fn of<M: super::Message>(message: &M) -> Option<FlatTable> {
        if !M::FLAT {
            return None;
        }
        let mut table = FlatTable::new();
        message.write_flat(&mut table);
        (!table.refused).then_some(table)
    }

    /// Sets the scalar in `slot` (written even when it is the default; the
    /// caller leaves defaults out, as the builder's `push` does).
    #[inline]
    pub fn scalar<S: Scalar>(&mut self, slot: u16, value: S) {
        let i = usize::from(self.count);
        if i == MAX_FIELDS || usize::from(slot) + 2 > MAX_VTABLE || slot < 4 || slot % 2 == 1 {
            self.refused = true;
            return;
        }
        let mut bytes = [0u8; 8];
        value.write_le(&mut bytes[..S::SIZE]);
        self.fields[i] = Slot {
            slot,
            size: S::SIZE as u8,
            bytes,
        };
        self.count += 1;
        self.last_slot = self.last_slot.max(slot);
        self.sizes[class(S::SIZE)] += 1;
    }

    /// Marks the table as one this writer cannot hold (a field that is not a
    /// scalar).
    pub fn refuse(&mut self) {
        self.refused = true;
    }

    /// Whether a field could not be held: the message is encoded with the
    /// builder instead.
    pub fn refused(&self) -> bool {
        self.refused
    }

    fn vtable_len(&self) -> usize {
        if self.count == 0 {
            4
        } else {
            usize::from(self.last_slot) + 2
        }
    }

    /// Where each size's fields start in the table, after its offset to the
    /// vtable (4 bytes, padded to 8 before 8-byte fields), largest first: each
    /// run ends aligned for the next. And the table's length.
    fn runs(&self) -> ([usize; 4], usize) {
        let [n8, n4, n2, n1] = self.sizes.map(usize::from);
        let at8 = if n8 > 0 { 8 } else { 4 };
        let at4 = at8 + 8 * n8;
        let at2 = at4 + 4 * n4;
        let at1 = at2 + 2 * n2;
        ([at8, at4, at2, at1], at1 + n1)
    }

    /// Where the table starts: after the root offset and the vtable, aligned
    /// to its largest field (4 at least).
    fn table_at(&self) -> usize {
        let align = if self.sizes[0] > 0 { 8 } else { 4 };
        (4 + self.vtable_len()).next_multiple_of(align)
    }

    /// The length of the buffer [`write`](Self::write) appends.
    pub fn len(&self) -> usize {
        self.table_at() + self.runs().1
    }

    /// Whether no field is set (the buffer is still a table, of no fields).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends the buffer: positions are relative to where it starts in `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let vtable_len = self.vtable_len();
        let table = self.table_at();
        let (mut runs, table_len) = self.runs();
        out.resize(start + table + table_len, 0);
        let buf = &mut out[start..];
        buf[..4].copy_from_slice(&(table as u32).to_le_bytes());
        // The vtable at 4: its length, the table's, one entry per slot.
        buf[4..6].copy_from_slice(&(vtable_len as u16).to_le_bytes());
        buf[6..8].copy_from_slice(&(table_len as u16).to_le_bytes());
        buf[table..table + 4].copy_from_slice(&((table - 4) as i32).to_le_bytes());
        for f in &self.fields[..usize::from(self.count)] {
            let size = usize::from(f.size);
            let run = &mut runs[class(size)];
            let at = *run;
            *run += size;
            let entry = 4 + usize::from(f.slot);
            buf[entry..entry + 2].copy_from_slice(&(at as u16).to_le_bytes());
            // A copy of a constant size each (inlined moves, no `memcpy` call).
            let at = table + at;
            match size {
                8 => buf[at..at + 8].copy_from_slice(&f.bytes),
                4 => buf[at..at + 4].copy_from_slice(&f.bytes[..4]),
                2 => buf[at..at + 2].copy_from_slice(&f.bytes[..2]),
                _ => buf[at] = f.bytes[0],
            }
        }
    }
}
