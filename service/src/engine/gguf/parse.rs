//! Parsing the GGUF header: magic, version, metadata and the tensor directory.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Everything is
//! little-endian. The file is hostile input: each count and length is checked against its
//! named cap *and* against the bytes left in the file before anything is allocated for it,
//! with checked arithmetic, so a 100-byte file cannot ask for gigabytes.

use std::collections::BTreeMap;

use super::error::GgufError;
use super::tensor_info::TensorInfo;
use super::value::{GgufValue, GgufValueType};
use crate::engine::ggml_type::GgmlType;

/// "GGUF" read as a little-endian u32.
pub(crate) const GGUF_MAGIC: u32 = 0x4655_4747;

/// The largest published GGUFs (405B dense models, MoE models with per-expert tensors)
/// hold a few thousand tensors; 1 Mi leaves ample room while bounding the directory.
pub const MAX_TENSOR_COUNT: u64 = 1 << 20;
/// Real files carry a few dozen metadata keys; 1 Mi bounds the map all the same.
pub const MAX_METADATA_KV_COUNT: u64 = 1 << 20;
/// The longest legitimate strings are chat templates (tens of KiB); 64 MiB is far above
/// that and stops a single length field from demanding gigabytes.
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// The longest legitimate arrays are vocabularies and merge lists (~262k entries for the
/// largest vocabularies); 16 Mi elements leaves 64x headroom.
pub const MAX_ARRAY_LEN: u64 = 16 << 20;
/// Metadata arrays of arrays are legal but rare; the cap bounds recursion so a crafted
/// chain of nested arrays cannot overflow the stack. Depth 1 is a flat array.
pub const MAX_ARRAY_NESTING: u32 = 4;
/// `GGML_MAX_DIMS` in ggml.h: tensors have at most 4 dimensions.
pub const MAX_DIMS: u32 = 4;
/// ggml stores each dimension as an `int64_t`; anything past 2^40 elements in one
/// dimension cannot be backed by a real file and only serves to provoke overflow.
pub const MAX_DIM: u64 = 1 << 40;
/// The same bound for the product of the dimensions.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 40;
/// `general.alignment` must be a power of two; beyond 1 MiB padding it is nonsense.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// The alignment GGUF uses when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The smallest encoding of one metadata pair: an empty key (u64 length), a type tag, and
/// a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The smallest encoding of one tensor-directory entry: an empty name, `n_dims`, no
/// dimensions, a type and an offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// What the header parser found.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_start: u64,
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                file_len: self.bytes.len() as u64,
            });
        }
        // n <= remaining <= usize::MAX, so the casts and the addition cannot overflow.
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_each` bytes can still fit in the file,
    /// and that `count` is within `limit`, before the caller allocates for them.
    fn check_count(
        &self,
        what: &dyn Fn() -> String,
        count: u64,
        limit: u64,
        min_each: u64,
    ) -> Result<(), GgufError> {
        if count > limit {
            return Err(GgufError::LimitExceeded {
                what: what(),
                value: count,
                limit,
            });
        }
        let fits = self.remaining() / min_each.max(1);
        if count > fits {
            return Err(GgufError::LimitExceeded {
                what: format!("{} (bytes left allow {fits})", what()),
                value: count,
                limit: fits,
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len_what = || format!("length of {}", what());
        let len = self.u64(&len_what)?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::LimitExceeded {
                what: len_what(),
                value: len,
                limit: MAX_STRING_LEN,
            });
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what: what() })
    }
}

/// Parses the header of a GGUF file held in `bytes`.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.u32(&|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        1 => return Err(GgufError::UnsupportedV1),
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 1..=3) => return Err(GgufError::BigEndian { found: v }),
        v => return Err(GgufError::UnsupportedVersion { version: v }),
    }
    let tensor_count = c.u64(&|| "tensor count".into())?;
    let kv_count = c.u64(&|| "metadata kv count".into())?;
    // Every tensor and every pair needs some bytes of its own; checking both counts here
    // (before either loop) refuses absurd headers at once.
    c.check_count(
        &|| "tensor count".into(),
        tensor_count,
        MAX_TENSOR_COUNT,
        MIN_TENSOR_INFO_BYTES,
    )?;
    c.check_count(
        &|| "metadata kv count".into(),
        kv_count,
        MAX_METADATA_KV_COUNT,
        MIN_KV_BYTES,
    )?;

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let tag = c.u32(&|| format!("value type of `{key}`"))?;
        let value = read_value(&mut c, &key, tag, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(GgufError::DuplicateKey { key });
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => {
            let value = v.as_i128().ok_or(GgufError::WrongType {
                key: "general.alignment".into(),
                expected: "an integer",
                found: v.value_type(),
            })?;
            let value = u64::try_from(value).unwrap_or(0);
            if !value.is_power_of_two() || value > MAX_ALIGNMENT {
                return Err(GgufError::BadAlignment {
                    value,
                    limit: MAX_ALIGNMENT,
                });
            }
            value
        }
    };

    let mut raw = Vec::with_capacity(tensor_count as usize);
    let mut seen = std::collections::HashSet::new();
    for i in 0..tensor_count {
        let tensor = read_tensor_info(&mut c, i)?;
        if !seen.insert(tensor.0.clone()) {
            return Err(GgufError::DuplicateTensor { tensor: tensor.0 });
        }
        raw.push(tensor);
    }

    let header_end = c.pos as u64;
    let data_start =
        header_end
            .checked_next_multiple_of(alignment)
            .ok_or(GgufError::LimitExceeded {
                what: "header size".into(),
                value: header_end,
                limit: u64::MAX,
            })?;
    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, shape, dtype, rel_offset) in raw {
        tensors.push(place_tensor(
            name, shape, dtype, rel_offset, alignment, data_start, file_len,
        )?);
    }
    check_no_overlap(&tensors)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// The value type with this `tag`, for a value under `key`.
fn value_type(key: &str, tag: u32) -> Result<GgufValueType, GgufError> {
    GgufValueType::from_tag(tag).ok_or_else(|| GgufError::UnknownValueType {
        key: key.into(),
        tag,
    })
}

fn read_value(c: &mut Cursor<'_>, key: &str, tag: u32, depth: u32) -> Result<GgufValue, GgufError> {
    let ty = value_type(key, tag)?;
    let what = || format!("value of `{key}`");
    Ok(match ty {
        GgufValueType::U8 => GgufValue::U8(u8::from_le_bytes(c.array(&what)?)),
        GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(c.array(&what)?)),
        GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(c.array(&what)?)),
        GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(c.array(&what)?)),
        GgufValueType::U32 => GgufValue::U32(u32::from_le_bytes(c.array(&what)?)),
        GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(c.array(&what)?)),
        GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(c.array(&what)?)),
        GgufValueType::U64 => GgufValue::U64(u64::from_le_bytes(c.array(&what)?)),
        GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(c.array(&what)?)),
        GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(c.array(&what)?)),
        GgufValueType::Bool => GgufValue::Bool(c.array::<1>(&what)?[0] != 0),
        GgufValueType::String => GgufValue::String(c.string(&what)?),
        GgufValueType::Array => {
            if depth + 1 > MAX_ARRAY_NESTING {
                return Err(GgufError::NestingTooDeep {
                    key: key.into(),
                    limit: MAX_ARRAY_NESTING,
                });
            }
            let elem_tag = c.u32(&|| format!("array element type of `{key}`"))?;
            let elem_type = value_type(key, elem_tag)?;
            let count = c.u64(&|| format!("array length of `{key}`"))?;
            c.check_count(
                &|| format!("array length of `{key}`"),
                count,
                MAX_ARRAY_LEN,
                elem_type.min_encoded_len(),
            )?;
            let mut values = Vec::with_capacity(count as usize);
            for _ in 0..count {
                values.push(read_value(c, key, elem_tag, depth + 1)?);
            }
            GgufValue::Array { elem_type, values }
        }
    })
}

type RawTensor = (String, Vec<u64>, GgmlType, u64);

fn read_tensor_info(c: &mut Cursor<'_>, index: u64) -> Result<RawTensor, GgufError> {
    let name = c.string(&|| format!("name of tensor #{index}"))?;
    let n_dims = c.u32(&|| format!("dimension count of tensor `{name}`"))?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::BadShape {
            tensor: name,
            shape: Vec::new(),
            reason: format!("{n_dims} dimensions, at most {MAX_DIMS} allowed"),
        });
    }
    let mut shape = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        shape.push(c.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
    }
    let type_id = c.u32(&|| format!("type of tensor `{name}`"))?;
    let dtype = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
        tensor: name.clone(),
        id: type_id,
    })?;
    let offset = c.u64(&|| format!("data offset of tensor `{name}`"))?;
    Ok((name, shape, dtype, offset))
}

fn place_tensor(
    name: String,
    shape: Vec<u64>,
    dtype: GgmlType,
    rel_offset: u64,
    alignment: u64,
    data_start: u64,
    file_len: u64,
) -> Result<TensorInfo, GgufError> {
    let bad = |reason: String| GgufError::BadShape {
        tensor: name.clone(),
        shape: shape.clone(),
        reason,
    };
    let mut n_elements: u64 = 1;
    for &d in &shape {
        if d == 0 || d > MAX_DIM {
            return Err(bad(format!("dimension {d} is outside 1..={MAX_DIM}")));
        }
        n_elements = n_elements
            .checked_mul(d)
            .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| bad(format!("element count exceeds {MAX_TENSOR_ELEMENTS}")))?;
    }
    let (row, elems) = (shape.first().copied().unwrap_or(1), dtype.block_elems());
    if row % elems != 0 {
        let reason = format!("rows of {row} are not whole {dtype} blocks of {elems}");
        return Err(bad(reason));
    }
    // Whole rows imply whole blocks, and n_elements <= 2^40 keeps the product in range.
    let n_bytes = dtype.bytes_for(n_elements).ok_or_else(|| {
        bad(format!(
            "byte size of {n_elements} {dtype} elements overflows"
        ))
    })?;
    if !rel_offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            tensor: name,
            offset: rel_offset,
            alignment,
        });
    }
    let start = data_start.checked_add(rel_offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len => Ok(TensorInfo {
            name,
            shape,
            dtype,
            offset: start,
            n_bytes,
            n_elements,
        }),
        _ => Err(GgufError::TensorOutOfBounds {
            tensor: name,
            start: start.unwrap_or(u64::MAX),
            end: end.unwrap_or(u64::MAX),
            file_len,
        }),
    }
}

fn check_no_overlap(tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.n_bytes > b.offset {
            return Err(GgufError::OverlappingTensors {
                first: a.name.clone(),
                second: b.name.clone(),
            });
        }
    }
    Ok(())
}
