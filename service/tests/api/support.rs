//! A real server on 127.0.0.1 (port 0) over a real sled ledger in a temporary directory, with
//! a real API-keys file; plus a minimal raw HTTP/1.1 client for requests no SDK would send.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use sworn_ledger::keys::LogKey;
use sworn_ledger::receipt::ModelInfo;
use sworn_ledger::store::{Ledger, LedgerConfig};
use sworn_service::api::auth::Auth;
use sworn_service::api::state::{AppState, AppStateParts, ServedModel, SwearMode};
use sworn_service::api::validation::Limits;
use sworn_service::api_keys::{KeysFile, NewKey, Role, add_key};
use sworn_service::scheduler::{Generator, Scheduler};
use sworn_service::server::{ConnectionLimits, ListenOptions, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ORIGIN: &str = "sworn.test/api";

/// Knobs for one test server.
#[derive(Debug)]
pub struct Options {
    pub queue_capacity: usize,
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    pub max_body_bytes: usize,
    pub swear_mode: SwearMode,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub limits: ConnectionLimits,
    pub client_stall_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_capacity: 256,
            requests_per_minute: 100_000,
            tokens_per_minute: 100_000_000,
            max_body_bytes: 64 * 1024,
            swear_mode: SwearMode::Durable,
            tls: None,
            limits: ConnectionLimits::default(),
            client_stall_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug)]
pub struct TestServer {
    pub url: String,
    pub addr: SocketAddr,
    pub user_key: String,
    pub admin_key: String,
    pub state: Arc<AppState>,
    pub ledger: Ledger,
    pub model_id: String,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

/// The toy model served as `toy`, its weights hash `sha`.
pub fn toy_model(sha: &str) -> ServedModel {
    ServedModel {
        id: "toy".into(),
        info: ModelInfo {
            id: "toy".into(),
            sha256: sha.to_string(),
            dtype: "f32".into(),
            device: "cpu".into(),
            engine: format!("sworn {}", env!("CARGO_PKG_VERSION")),
            libtorch: "none".into(),
        },
        context_length: crate::toy::TOY_CONTEXT,
        encoder: Arc::new(crate::toy::ToyEncoder),
        created: 0,
    }
}

impl TestServer {
    pub async fn start<G: Generator>(
        generator: G,
        model: ServedModel,
        options: Options,
    ) -> TestServer {
        let model_id = model.id.clone();
        let dir = tempfile::tempdir().unwrap();
        let key = LogKey::generate_to_file(&dir.path().join("log.key")).unwrap();
        let mut config = LedgerConfig::new(dir.path().join("ledger"), ORIGIN, key);
        config.seal_interval = Duration::from_millis(200);
        let ledger = Ledger::open(config).unwrap();
        let keys_path = dir.path().join("api-keys.toml");
        let new_key = |id: &str, role| NewKey {
            id: id.into(),
            role,
            requests_per_minute: options.requests_per_minute,
            tokens_per_minute: options.tokens_per_minute,
        };
        let user_key = add_key(&keys_path, &new_key("team-a", Role::User)).unwrap();
        let admin_key = add_key(&keys_path, &new_key("ops", Role::Admin)).unwrap();
        let auth = Auth::from_file(&KeysFile::load(&keys_path).unwrap());
        let (scheduler, _engine) = Scheduler::start(generator, options.queue_capacity).unwrap();
        let state = AppState::new(AppStateParts {
            model,
            limits: Limits {
                max_tokens_limit: 256,
                default_max_tokens: 32,
                max_choices: 4,
            },
            max_body_bytes: options.max_body_bytes,
            auth,
            scheduler,
            ledger: ledger.clone(),
            swear_mode: options.swear_mode,
            anchor: None,
            overload_retry_after_s: 1,
            client_stall_timeout: options.client_stall_timeout,
        });
        let server = Server::start_with(
            state.clone(),
            ListenOptions {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: options.tls,
                allow_plain_http: false,
            },
            options.limits,
        )
        .await
        .unwrap();
        TestServer {
            url: server.url(),
            addr: server.local_addr(),
            user_key,
            admin_key,
            state,
            ledger,
            model_id,
            server: Some(server),
            _dir: dir,
        }
    }

    /// A real OpenAI client for this server.
    pub fn client(&self, key: &str) -> Client<OpenAIConfig> {
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(format!("{}/v1", self.url))
                .with_api_key(key),
        )
    }

    pub async fn shutdown(self) {
        self.shutdown_within(Duration::from_secs(30)).await;
    }

    /// Shuts down with a grace period of `grace`.
    pub async fn shutdown_within(mut self, grace: Duration) {
        if let Some(server) = self.server.take() {
            sworn_service::server::shutdown(server, self.state.clone(), grace).await;
        }
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    parse_response(&bytes)
}

/// Parses one whole HTTP/1.1 response (head and body).
pub fn parse_response(bytes: &[u8]) -> Raw {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

/// `Authorization` header value for a key.
pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}
