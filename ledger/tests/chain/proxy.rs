//! A TCP relay between the anchorer and Anvil that a test can cut, to make the RPC
//! unreachable without losing the chain. While down it closes new connections at once
//! and tears down established ones (the HTTP client keeps connections alive).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) struct Relay {
    pub(crate) url: String,
    up: watch::Sender<bool>,
}

impl Relay {
    pub(crate) async fn start(upstream_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (up, up_rx) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*up_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut down = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Relay {
            url: format!("http://{addr}"),
            up,
        }
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}
