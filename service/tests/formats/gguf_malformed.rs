//! Malformed GGUF files built byte by byte. Each test breaks one thing and asserts the
//! specific error, so a reader that starts accepting (or misreporting) it is caught.

use sworn_service::engine::gguf::{
    GgufError, GgufFile, MAX_ARRAY_LEN, MAX_ARRAY_NESTING, MAX_METADATA_KV_COUNT, MAX_STRING_LEN,
    MAX_TENSOR_COUNT,
};

use crate::gguf_builder::{header, tag, tensor_info, valid_file};

fn open(bytes: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(bytes) {
        Ok(_) => panic!("malformed file was accepted"),
        Err(e) => e,
    }
}

/// A header with no metadata and one tensor entry, padded, then `data_len` zero bytes.
fn one_tensor(name: &str, shape: &[u64], ggml_type: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let b = tensor_info(header(3, 1, 0), name, shape, ggml_type, offset).pad_to(32);
    let mut bytes = b.0;
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

#[test]
fn bad_magic_is_refused() {
    let mut bytes = valid_file();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(
        open(bytes),
        GgufError::BadMagic { found: 0x4c4d_4747 }
    ));
}

#[test]
fn empty_file_is_truncated_at_the_magic() {
    let e = open(Vec::new());
    assert!(
        matches!(&e, GgufError::Truncated { what, offset: 0, file_len: 0 } if what == "magic"),
        "{e}"
    );
}

#[test]
fn truncated_header_names_the_field() {
    let bytes = valid_file();
    // Cut inside the tensor count (bytes 8..16).
    let e = open(bytes[..12].to_vec());
    assert!(
        matches!(&e, GgufError::Truncated { what, .. } if what == "tensor count"),
        "{e}"
    );
    // Cut inside the first key's string (the counts still fit in what is left).
    let long_key = "k".repeat(100);
    let bytes = header(3, 0, 1).str(&long_key).u32(tag::U8).raw(&[1]).0;
    let e = open(bytes[..24 + 8 + 50].to_vec());
    assert!(
        matches!(&e, GgufError::Truncated { what, .. } if what == "metadata key #0"),
        "{e}"
    );
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error_not_a_panic() {
    let bytes = valid_file();
    for len in 0..bytes.len() {
        assert!(
            GgufFile::from_bytes(bytes[..len].to_vec()).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    assert!(GgufFile::from_bytes(bytes).is_ok());
}

#[test]
fn version_1_is_refused_clearly() {
    let e = open(header(1, 0, 0).0);
    assert!(matches!(e, GgufError::UnsupportedV1));
    assert!(e.to_string().contains("version 1"));
}

#[test]
fn unknown_and_big_endian_versions_are_refused() {
    assert!(matches!(
        open(header(4, 0, 0).0),
        GgufError::UnsupportedVersion { version: 4 }
    ));
    assert!(matches!(
        open(header(3u32.swap_bytes(), 0, 0).0),
        GgufError::BigEndian { .. }
    ));
}

#[test]
fn huge_tensor_count_is_refused_before_allocating() {
    let e = open(header(3, u64::MAX, 0).0);
    assert!(
        matches!(&e, GgufError::LimitExceeded { what, value: u64::MAX, limit: MAX_TENSOR_COUNT } if what == "tensor count"),
        "{e}"
    );
}

#[test]
fn tensor_count_that_cannot_fit_in_the_file_is_refused() {
    // Under the cap, but 1000 entries cannot fit in the zero bytes that follow.
    let e = open(header(3, 1000, 0).0);
    assert!(
        matches!(
            &e,
            GgufError::LimitExceeded {
                value: 1000,
                limit: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn huge_kv_count_is_refused_before_allocating() {
    let e = open(header(3, 0, 1 << 40).0);
    assert!(
        matches!(
            &e,
            GgufError::LimitExceeded {
                limit: MAX_METADATA_KV_COUNT,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn huge_string_length_is_refused() {
    let bytes = header(3, 0, 1).u64(u64::MAX).raw(&[b'a'; 16]).0;
    let e = open(bytes);
    assert!(
        matches!(&e, GgufError::LimitExceeded { what, value: u64::MAX, limit: MAX_STRING_LEN } if what == "length of metadata key #0"),
        "{e}"
    );
}

#[test]
fn string_longer_than_the_file_is_truncated() {
    let bytes = header(3, 0, 1).u64(1000).raw(&[b'a'; 16]).0;
    assert!(matches!(open(bytes), GgufError::Truncated { .. }));
}

#[test]
fn non_utf8_key_is_refused() {
    let bytes = header(3, 0, 1)
        .u64(2)
        .raw(&[0xff, 0xfe])
        .u32(tag::U8)
        .raw(&[1])
        .0;
    assert!(matches!(open(bytes), GgufError::InvalidUtf8 { .. }));
}

#[test]
fn unknown_value_type_names_the_key() {
    let bytes = header(3, 0, 1).str("general.name").u32(13).u32(0).0;
    let e = open(bytes);
    assert!(
        matches!(&e, GgufError::UnknownValueType { key, tag: 13 } if key == "general.name"),
        "{e}"
    );
}

#[test]
fn unknown_array_element_type_names_the_key() {
    let bytes = header(3, 0, 1)
        .str("k")
        .u32(tag::ARRAY)
        .u32(99)
        .u64(1)
        .u32(0)
        .0;
    assert!(matches!(
        open(bytes),
        GgufError::UnknownValueType { tag: 99, .. }
    ));
}

#[test]
fn huge_array_length_is_refused() {
    let bytes = header(3, 0, 1)
        .str("tokenizer.ggml.tokens")
        .u32(tag::ARRAY)
        .u32(tag::STRING)
        .u64(u64::MAX / 2)
        .0;
    let e = open(bytes);
    assert!(
        matches!(&e, GgufError::LimitExceeded { what, limit: MAX_ARRAY_LEN, .. } if what.contains("tokenizer.ggml.tokens")),
        "{e}"
    );
}

#[test]
fn array_length_beyond_the_bytes_left_is_refused() {
    // 1000 u32 elements need 4000 bytes; only 8 follow.
    let bytes = header(3, 0, 1)
        .str("k")
        .u32(tag::ARRAY)
        .u32(tag::U32)
        .u64(1000)
        .u64(0)
        .0;
    assert!(matches!(
        open(bytes),
        GgufError::LimitExceeded {
            value: 1000,
            limit: 2,
            ..
        }
    ));
}

#[test]
fn arrays_nested_past_the_cap_are_refused() {
    // MAX_ARRAY_NESTING + 1 levels of one-element arrays, then a u8.
    let mut b = header(3, 0, 1).str("deep").u32(tag::ARRAY);
    for _ in 0..MAX_ARRAY_NESTING {
        b = b.u32(tag::ARRAY).u64(1);
    }
    let bytes = b.u32(tag::U8).u64(1).raw(&[7]).0;
    let e = open(bytes);
    assert!(
        matches!(&e, GgufError::NestingTooDeep { key, .. } if key == "deep"),
        "{e}"
    );
}

#[test]
fn arrays_nested_up_to_the_cap_are_read() {
    let mut b = header(3, 0, 1).str("deep").u32(tag::ARRAY);
    for _ in 1..MAX_ARRAY_NESTING {
        b = b.u32(tag::ARRAY).u64(1);
    }
    let f = GgufFile::from_bytes(b.u32(tag::U8).u64(1).raw(&[7]).0).unwrap();
    let mut v = f.get("deep").unwrap();
    for _ in 0..MAX_ARRAY_NESTING {
        v = &v.as_array().unwrap()[0];
    }
    assert_eq!(v.as_i128(), Some(7));
}

#[test]
fn duplicate_metadata_key_is_refused() {
    let bytes = header(3, 0, 2)
        .str("a")
        .u32(tag::U32)
        .u32(1)
        .str("a")
        .u32(tag::U32)
        .u32(2)
        .0;
    assert!(matches!(open(bytes), GgufError::DuplicateKey { key } if key == "a"));
}

#[test]
fn bad_alignment_is_refused() {
    for align in [0u32, 3, 48] {
        let bytes = header(3, 0, 1)
            .str("general.alignment")
            .u32(tag::U32)
            .u32(align)
            .0;
        assert!(
            matches!(open(bytes), GgufError::BadAlignment { .. }),
            "alignment {align}"
        );
    }
    let bytes = header(3, 0, 1)
        .str("general.alignment")
        .u32(tag::STRING)
        .str("32")
        .0;
    assert!(matches!(open(bytes), GgufError::WrongType { .. }));
}

#[test]
fn unknown_ggml_type_names_the_tensor() {
    let e = open(one_tensor("blk.0.w", &[32], 4, 0, 64));
    assert!(
        matches!(&e, GgufError::UnknownGgmlType { tensor, id: 4 } if tensor == "blk.0.w"),
        "{e}"
    );
}

#[test]
fn too_many_dimensions_is_refused() {
    let e = open(one_tensor("w", &[1, 1, 1, 1, 1], 0, 0, 4));
    assert!(
        matches!(&e, GgufError::BadShape { tensor, reason, .. } if tensor == "w" && reason.contains("5 dimensions")),
        "{e}"
    );
}

#[test]
fn dimensions_whose_product_overflows_are_refused() {
    let e = open(one_tensor("w", &[1 << 32, 1 << 32, 1 << 32], 0, 0, 0));
    assert!(
        matches!(&e, GgufError::BadShape { reason, .. } if reason.contains("element count")),
        "{e}"
    );
}

#[test]
fn huge_and_zero_dimensions_are_refused() {
    assert!(matches!(
        open(one_tensor("w", &[u64::MAX], 0, 0, 0)),
        GgufError::BadShape { .. }
    ));
    assert!(matches!(
        open(one_tensor("w", &[4, 0], 0, 0, 0)),
        GgufError::BadShape { .. }
    ));
}

#[test]
fn rows_that_are_not_whole_blocks_are_refused() {
    // Q4_1 (type 3) blocks hold 32 elements; a row of 48 is one and a half blocks.
    let e = open(one_tensor("w", &[48, 2], 3, 0, 100));
    assert!(
        matches!(&e, GgufError::BadShape { reason, .. } if reason.contains("whole Q4_1 blocks")),
        "{e}"
    );
}

#[test]
fn tensor_data_past_eof_is_refused() {
    // A 4x2 F32 tensor needs 32 bytes; give it 31.
    let e = open(one_tensor("w", &[4, 2], 0, 0, 31));
    assert!(
        matches!(&e, GgufError::TensorOutOfBounds { tensor, .. } if tensor == "w"),
        "{e}"
    );
    // An offset that overflows when added to the data start.
    let e = open(one_tensor("w", &[1], 0, u64::MAX - 31, 32));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn q4_1_tensor_size_uses_block_bytes() {
    // 64 Q4_1 elements = 2 blocks of 20 bytes: 40 bytes is enough, 39 is not.
    assert!(GgufFile::from_bytes(one_tensor("w", &[64], 3, 0, 40)).is_ok());
    assert!(
        matches!(open(one_tensor("w", &[64], 3, 0, 39)), GgufError::TensorOutOfBounds { end, .. } if end % 32 == 8)
    );
}

#[test]
fn misaligned_tensor_offset_is_refused() {
    let e = open(one_tensor("w", &[1], 0, 4, 64));
    assert!(
        matches!(&e, GgufError::MisalignedTensor { tensor, offset: 4, alignment: 32 } if tensor == "w"),
        "{e}"
    );
}

#[test]
fn overlapping_tensors_are_refused() {
    let b = tensor_info(header(3, 2, 0), "a", &[16], 0, 0);
    let mut bytes = tensor_info(b, "b", &[16], 0, 32).pad_to(32).0;
    bytes.resize(bytes.len() + 96, 0);
    assert!(matches!(open(bytes), GgufError::OverlappingTensors { .. }));
}

#[test]
fn duplicate_tensor_name_is_refused() {
    let b = tensor_info(header(3, 2, 0), "a", &[8], 0, 0);
    let mut bytes = tensor_info(b, "a", &[8], 0, 32).pad_to(32).0;
    bytes.resize(bytes.len() + 64, 0);
    assert!(matches!(open(bytes), GgufError::DuplicateTensor { tensor } if tensor == "a"));
}

#[test]
fn tensor_of_unsupported_type_opens_but_does_not_dequantize() {
    // IQ2_XXS (16): a valid layout this engine cannot turn into floats.
    let f = GgufFile::from_bytes(one_tensor("w", &[256], 16, 0, 66)).unwrap();
    assert_eq!(f.tensor_bytes("w").unwrap().len(), 66);
    let e = f.dequantize("w").unwrap_err();
    assert!(
        matches!(&e, GgufError::Dequantize { tensor, .. } if tensor == "w"),
        "{e}"
    );
}

#[test]
fn builder_sanity_valid_v2_file_reads() {
    let mut bytes = valid_file();
    bytes[4] = 2;
    assert_eq!(GgufFile::from_bytes(bytes).unwrap().version(), 2);
}
