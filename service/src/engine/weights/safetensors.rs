//! Reader for Hugging Face safetensors checkpoints (`model.safetensors`, or shards listed
//! by `model.safetensors.index.json`).
//!
//! Format: an 8-byte little-endian header length `N`, `N` bytes of JSON mapping each
//! tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the
//! end of the header), then the data. Everything is checked before a byte is copied:
//! header size, JSON shape, dtype, that `end - begin` equals the element count times the
//! element size, and that the range lies inside the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Kind, Tensor};

use super::{WeightError, WeightSet};

/// Largest JSON header accepted: the reference implementation's own limit (100 MB); a
/// real header is a few hundred bytes per tensor.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most tensors accepted in one file (a 405B model has about 1,100).
pub const MAX_TENSORS: usize = 1 << 16;
/// Most dimensions accepted for one tensor (models use at most 4).
pub const MAX_DIMS: usize = 8;
/// Most shards accepted in one index.
pub const MAX_SHARDS: usize = 4096;

/// The single-file checkpoint name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The shard index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

#[derive(Debug, Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

#[derive(Debug, Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// Reads the checkpoint in `dir` into `set`; returns the files read, in a stable order
/// (the order their bytes are hashed for the model identity).
pub fn load_checkpoint_dir(dir: &Path, set: &mut WeightSet) -> Result<Vec<PathBuf>, WeightError> {
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        load_file(&single, set)?;
        return Ok(vec![single]);
    }
    let index_path = dir.join(INDEX_FILE);
    let bytes = crate::engine::read_sidecar(&index_path).map_err(|source| WeightError::Io {
        path: index_path.clone(),
        source,
    })?;
    let malformed = |reason: String| WeightError::Safetensors {
        path: index_path.clone(),
        reason,
    };
    let index: ShardIndex =
        serde_json::from_slice(&bytes).map_err(|e| malformed(format!("index JSON: {e}")))?;
    let shards: BTreeSet<&String> = index.weight_map.values().collect();
    if shards.is_empty() || shards.len() > MAX_SHARDS {
        return Err(malformed(format!(
            "{} shards (must be 1..={MAX_SHARDS})",
            shards.len()
        )));
    }
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        // The index is input: a shard name must stay inside the checkpoint directory.
        let plain = Path::new(shard.as_str())
            .file_name()
            .is_some_and(|name| name == std::ffi::OsStr::new(shard.as_str()));
        if !plain || shard.starts_with('.') {
            return Err(malformed(format!(
                "shard name `{shard}` is not a plain file name"
            )));
        }
        let path = dir.join(shard);
        load_file(&path, set)?;
        files.push(path);
    }
    for name in index.weight_map.keys() {
        if !set.contains(name) {
            return Err(malformed(format!("`{name}` is listed but in no shard")));
        }
    }
    Ok(files)
}

/// Reads every tensor of one safetensors file into `set`, as stored (f32, f16 or bf16).
pub fn load_file(path: &Path, set: &mut WeightSet) -> Result<(), WeightError> {
    let io = |source| WeightError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and dropped before returning; a concurrent writer
    // truncating the file could fault, the same contract every mmap reader accepts.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    for (name, tensor) in parse(&map).map_err(|reason| WeightError::Safetensors {
        path: path.to_owned(),
        reason,
    })? {
        set.insert(name, tensor);
    }
    Ok(())
}

/// Parses a whole safetensors image into named tensors; errors are plain reasons.
pub fn parse(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(format!(
            "{} bytes is shorter than the 8-byte header length",
            bytes.len()
        ));
    };
    let header_len = u64::from_le_bytes(*len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len > rest.len() as u64 {
        return Err(format!(
            "header length {header_len} exceeds the cap {MAX_HEADER_BYTES} or the file ({} bytes)",
            rest.len()
        ));
    }
    let (header, data) = rest.split_at(header_len as usize);
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("header JSON: {e}"))?;
    if entries.len() > MAX_TENSORS {
        return Err(format!(
            "{} tensors exceed the cap {MAX_TENSORS}",
            entries.len()
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|e| format!("tensor `{name}`: {e}"))?;
        out.push((name.clone(), tensor_of(&name, &entry, data)?));
    }
    Ok(out)
}

fn tensor_of(name: &str, entry: &HeaderEntry, data: &[u8]) -> Result<Tensor, String> {
    let (kind, elt) = match entry.dtype.as_str() {
        "F32" => (Kind::Float, 4u64),
        "F16" => (Kind::Half, 2),
        "BF16" => (Kind::BFloat16, 2),
        other => {
            return Err(format!(
                "tensor `{name}`: dtype {other} unsupported (F32/F16/BF16)"
            ));
        }
    };
    if entry.shape.len() > MAX_DIMS {
        return Err(format!(
            "tensor `{name}`: {} dims exceed {MAX_DIMS}",
            entry.shape.len()
        ));
    }
    let numel = entry
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(elt))
        .ok_or_else(|| format!("tensor `{name}`: shape {:?} overflows", entry.shape))?;
    let [begin, end] = entry.data_offsets;
    if begin > end || end > data.len() as u64 {
        return Err(format!(
            "tensor `{name}`: data_offsets [{begin}, {end}] outside the {} data bytes",
            data.len()
        ));
    }
    if end - begin != numel {
        return Err(format!(
            "tensor `{name}`: {} bytes for shape {:?} of {} (needs {numel})",
            end - begin,
            entry.shape,
            entry.dtype
        ));
    }
    let shape: Vec<i64> = entry
        .shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("tensor `{name}`: dimension too large"))?;
    // `from_data_size` copies exactly numel * elt bytes; the range was checked above.
    Tensor::f_from_data_size(&data[begin as usize..end as usize], &shape, kind)
        .map_err(|e| format!("tensor `{name}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn test_safetensors_reads_f32_and_bf16() {
        let mut data = Vec::new();
        for v in [1.0f32, -2.0, 0.5, 4.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.extend_from_slice(&half::bf16::from_f32(3.0).to_le_bytes());
        let header = r#"{"__metadata__":{"format":"pt"},
            "a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},
            "b":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]}}"#;
        let tensors = parse(&image(header, &data)).unwrap();
        assert_eq!(tensors.len(), 2);
        let a = Vec::<f32>::try_from(tensors[0].1.flatten(0, -1)).unwrap();
        assert_eq!(a, vec![1.0, -2.0, 0.5, 4.0]);
        assert_eq!(tensors[1].1.kind(), Kind::BFloat16);
        assert_eq!(tensors[1].1.to_kind(Kind::Float).double_value(&[0]), 3.0);
    }

    #[test]
    fn test_safetensors_rejects_named_corruptions() {
        // One tensor `a` of `dtype`, `shape` and `data_offsets`, over 8 data bytes.
        let one = |dtype: &str, shape: &str, offsets: &str| {
            let entry =
                format!(r#"{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}"#);
            image(&format!(r#"{{"a":{entry}}}"#), &[0; 8])
        };
        let ok = one("F32", "[2]", "[0,8]");
        let cases = [
            ("truncated length", vec![1u8, 2, 3]),
            (
                "header past end",
                [&(1u64 << 40).to_le_bytes()[..], &ok[8..]].concat(),
            ),
            ("bad json", image("{not json", &[])),
            ("offsets past end", ok[..ok.len() - 4].to_vec()),
            ("size mismatch", one("F32", "[3]", "[0,8]")),
            ("reversed offsets", one("F32", "[0]", "[8,0]")),
            ("int dtype", one("I64", "[1]", "[0,8]")),
            (
                "overflowing shape",
                one("F32", "[4294967296,4294967296]", "[0,8]"),
            ),
        ];
        for (what, bytes) in cases {
            assert!(parse(&bytes).is_err(), "{what} accepted");
        }
        assert!(parse(&ok).is_ok());
    }
}
