//! GGUF metadata values.

use std::fmt;

/// The type tag of a metadata value, as stored on disk (`gguf_metadata_value_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufValueType {
    /// An unsigned 8-bit integer (tag 0).
    U8,
    /// A signed 8-bit integer (tag 1).
    I8,
    /// An unsigned 16-bit integer (tag 2).
    U16,
    /// A signed 16-bit integer (tag 3).
    I16,
    /// An unsigned 32-bit integer (tag 4).
    U32,
    /// A signed 32-bit integer (tag 5).
    I32,
    /// A 32-bit float (tag 6).
    F32,
    /// A boolean, one byte (tag 7).
    Bool,
    /// A UTF-8 string with a `u64` length prefix (tag 8).
    String,
    /// An array: a `u32` element type, a `u64` count, then the elements (tag 9).
    Array,
    /// An unsigned 64-bit integer (tag 10).
    U64,
    /// A signed 64-bit integer (tag 11).
    I64,
    /// A 64-bit float (tag 12).
    F64,
}

impl GgufValueType {
    /// The type with this on-disk tag, or `None` for tags the format does not define.
    pub fn from_tag(tag: u32) -> Option<GgufValueType> {
        use GgufValueType::*;
        // The variants are declared in tag order.
        const BY_TAG: [GgufValueType; 13] = [
            U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64,
        ];
        BY_TAG.get(usize::try_from(tag).ok()?).copied()
    }

    /// The fewest bytes a value of this type takes on disk: used to check a count against
    /// the bytes left before allocating for it.
    pub(crate) fn min_encoded_len(self) -> u64 {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            // A u64 length, then the bytes.
            String => 8,
            // A u32 element type and a u64 count.
            Array => 12,
        }
    }
}

impl fmt::Display for GgufValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// An unsigned 8-bit integer.
    U8(u8),
    /// A signed 8-bit integer.
    I8(i8),
    /// An unsigned 16-bit integer.
    U16(u16),
    /// A signed 16-bit integer.
    I16(i16),
    /// An unsigned 32-bit integer.
    U32(u32),
    /// A signed 32-bit integer.
    I32(i32),
    /// A 32-bit float.
    F32(f32),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array: the element type is kept so that empty arrays still say what they hold.
    Array {
        /// The type of every element.
        elem_type: GgufValueType,
        /// The elements, in file order.
        values: Vec<GgufValue>,
    },
    /// An unsigned 64-bit integer.
    U64(u64),
    /// A signed 64-bit integer.
    I64(i64),
    /// A 64-bit float.
    F64(f64),
}

impl GgufValue {
    /// The type tag of this value.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            GgufValue::U8(_) => GgufValueType::U8,
            GgufValue::I8(_) => GgufValueType::I8,
            GgufValue::U16(_) => GgufValueType::U16,
            GgufValue::I16(_) => GgufValueType::I16,
            GgufValue::U32(_) => GgufValueType::U32,
            GgufValue::I32(_) => GgufValueType::I32,
            GgufValue::F32(_) => GgufValueType::F32,
            GgufValue::Bool(_) => GgufValueType::Bool,
            GgufValue::String(_) => GgufValueType::String,
            GgufValue::Array { .. } => GgufValueType::Array,
            GgufValue::U64(_) => GgufValueType::U64,
            GgufValue::I64(_) => GgufValueType::I64,
            GgufValue::F64(_) => GgufValueType::F64,
        }
    }

    /// Any integer value, widened; `None` for non-integers. Writers disagree on integer
    /// widths (a token id may be u32 in one file and i32 or u64 in another), so readers
    /// accept any width and range-check the value instead.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A float value (F32, or F64 narrowed); `None` otherwise.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            #[allow(clippy::cast_possible_truncation)] // narrowing is the point
            GgufValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array { values, .. } => Some(values),
            _ => None,
        }
    }
}
