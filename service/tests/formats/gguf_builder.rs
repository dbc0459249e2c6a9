//! Builds GGUF files byte by byte, so that each test can break exactly one thing.

/// Value type tags (`gguf_metadata_value_type`).
pub(crate) mod tag {
    pub(crate) const U8: u32 = 0;
    pub(crate) const U32: u32 = 4;
    pub(crate) const I32: u32 = 5;
    pub(crate) const F32: u32 = 6;
    pub(crate) const BOOL: u32 = 7;
    pub(crate) const STRING: u32 = 8;
    pub(crate) const ARRAY: u32 = 9;
}

/// A growing little-endian byte buffer.
#[derive(Default, Clone)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Bytes {
    pub(crate) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A GGUF string: u64 length, then the bytes.
    pub(crate) fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    pub(crate) fn pad_to(mut self, align: usize) -> Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
}

/// The fixed header: magic, version, tensor count, kv count.
pub(crate) fn header(version: u32, n_tensors: u64, n_kv: u64) -> Bytes {
    Bytes::default()
        .raw(b"GGUF")
        .u32(version)
        .u64(n_tensors)
        .u64(n_kv)
}

/// One tensor-directory entry.
pub(crate) fn tensor_info(
    b: Bytes,
    name: &str,
    shape: &[u64],
    ggml_type: u32,
    offset: u64,
) -> Bytes {
    let mut b = b.str(name).u32(shape.len() as u32);
    for &d in shape {
        b = b.u64(d);
    }
    b.u32(ggml_type).u64(offset)
}

/// A well-formed v3 file: two metadata keys and one F32 tensor `w` of shape [4, 2]
/// holding 0.0..8.0, with the default alignment of 32.
pub(crate) fn valid_file() -> Vec<u8> {
    let b = header(3, 1, 2)
        .str("general.architecture")
        .u32(tag::STRING)
        .str("llama")
        .str("llama.block_count")
        .u32(tag::U32)
        .u32(30);
    let mut b = tensor_info(b, "w", &[4, 2], 0, 0).pad_to(32);
    for i in 0..8 {
        b = b.raw(&(i as f32).to_le_bytes());
    }
    b.0
}

/// Metadata values for [`metadata_only_file`].
pub(crate) enum Meta<'a> {
    Str(&'a str),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

/// A v3 file with the given metadata and no tensors.
pub(crate) fn metadata_only_file(kvs: &[(&str, Meta<'_>)]) -> Vec<u8> {
    let mut b = header(3, 0, kvs.len() as u64);
    for (key, value) in kvs {
        b = b.str(key);
        b = match value {
            Meta::Str(s) => b.u32(tag::STRING).str(s),
            Meta::U32(v) => b.u32(tag::U32).u32(*v),
            Meta::Bool(v) => b.u32(tag::BOOL).raw(&[u8::from(*v)]),
            Meta::Strs(list) => {
                let mut b = b.u32(tag::ARRAY).u32(tag::STRING).u64(list.len() as u64);
                for s in list {
                    b = b.str(s);
                }
                b
            }
            Meta::I32s(list) => {
                let mut b = b.u32(tag::ARRAY).u32(tag::I32).u64(list.len() as u64);
                for v in list {
                    b = b.raw(&v.to_le_bytes());
                }
                b
            }
            Meta::F32s(list) => {
                let mut b = b.u32(tag::ARRAY).u32(tag::F32).u64(list.len() as u64);
                for v in list {
                    b = b.raw(&v.to_le_bytes());
                }
                b
            }
        };
    }
    b.0
}
