//! 64 concurrent clients: 64 answers, 64 distinct durable indices, every receipt verifies.

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::answers::{toy_server, verify_sworn};
use crate::support::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_clients_get_sixty_four_distinct_durable_indices() {
    const CLIENTS: usize = 64;
    let server = toy_server(Options::default()).await;
    let requests: Vec<Value> = (0..CLIENTS)
        .map(|i| json!({"model": "toy", "messages": [{"role": "user", "content": format!("client {i}")}], "temperature": 0}))
        .collect();
    let answers = join_all(requests.iter().map(|request| {
        let client = server.client(&server.user_key);
        let request = request.clone();
        async move {
            client
                .chat()
                .create_byot::<_, Value>(request)
                .await
                .unwrap()
        }
    }))
    .await;
    let mut indices = HashSet::new();
    for (request, answer) in requests.iter().zip(&answers) {
        let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
        let expected = format!(
            "echo: {}",
            request["messages"][0]["content"].as_str().unwrap()
        );
        assert_eq!(text, expected, "each client gets its own answer");
        let canonical = sworn_ledger::jcs::canonicalize(&request["messages"]).unwrap();
        let receipt = verify_sworn(&server, &answer["sworn"], &canonical, text);
        assert!(
            indices.insert(receipt.entry.index),
            "index {} given twice",
            receipt.entry.index
        );
    }
    assert_eq!(indices.len(), CLIENTS);
    assert_eq!(indices.iter().max().copied(), Some(CLIENTS as u64 - 1));
    assert_eq!(server.ledger.size(), CLIENTS as u64);
    server.shutdown().await;
}
