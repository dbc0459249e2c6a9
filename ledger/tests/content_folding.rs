//! Content on disk: a row per entry while its pack is open, one compressed value per full
//! pack after, and what erasure leaves of it.

use sworn_ledger::Ledger;

use crate::layout::{check_all_proofs, key, keys_with, pack_rows, raw_db, snapshot};
use crate::store::{config, request};

#[test]
fn content_is_folded_once_a_pack_is_full_and_erasure_clears_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let with = |id: &str, response: Vec<u8>| {
        let mut r = request(id);
        r.response = response;
        r
    };
    let small = |id: &str| format!("secret answer <{id}>").into_bytes();
    let large = || vec![b'L'; 8 * 1024];
    let erased = ["c-3", "c-17", "c-30", "L-18"];
    let expect = |ledger: &Ledger| {
        let ids = (0..42)
            .map(|i| format!("c-{i}"))
            .chain((0..20).map(|i| format!("L-{i}")));
        for id in ids {
            let index = ledger.index_of(&id).unwrap().unwrap();
            let content = ledger.content(index).unwrap();
            if erased.contains(&id.as_str()) {
                assert_eq!(content, None, "{id} erased");
            } else if id == "c-5" {
                let c = content.unwrap();
                assert!(c.prompt.is_empty() && c.response.is_empty());
            } else if id.starts_with('L') {
                assert_eq!(content.unwrap().response, large(), "{id}");
            } else {
                assert_eq!(content.unwrap().response, small(&id), "{id}");
            }
        }
    };
    let before = {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        for i in 0..20u64 {
            let id = format!("c-{i}");
            let mut r = with(&id, small(&id));
            if i == 5 {
                r.prompt.clear();
                r.response.clear();
            }
            ledger.append(r).unwrap();
        }
        // Pack 0 is full (folded), pack 1 open: c-17's content is still a row.
        ledger.erase("c-3").unwrap();
        ledger.erase("c-17").unwrap();
        // Indices 22..44 in groups of varying size.
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (ledger, small) = (&ledger, &small);
                s.spawn(move || {
                    for i in (20 + t..42).step_by(2) {
                        let id = format!("c-{i}");
                        ledger.append(with(&id, small(&id))).unwrap();
                    }
                });
            }
        });
        // Indices 44..64: pack 2 ends with four of these, pack 3 holds 128 KiB of them.
        for i in 0..20 {
            ledger.append(with(&format!("L-{i}"), large())).unwrap();
        }
        ledger.erase("c-30").unwrap();
        ledger.erase("L-18").unwrap();
        expect(&ledger);
        check_all_proofs(&ledger, ledger.size());
        snapshot(&ledger, ledger.size())
    };
    {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        assert_eq!(ledger.size(), 66);
        assert_eq!(snapshot(&ledger, 66), before);
        expect(&ledger);
    }
    let db = raw_db(dir.path());
    let log = db.open_tree("log").unwrap();
    let indices = |prefix: u8| -> Vec<u64> {
        keys_with(&log, prefix)
            .iter()
            .map(|k| u64::from_be_bytes(k[1..].try_into().unwrap()))
            .collect()
    };
    // Packs 0-2 are folded; pack 3's content is too large for one value, and pack 4
    // (erasure events 64, 65) is open.
    assert_eq!(indices(b'f'), vec![0, 1, 2]);
    let rows = indices(b'c');
    assert_eq!(rows.len(), 15, "pack 3 less the erased L-18: {rows:?}");
    assert!(rows.iter().all(|i| (48..64).contains(i)), "rows {rows:?}");
    for pack in 0..3 {
        let stored = log.get(key(b'f', pack)).unwrap().unwrap();
        // Compressed with zstd (a Z tag).
        assert_eq!(stored[0], b'Z', "pack {pack}");
        let value = zstd::bulk::decompress(&stored[1..], 96 * 1024).unwrap();
        assert!(stored.len() < value.len(), "pack {pack}");
        let (_, slots) = pack_rows(&value);
        assert_eq!(slots.len(), 16);
        for gone in [
            "secret answer c-3",
            "secret answer c-17",
            "secret answer c-30",
        ] {
            assert!(
                !value.windows(gone.len()).any(|w| w == gone.as_bytes()),
                "pack {pack} still holds {gone:?}"
            );
        }
    }
}
