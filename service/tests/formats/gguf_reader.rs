//! The GGUF reader on well-formed files: one built by hand, one written by gguf-py, and the
//! default model.

use sworn_service::engine::gguf::{GgmlType, GgufError, GgufFile, GgufValue, GgufValueType};

use crate::gguf_builder::valid_file;
use crate::{default_model, fixture};

#[test]
fn hand_built_file_reads_back() {
    let f = GgufFile::from_bytes(valid_file()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    let t = f.tensor("w").unwrap();
    assert_eq!(
        (t.shape.as_slice(), t.dtype, t.n_bytes),
        (&[4u64, 2][..], GgmlType::F32, 32)
    );
    assert_eq!(t.offset, f.data_start());
    assert_eq!(
        f.dequantize("w").unwrap(),
        (0..8).map(|i| i as f32).collect::<Vec<_>>()
    );
}

#[test]
fn typed_getters_name_the_key_in_their_errors() {
    let f = GgufFile::from_bytes(valid_file()).unwrap();
    let missing = f.get_u32("llama.context_length").unwrap_err();
    assert!(matches!(&missing, GgufError::MissingKey { key } if key == "llama.context_length"));
    assert!(missing.to_string().contains("llama.context_length"));
    let wrong = f.get_u32("general.architecture").unwrap_err();
    assert!(
        matches!(&wrong, GgufError::WrongType { key, found: GgufValueType::String, .. } if key == "general.architecture"),
        "{wrong}"
    );
    assert!(matches!(
        f.get_bool("llama.block_count"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(
        matches!(f.tensor("nope"), Err(GgufError::MissingTensor { tensor }) if tensor == "nope")
    );
    assert!(matches!(
        f.dequantize("nope"),
        Err(GgufError::MissingTensor { .. })
    ));
}

#[test]
fn reference_writer_file_has_every_value_type() {
    let f = GgufFile::open(&fixture("quant/quant_goldens.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.get("fixture.u8"), Some(&GgufValue::U8(200)));
    assert_eq!(f.get("fixture.i8"), Some(&GgufValue::I8(-100)));
    assert_eq!(f.get("fixture.u16"), Some(&GgufValue::U16(60000)));
    assert_eq!(f.get("fixture.i16"), Some(&GgufValue::I16(-30000)));
    assert_eq!(f.get_u32("fixture.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get("fixture.i32"), Some(&GgufValue::I32(-2_000_000_000)));
    assert_eq!(f.get_f32("fixture.f32").unwrap(), 1.5);
    assert!(f.get_bool("fixture.bool").unwrap());
    assert_eq!(f.get_str("fixture.string").unwrap(), "héllo ✓");
    assert_eq!(f.get_u64("fixture.u64").unwrap(), (1u64 << 63) + 5);
    assert_eq!(f.get("fixture.i64"), Some(&GgufValue::I64(-(1i64 << 62))));
    assert_eq!(f.get("fixture.f64"), Some(&GgufValue::F64(0.1)));
    assert_eq!(f.get_f32("fixture.f64").unwrap(), 0.1f32);
    let strings: Vec<_> = f
        .get_array("fixture.strings")
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(strings, ["a", "bc", ""]);
    let ints: Vec<_> = f
        .get_array("fixture.i32s")
        .unwrap()
        .iter()
        .map(|v| v.as_i128().unwrap())
        .collect();
    assert_eq!(ints, [1, -2, 3]);
    let nested = f.get_array("fixture.nested").unwrap();
    assert_eq!(nested.len(), 2);
    assert_eq!(nested[0].as_array().unwrap().len(), 2);
    // Range checks: a negative value is no u32, a u64 above 2^32 is no u32.
    assert!(matches!(
        f.get_u32("fixture.i32"),
        Err(GgufError::OutOfRange { .. })
    ));
    assert!(matches!(
        f.get_u32("fixture.u64"),
        Err(GgufError::OutOfRange { .. })
    ));
    for t in f.tensors() {
        assert_eq!(t.offset % 64, 0, "{} is not 64-aligned", t.name);
    }
}

#[test]
fn default_model_directory_matches_what_gguf_py_reports() {
    let Some(path) = default_model() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    // Figures printed by gguf-py's GGUFReader for this file.
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
    let count = |t: GgmlType| f.tensors().iter().filter(|i| i.dtype == t).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (emb.shape.as_slice(), emb.dtype),
        (&[576u64, 49152][..], GgmlType::Q8_0)
    );
    assert_eq!((emb.offset, emb.n_bytes), (1_785_664, 30_081_024));
    let down = f.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(
        (down.shape.as_slice(), down.dtype, down.offset),
        (&[1536u64, 576][..], GgmlType::Q4_1, 31_868_992)
    );
    let norm = f.dequantize("blk.0.attn_norm.weight").unwrap();
    assert_eq!(norm.len(), 576);
    assert!(norm.iter().all(|v| v.is_finite()));
    let q = f.dequantize("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.len(), 576 * 576);
    assert!(q.iter().all(|v| v.is_finite() && v.abs() < 100.0));
}
