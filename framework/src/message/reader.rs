//! A bounds-checked FlatBuffers table reader. Every read is checked, so a
//! malformed buffer yields a [`DecodeError`], never a panic or undefined behaviour,
//! and no `unsafe` is needed.

use super::DecodeError;

fn slice(buf: &[u8], pos: usize, len: usize) -> Result<&[u8], DecodeError> {
    pos.checked_add(len)
        .and_then(|end| buf.get(pos..end))
        .ok_or(DecodeError::OutOfBounds)
}

fn u16_at(buf: &[u8], pos: usize) -> Result<u16, DecodeError> {
    let b = slice(buf, pos, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], pos: usize) -> Result<u32, DecodeError> {
    let b = slice(buf, pos, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Follows the unsigned offset stored at `pos`.
fn follow(buf: &[u8], pos: usize) -> Result<usize, DecodeError> {
    let off = u32_at(buf, pos)? as usize;
    pos.checked_add(off).ok_or(DecodeError::OutOfBounds)
}

/// A `T` at `pos`, which is not a multiple of its alignment (the verifier's
/// error, in the same words).
pub(super) fn unaligned<T>(pos: usize) -> DecodeError {
    DecodeError::from(flatbuffers::InvalidFlatbuffer::Unaligned {
        unaligned_type: std::any::type_name::<T>().into(),
        position: pos,
        error_trace: Default::default(),
    })
}

/// The root table of `buf`, a table of scalars, after the checks flatbuffers'
/// verifier makes of a table that the reads of its fields do not: the table
/// aligned to 4 bytes, its vtable to 2, the vtable's length even and the whole
/// vtable inside the buffer. Each field is checked as it is read (in bounds and
/// aligned, see `field::read_scalar`); the verifier's limits (depth, tables,
/// apparent size) cannot be reached by one table of scalars.
pub(super) fn flat_root(buf: &[u8]) -> Result<TableRef<'_>, DecodeError> {
    let table = TableRef::root(buf)?;
    if table.pos % 4 != 0 {
        return Err(unaligned::<i32>(table.pos));
    }
    if table.vtable % 2 != 0 {
        return Err(unaligned::<u16>(table.vtable));
    }
    if table.vtable_len % 2 != 0 {
        return Err(unaligned::<u16>(table.vtable + table.vtable_len));
    }
    slice(buf, table.vtable, table.vtable_len)?;
    Ok(table)
}

/// A table inside a buffer.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct TableRef<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> TableRef<'a> {
    /// The root table of `buf`.
    pub fn root(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::at(buf, follow(buf, 0)?)
    }

    /// The table at `pos`.
    pub fn at(buf: &'a [u8], pos: usize) -> Result<Self, DecodeError> {
        let soff = u32_at(buf, pos)? as i32 as i64;
        let vtable = usize::try_from(pos as i64 - soff).map_err(|_| DecodeError::OutOfBounds)?;
        let vtable_len = u16_at(buf, vtable)? as usize;
        Ok(Self {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Where the field in `slot` (its vtable byte offset) is, if present.
    pub fn field_pos(&self, slot: u16) -> Result<Option<usize>, DecodeError> {
        let slot = slot as usize;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        match u16_at(self.buf, self.vtable + slot)? {
            0 => Ok(None),
            off => Ok(Some(self.pos + off as usize)),
        }
    }

    /// `len` bytes of an inline value at `pos`.
    pub fn bytes(&self, pos: usize, len: usize) -> Result<&'a [u8], DecodeError> {
        slice(self.buf, pos, len)
    }

    /// The position an offset field at `pos` points to.
    pub fn follow(&self, pos: usize) -> Result<usize, DecodeError> {
        follow(self.buf, pos)
    }

    /// A vector whose offset is stored at `pos`: (first element position, length).
    pub fn vector(&self, pos: usize, elem_size: usize) -> Result<(usize, usize), DecodeError> {
        let start = follow(self.buf, pos)?;
        let len = u32_at(self.buf, start)? as usize;
        let data = start + 4;
        slice(
            self.buf,
            data,
            len.checked_mul(elem_size).ok_or(DecodeError::OutOfBounds)?,
        )?;
        Ok((data, len))
    }

    /// The string whose offset is stored at `pos`.
    pub fn string(&self, pos: usize) -> Result<&'a str, DecodeError> {
        let (data, len) = self.vector(pos, 1)?;
        std::str::from_utf8(slice(self.buf, data, len)?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A vector of offsets (strings, tables) in `slot`, each element read by
    /// `read(position of the element's offset)`; `None` when absent.
    pub fn offset_vector<T>(
        &self,
        slot: u16,
        read: impl Fn(usize) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        let Some(p) = self.field_pos(slot)? else {
            return Ok(None);
        };
        let (data, len) = self.vector(p, 4)?;
        (0..len)
            .map(|i| read(data + 4 * i))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// The table whose offset is stored at `pos`.
    pub fn table(&self, pos: usize) -> Result<TableRef<'a>, DecodeError> {
        TableRef::at(self.buf, follow(self.buf, pos)?)
    }
}
