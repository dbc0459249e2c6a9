//! `--server` over real HTTP/1.1 sockets: a minimal stand-in for the audit routes of
//! `sworn serve` (which links libtorch, so its own end-to-end tests live in the
//! workspace's `tests/` crate), answering with exactly the JSON shapes the service's
//! `api/handlers/audit.rs` builds from a real ledger, the export chunk by chunk.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;

use crate::fixture::{TestLog, vkey};

const API_KEY: &str = "sk-audit-test";

/// Serves `bundle` at `/v1/audit/receipts/req-6` and `export` at `/v1/audit/export`
/// (chunked), to requests carrying the API key; 401 otherwise. Returns the base URL.
fn serve(bundle: String, export: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (bundle, export) = (Arc::new(bundle), Arc::new(export));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut authorized = false;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                authorized |= header
                    .trim()
                    .eq_ignore_ascii_case(&format!("authorization: Bearer {API_KEY}"));
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let reply = if !authorized {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                    .to_string()
            } else if path == "/v1/audit/receipts/req-6" {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bundle}",
                    bundle.len()
                )
            } else if path == "/v1/audit/export" {
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                );
                // Small chunks that split lines, as a slow stream would.
                for chunk in export.as_bytes().chunks(700) {
                    out.push_str(&format!(
                        "{:x}\r\n{}\r\n",
                        chunk.len(),
                        String::from_utf8_lossy(chunk)
                    ));
                }
                out.push_str("0\r\n\r\n");
                out
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                    .to_string()
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    url
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sworn-verify"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn receipt_and_export_are_fetched_and_verified_over_http() {
    let log = TestLog::new();
    log.append_range(0, 7);
    let url = serve(log.bundle(6).to_string(), log.export());
    let key = vkey();
    let out = run(&[
        "receipt",
        "--server",
        &url,
        "--request-id",
        "req-6",
        "--api-key",
        API_KEY,
        "--key",
        &key,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("inclusion    ok"), "{text}");
    let out = run(&[
        "audit",
        "--server",
        &url,
        "--api-key",
        API_KEY,
        "--key",
        &key,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["entries"], 7);
    assert_eq!(v["summary"]["checkpoints_reproduced"], 1);
    // A refused key is an I/O error (exit 2), never a verdict about the log.
    let out = run(&[
        "audit",
        "--server",
        &url,
        "--api-key",
        "wrong",
        "--key",
        &key,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// A server that answers the question "the receipt of req-6" with req-5's receipt — a
/// valid, signed, included receipt, just not the one asked for — must not pass.
#[test]
fn a_server_answering_with_another_requests_receipt_is_refused() {
    let log = TestLog::new();
    log.append_range(0, 7);
    let url = serve(log.bundle(5).to_string(), log.export());
    let out = run(&[
        "receipt",
        "--server",
        &url,
        "--request-id",
        "req-6",
        "--api-key",
        API_KEY,
        "--key",
        &vkey(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bundle = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "bundle")
        .unwrap();
    assert_eq!(bundle["status"], "failed", "{v}");
    assert!(
        bundle["detail"].as_str().unwrap().contains("\"req-5\""),
        "{v}"
    );
    // Everything else about req-5's receipt is genuine: only the binding fails.
    for layer in ["signature", "inclusion", "checkpoint"] {
        let l = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["layer"] == layer)
            .unwrap();
        assert_eq!(l["status"], "ok", "{layer}: {v}");
    }
}
