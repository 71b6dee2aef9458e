//! Wire primitives: a bounds-checked reader over a received buffer, a sink that encoders
//! write into, and the [`Wire`] trait that every field type of every message implements.
//!
//! All fixed-width integers are big-endian. Strings are a `u16` byte length followed by
//! UTF-8; nullable strings use `0xFFFF` for null. Byte blobs are a `u32` length followed by
//! the bytes. Arrays are a `u32` element count followed by the elements; nullable arrays use
//! `0xFFFF_FFFF` for null.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Null marker for a nullable string's `u16` length.
pub const NULL_STRING_LENGTH: u16 = u16::MAX;
/// Null marker for a nullable array's `u32` count.
pub const NULL_ARRAY_COUNT: u32 = u32::MAX;

/// A cursor over a received buffer. Every read is bounds-checked and reports the offset
/// at which it failed. Byte blobs are returned as [`Bytes`] slices that share the buffer,
/// so payloads are never copied.
///
/// A reader may hold a memory budget ([`Reader::with_memory_budget`]): the memory the
/// decoded values take beyond the buffer (array elements, copied strings), charged
/// before it is allocated. Without one, that memory is bounded only by the buffer.
///
/// Not thread-safe to share; cheap to create.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    position: usize,
    memory_budget: usize,
    memory_charged: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`, with no memory budget.
    pub fn new(buf: &'a Bytes) -> Self {
        Self::with_memory_budget(buf, usize::MAX)
    }

    /// A reader at the start of `buf` whose decoded values may take at most `bytes` of
    /// memory beyond the buffer.
    pub fn with_memory_budget(buf: &'a Bytes, bytes: usize) -> Self {
        Self {
            buf,
            position: 0,
            memory_budget: bytes,
            memory_charged: 0,
        }
    }

    /// Charges `bytes` of memory that a decoded value is about to allocate.
    ///
    /// # Errors
    /// [`DecodeError::MemoryBudget`] if that would pass the budget.
    pub fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        match self.memory_charged.checked_add(bytes) {
            Some(charged) if charged <= self.memory_budget => {
                self.memory_charged = charged;
                Ok(())
            }
            _ => Err(DecodeError::MemoryBudget {
                offset: self.position,
                budget: self.memory_budget,
            }),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    /// Takes the next `count` bytes as a borrowed slice.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEof`] if fewer than `count` bytes remain.
    pub fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= self.buf.len())
            .ok_or(DecodeError::UnexpectedEof {
                offset: self.position,
                need: count,
                have: self.remaining(),
            })?;
        let slice = self
            .buf
            .get(self.position..end)
            .ok_or(DecodeError::UnexpectedEof {
                offset: self.position,
                need: count,
                have: self.remaining(),
            })?;
        self.position = end;
        Ok(slice)
    }

    /// Takes the next `count` bytes as a [`Bytes`] that shares the underlying buffer.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEof`] if fewer than `count` bytes remain.
    pub fn take_shared(&mut self, count: usize) -> Result<Bytes, DecodeError> {
        let slice = self.take(count)?;
        Ok(self.buf.slice_ref(slice))
    }

    /// Takes every remaining byte as a shared [`Bytes`].
    pub fn take_rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.position..);
        self.position = self.buf.len();
        rest
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless every byte was consumed.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`] if bytes remain.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                offset: self.position,
                count,
            }),
        }
    }
}

/// Where encoders write. Implemented by [`BytesMut`] (everything is copied into one buffer)
/// and by [`VectoredBuf`] (large shared payloads are kept as separate chunks, so a fetch
/// response can be written with `writev` without copying record bytes).
pub trait Sink {
    /// Appends bytes by copying them.
    fn put_slice(&mut self, bytes: &[u8]);

    /// Appends one byte: a store, where [`put_slice`](Self::put_slice) of one byte is a
    /// `memcpy` call.
    fn put_byte(&mut self, byte: u8) {
        self.put_slice(&[byte]);
    }

    /// Appends a payload that may be kept by reference instead of copied.
    fn put_shared(&mut self, bytes: &Bytes) {
        self.put_slice(bytes);
    }

    /// Bytes written so far.
    fn written(&self) -> usize;

    /// Overwrites the 4 bytes at `position` (counted like [`written`](Self::written))
    /// with `value`: used to fill in a frame's length once its body is encoded.
    ///
    /// # Panics
    /// If those bytes were not written, or were handed out already.
    fn patch_u32(&mut self, position: usize, value: u32);
}

impl Sink for BytesMut {
    fn put_slice(&mut self, bytes: &[u8]) {
        BufMut::put_slice(self, bytes);
    }

    fn put_byte(&mut self, byte: u8) {
        BufMut::put_u8(self, byte);
    }

    fn patch_u32(&mut self, position: usize, value: u32) {
        self[position..position + 4].copy_from_slice(&value.to_be_bytes());
    }

    fn written(&self) -> usize {
        self.len()
    }
}

/// A sink that keeps shared payloads of at least [`VectoredBuf::SHARE_BYTES_MIN`] bytes as
/// their own chunks and copies everything else into small owned buffers.
///
/// The result is a list of chunks for a vectored write. The first owned chunk stays
/// writable until the end, so a frame's length prefix can be patched in after the body is
/// encoded. Owns its chunks; not thread-safe.
#[derive(Debug, Default)]
pub struct VectoredBuf {
    first: Option<BytesMut>,
    chunks: Vec<Bytes>,
    head: BytesMut,
    written: usize,
}

impl VectoredBuf {
    /// Payloads shorter than this are copied: an extra iovec costs more than the copy.
    pub const SHARE_BYTES_MIN: usize = 512;

    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Finishes the buffer and returns its chunks in order.
    pub fn into_chunks(self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.chunks.len() + 2);
        out.extend(self.first.map(BytesMut::freeze));
        out.extend(self.chunks);
        if !self.head.is_empty() {
            out.push(self.head.freeze());
        }
        out
    }

    fn flush_head(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let owned = self.head.split();
        if self.first.is_none() && self.chunks.is_empty() {
            self.first = Some(owned);
        } else {
            self.chunks.push(owned.freeze());
        }
    }
}

impl Sink for VectoredBuf {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.head.extend_from_slice(bytes);
        self.written += bytes.len();
    }

    fn put_byte(&mut self, byte: u8) {
        self.head.put_u8(byte);
        self.written += 1;
    }

    fn put_shared(&mut self, bytes: &Bytes) {
        if bytes.len() < Self::SHARE_BYTES_MIN {
            self.put_slice(bytes);
            return;
        }
        self.flush_head();
        self.chunks.push(bytes.clone());
        self.written += bytes.len();
    }

    fn written(&self) -> usize {
        self.written
    }

    /// Patches only bytes written before the first shared payload.
    fn patch_u32(&mut self, position: usize, value: u32) {
        let owned = self.first.as_mut().unwrap_or(&mut self.head);
        let target = owned
            .get_mut(position..position + 4)
            .expect("patch inside the first chunk");
        target.copy_from_slice(&value.to_be_bytes());
    }
}

/// A sink that keeps nothing and only counts: [`encoded_bytes`] measures an encoding
/// without allocating it.
#[derive(Debug, Default)]
pub struct ByteCounter {
    written: usize,
}

impl Sink for ByteCounter {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.written = self.written.saturating_add(bytes.len());
    }

    fn written(&self) -> usize {
        self.written
    }

    fn patch_u32(&mut self, position: usize, _value: u32) {
        assert!(
            position.saturating_add(4) <= self.written,
            "patch inside what was written"
        );
    }
}

/// Bytes of `value`'s encoding, counted without encoding it anywhere.
pub fn encoded_bytes<T: Wire>(value: &T) -> usize {
    let mut counter = ByteCounter::default();
    value.encode(&mut counter);
    counter.written
}

/// A type with a wire encoding.
pub trait Wire: Sized {
    /// Appends the encoding of `self`.
    fn encode<S: Sink + ?Sized>(&self, out: &mut S);

    /// Decodes one value.
    ///
    /// # Errors
    /// Any [`DecodeError`]: the input is short, malformed or out of range.
    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

macro_rules! wire_int {
    ($($ty:ty),*) => {$(
        impl Wire for $ty {
            fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
                out.put_slice(&self.to_be_bytes());
            }

            fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$ty>::from_be_bytes(reader.take_array()?))
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Wire for bool {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        out.put_slice(&[u8::from(*self)]);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offset = reader.position();
        match u8::decode(reader)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidValue {
                field: "bool",
                offset,
                value: value.into(),
            }),
        }
    }
}

/// Encodes a string, cut to its longest prefix of at most [`STRING_BYTES_MAX`] bytes that
/// ends on a character boundary. Anything decoded fits as it is; only text a peer made
/// longer (a message quoting a huge name) is cut, so no input can make encoding panic.
pub fn encode_str<S: Sink + ?Sized>(value: &str, out: &mut S) {
    let mut end = value.len().min(STRING_BYTES_MAX);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let kept = &value.as_bytes()[..end];
    u16::try_from(kept.len())
        .expect("cut to STRING_BYTES_MAX")
        .encode(out);
    out.put_slice(kept);
}

fn decode_str_body(reader: &mut Reader<'_>, length: u16) -> Result<String, DecodeError> {
    let offset = reader.position();
    reader.charge(usize::from(length))?;
    let bytes = reader.take(usize::from(length))?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| DecodeError::InvalidUtf8 { offset })
}

/// Longest string the protocol can carry (the `u16` length, less the null marker).
pub const STRING_BYTES_MAX: usize = (u16::MAX - 1) as usize;

impl Wire for String {
    /// Cuts a string longer than [`STRING_BYTES_MAX`]; see [`encode_str`].
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        encode_str(self, out);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offset = reader.position();
        match u16::decode(reader)? {
            NULL_STRING_LENGTH => Err(DecodeError::UnexpectedNull {
                field: "string",
                offset,
            }),
            length => decode_str_body(reader, length),
        }
    }
}

impl Wire for Option<String> {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        match self {
            None => NULL_STRING_LENGTH.encode(out),
            Some(value) => encode_str(value, out),
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u16::decode(reader)? {
            NULL_STRING_LENGTH => Ok(None),
            length => decode_str_body(reader, length).map(Some),
        }
    }
}

impl Wire for Bytes {
    /// # Panics
    /// If the blob is 4 GiB or longer; frames are far smaller.
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        let length = u32::try_from(self.len()).expect("blob shorter than a frame");
        length.encode(out);
        out.put_shared(self);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let length = u32::decode(reader)?;
        reader.take_shared(length as usize)
    }
}

fn encode_count<S: Sink + ?Sized>(count: usize, out: &mut S) {
    let count = u32::try_from(count)
        .ok()
        .filter(|count| *count != NULL_ARRAY_COUNT)
        .expect("array shorter than a frame");
    count.encode(out);
}

/// Elements reserved up front at most; beyond this the vector grows as elements decode.
const ARRAY_PREALLOCATE_MAX: usize = 64;

fn decode_elements<T: Wire>(reader: &mut Reader<'_>, count: u32) -> Result<Vec<T>, DecodeError> {
    decode_elements_with(reader, count, T::decode)
}

fn decode_elements_with<T>(
    reader: &mut Reader<'_>,
    count: u32,
    mut decode: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    // Every element takes at least one byte, so a count above the bytes left is a lie:
    // refuse it at once. Reserve only a little up front, so memory grows with elements
    // actually decoded rather than with what a peer announced.
    let count = count as usize;
    if count > reader.remaining() {
        return Err(DecodeError::InvalidLength {
            field: "array count",
            offset: reader.position(),
            length: count as u64,
            remaining: reader.remaining(),
        });
    }
    reader.charge(count.saturating_mul(size_of::<T>()))?;
    let mut elements = Vec::with_capacity(count.min(ARRAY_PREALLOCATE_MAX));
    for _ in 0..count {
        elements.push(decode(reader)?);
    }
    Ok(elements)
}

impl<T: Wire> Wire for Vec<T> {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        encode_count(self.len(), out);
        for element in self {
            element.encode(out);
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offset = reader.position();
        match u32::decode(reader)? {
            NULL_ARRAY_COUNT => Err(DecodeError::UnexpectedNull {
                field: "array",
                offset,
            }),
            count => decode_elements(reader, count),
        }
    }
}

impl<T: Wire> Wire for Option<Vec<T>> {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        match self {
            None => NULL_ARRAY_COUNT.encode(out),
            Some(elements) => elements.encode(out),
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match u32::decode(reader)? {
            NULL_ARRAY_COUNT => Ok(None),
            count => decode_elements(reader, count).map(Some),
        }
    }
}

impl<T: Wire> Wire for Box<T> {
    /// Encodes as `T`: boxing changes where a value lives, not its encoding.
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        (**self).encode(out);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        T::decode(reader).map(Box::new)
    }
}

/// A message body, or a part of one, as an API version encodes it. Every [`Wire`] type
/// is one, encoded the same at every version. A type whose fields changed between
/// versions implements this by hand and not [`Wire`], so it cannot be encoded without
/// saying at which version: a field a version lacks is left out of its encoding, and
/// takes its "not given" value when decoded from it.
pub trait Versioned: Sized {
    /// Appends the encoding of `self` at `version`.
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S);

    /// Decodes one value encoded at `version`.
    ///
    /// # Errors
    /// As for [`Wire::decode`].
    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError>;
}

impl<T: Wire> Versioned for T {
    fn encode_versioned<S: Sink + ?Sized>(&self, _version: u16, out: &mut S) {
        self.encode(out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, _version: u16) -> Result<Self, DecodeError> {
        T::decode(reader)
    }
}

/// Encodes an array of [`Versioned`] elements at `version`, as `Vec<T>` encodes.
pub fn encode_versioned_array<T: Versioned, S: Sink + ?Sized>(
    elements: &[T],
    version: u16,
    out: &mut S,
) {
    encode_count(elements.len(), out);
    for element in elements {
        element.encode_versioned(version, out);
    }
}

/// Decodes an array of [`Versioned`] elements encoded at `version`, checked and charged
/// to the memory budget as `Vec<T>` is.
///
/// # Errors
/// As for `Vec<T>`'s [`Wire::decode`].
pub fn decode_versioned_array<T: Versioned>(
    reader: &mut Reader<'_>,
    version: u16,
) -> Result<Vec<T>, DecodeError> {
    let offset = reader.position();
    match u32::decode(reader)? {
        NULL_ARRAY_COUNT => Err(DecodeError::UnexpectedNull {
            field: "array",
            offset,
        }),
        count => decode_elements_with(reader, count, |reader| T::decode_versioned(reader, version)),
    }
}

/// Defines a struct whose wire encoding is its fields in declaration order, and derives
/// [`Wire`] for it. Field order is the wire order: never reorder fields of a released
/// version; add a new API version instead.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        impl $crate::wire::Wire for $name {
            fn encode<S: $crate::wire::Sink + ?Sized>(&self, out: &mut S) {
                $( $crate::wire::Wire::encode(&self.$field, out); )*
            }

            fn decode(
                reader: &mut $crate::wire::Reader<'_>,
            ) -> Result<Self, $crate::error::DecodeError> {
                Ok(Self { $( $field: <$ty as $crate::wire::Wire>::decode(reader)? ),* })
            }
        }
    };
}
pub(crate) use wire_struct;

/// Zigzag variable-length integers, as used inside record batches.
pub mod varint {
    use super::Sink;

    /// The longest encoding of a 64-bit varint.
    pub const VARLONG_BYTES_MAX: usize = 10;

    /// Bytes needed to encode `value`: one per 7 significant bits of its zigzag form.
    #[inline]
    pub fn encoded_len(value: i64) -> usize {
        let zigzag = ((value << 1) ^ (value >> 63)) as u64;
        let bits = (u64::BITS - (zigzag | 1).leading_zeros()) as usize;
        // bits.div_ceil(7) for 1 to 64 bits, by a multiply and a shift.
        (bits * 9 + 64) / 64
    }

    /// Appends the zigzag LEB128 encoding of `value`.
    #[inline]
    pub fn put<S: Sink + ?Sized>(out: &mut S, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.put_byte((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        out.put_byte(zigzag as u8);
    }

    /// Decodes a varint at the start of `input`: the value and the bytes it took, or
    /// `None` if the input ends first or the encoding runs past 10 bytes.
    #[inline]
    pub fn get(input: &[u8]) -> Option<(i64, usize)> {
        let mut rest = input;
        let value = take(&mut rest)?;
        Some((value, input.len() - rest.len()))
    }

    /// Decodes a varint at the start of `input` and moves `input` past it; `None` (and
    /// `input` unchanged) as [`get`].
    #[inline]
    pub fn take(input: &mut &[u8]) -> Option<i64> {
        // Most of a record's varints (deltas, lengths, counts) take one or two bytes.
        match **input {
            [first, ref rest @ ..] if first < 0x80 => {
                *input = rest;
                Some(unzigzag(u64::from(first)))
            }
            [first, second, ref rest @ ..] if second < 0x80 => {
                *input = rest;
                Some(unzigzag(u64::from(first & 0x7F) | (u64::from(second) << 7)))
            }
            _ => {
                let (value, used) = get_long(input)?;
                *input = &input[used..];
                Some(value)
            }
        }
    }

    fn unzigzag(zigzag: u64) -> i64 {
        ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)
    }

    fn get_long(input: &[u8]) -> Option<(i64, usize)> {
        let mut zigzag: u64 = 0;
        for (index, byte) in input.iter().take(VARLONG_BYTES_MAX).enumerate() {
            let bits = u64::from(byte & 0x7F);
            let shift = 7 * index as u32;
            // The 10th byte may only carry the last bit of a 64-bit value.
            if index == VARLONG_BYTES_MAX - 1 && bits > 1 {
                return None;
            }
            zigzag |= bits << shift;
            if byte & 0x80 == 0 {
                return Some((unzigzag(zigzag), index + 1));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(value in any::<i64>()) {
            let mut out = BytesMut::new();
            varint::put(&mut out, value);
            prop_assert_eq!(out.len(), varint::encoded_len(value));
            prop_assert_eq!(varint::get(&out), Some((value, out.len())));
        }

        #[test]
        fn varint_never_panics(input in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Some((_, used)) = varint::get(&input) {
                prop_assert!(used <= input.len());
            }
        }
    }

    #[test]
    fn varint_take_moves_past_each_value_and_not_past_a_bad_one() {
        let mut out = BytesMut::new();
        for value in [0, -1, 63, 64, -8_000, 1 << 40] {
            varint::put(&mut out, value);
        }
        out.extend_from_slice(&[0x80, 0x80]);
        let mut input = &out[..];
        let read: Vec<i64> = std::iter::from_fn(|| varint::take(&mut input)).collect();
        assert_eq!(read, [0, -1, 63, 64, -8_000, 1 << 40]);
        assert_eq!(input, [0x80, 0x80], "a truncated varint is left in place");
    }

    #[test]
    fn varint_rejects_overlong_encodings() {
        assert_eq!(varint::get(&[0x80; 11]), None);
        assert_eq!(
            varint::get(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            None
        );
        assert_eq!(varint::get(&[0x80]), None);
    }

    #[test]
    fn overlong_strings_are_cut_at_a_char_boundary() {
        let long = format!("a{}", "\u{e9}".repeat(40_000));
        let mut out = BytesMut::new();
        long.encode(&mut out);
        let decoded = String::decode(&mut Reader::new(&out.freeze())).unwrap();
        assert!(decoded.len() <= STRING_BYTES_MAX && decoded.len() > STRING_BYTES_MAX - 4);
        assert!(long.starts_with(&decoded));
    }

    #[test]
    fn array_count_larger_than_input_is_refused_before_allocating() {
        let buf = Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFE, 0, 0]);
        let error = Vec::<u8>::decode(&mut Reader::new(&buf)).unwrap_err();
        assert!(matches!(
            error,
            DecodeError::InvalidLength {
                field: "array count",
                ..
            }
        ));
    }

    #[test]
    fn vectored_buf_keeps_large_payloads_by_reference() {
        let payload = Bytes::from(vec![7u8; 4096]);
        let mut out = VectoredBuf::new();
        0u32.encode(&mut out);
        payload.encode(&mut out);
        9u8.encode(&mut out);
        out.patch_u32(0, 42);
        assert_eq!(out.written(), 4 + 4 + 4096 + 1);
        let chunks = out.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), payload.as_ptr());
        assert_eq!(&chunks[0][..4], &42u32.to_be_bytes());
    }
}
