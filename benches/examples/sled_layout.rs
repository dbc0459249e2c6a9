//! What a storage layout would cost in sled: bytes on disk and resident memory per log
//! entry, for synthetic rows shaped like the ledger's, without building the layout.
//!
//! Each row kind is `value_len:key_len:every` — one row per `every` entries, keys with a
//! one-byte prefix and the entry index big-endian (so rows arrive in key order, as the
//! ledger's do), padded to `key_len`. Rows of 64 entries go in as one batch, as a group
//! commit would. Prints disk and VmRSS at each sixth. `SLED_CACHE_MIB` sets sled's cache
//! (default 64, the ledger's).
//!
//! ```sh
//! # today's layout: entry (sig + JSON body), content row (salts), leaf hash, interior
//! # hashes (levels 1, 2, ...), request-id index
//! cargo run --release -p sworn-benches --example sled_layout -- 400000 /tmp/sled-layout \
//!     684:9:1 68:9:1 32:10:1 32:10:2 32:10:4 8:40:1
//! ```

use std::path::Path;

/// One kind of row.
struct Row {
    value_len: usize,
    key_len: usize,
    every: u64,
}

fn parse_row(spec: &str) -> Result<Row, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [value_len, key_len, every] = parts[..] else {
        return Err(format!("{spec}: expected value_len:key_len:every"));
    };
    let number = |s: &str| s.parse::<u64>().map_err(|e| format!("{spec}: {e}"));
    Ok(Row {
        value_len: number(value_len)? as usize,
        key_len: (number(key_len)? as usize).max(9),
        every: number(every)?.max(1),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: sled_layout ENTRIES DIR ROW... (ROW = value_len:key_len:every)".into());
    }
    let entries: u64 = args[0].parse()?;
    let dir = Path::new(&args[1]);
    let rows = args[2..]
        .iter()
        .map(|s| parse_row(s))
        .collect::<Result<Vec<_>, _>>()?;
    if dir.exists() {
        return Err(format!("{} exists; give a fresh directory", dir.display()).into());
    }
    // The ledger's default is 64 MiB of sled cache; `SLED_CACHE_MIB` changes it.
    let cache_mib: u64 = match std::env::var("SLED_CACHE_MIB") {
        Ok(v) => v.parse()?,
        Err(_) => 64,
    };
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_mib << 20)
        .open()?;
    let tree = db.open_tree("log")?;
    let quarter = (entries / 6).max(1);
    let mut next_report = quarter;
    let mut index = 0u64;
    while index < entries {
        let mut batch = sled::Batch::default();
        for i in index..(index + 64).min(entries) {
            for (kind, row) in rows.iter().enumerate() {
                if i % row.every != 0 {
                    continue;
                }
                let mut key = vec![b'a' + kind as u8; row.key_len];
                key[1..9].copy_from_slice(&i.to_be_bytes());
                // Distinct, incompressible-looking values.
                let value: Vec<u8> = (0..row.value_len)
                    .map(|j| (i.wrapping_mul(2_654_435_761).wrapping_add(j as u64) % 251) as u8)
                    .collect();
                batch.insert(key, value);
            }
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        index = (index + 64).min(entries);
        if index >= next_report {
            println!(
                "{index} entries: {} bytes on disk per entry, VmRSS {} MiB",
                sworn_benches::dir_bytes(dir) / index,
                sworn_benches::proc_status_kib("VmRSS:").unwrap_or(0) / 1024
            );
            next_report += quarter;
        }
    }
    Ok(())
}
