//! `sworn serve` configuration: command-line flags, each also an environment variable
//! (`SWORN_*`), over an optional TOML file (`--config`), over defaults. Flags and variables
//! win over the file; the file wins over defaults.
//!
//! ```toml
//! model = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
//! listen = "127.0.0.1:8080"
//! data_dir = "data"
//! api_keys = "data/api-keys.toml"
//! origin = "sworn.example/prod-eu-1"
//! queue_capacity = 256
//! max_connections = 512
//! header_read_timeout_s = 10
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sworn_ledger::small_file::read_capped;

use crate::engine::cuda_graph::CudaGraphs;
use crate::engine::runner::WeightsChoice;
use crate::scheduler::engine_adapter::DEFAULT_PREFILL_CHUNK_TOKENS;
use crate::server::ConnectionLimits;

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// `sworn serve` settings: the flags (each also a `SWORN_*` variable) and, with the same
/// names, the keys of the TOML file. Every value is optional so that the file can supply it.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML configuration file (flags and environment variables override it).
    #[arg(long, env = "SWORN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Model file (GGUF) or HF checkpoint directory.
    #[arg(long, env = "SWORN_MODEL")]
    pub model: Option<PathBuf>,
    /// The id clients use in `model` (default: the file name without extension).
    #[arg(long, env = "SWORN_MODEL_ID")]
    pub model_id: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SWORN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the ledger and keys [default: data].
    #[arg(long, env = "SWORN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Ed25519 log key file [default: DATA_DIR/log.key; created on first start].
    #[arg(long, env = "SWORN_LOG_KEY")]
    pub log_key: Option<PathBuf>,
    /// The log's origin, e.g. `sworn.example/prod-eu-1` [default: sworn.local/dev].
    #[arg(long, env = "SWORN_ORIGIN")]
    pub origin: Option<String>,
    /// API-keys TOML file (`sworn keys add` writes it).
    #[arg(long, env = "SWORN_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// Serve without authentication. Anyone who can reach the port can use and audit it.
    #[arg(long, env = "SWORN_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "SWORN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SWORN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (a TLS proxy must sit in front).
    #[arg(long, env = "SWORN_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,
    /// Chain RPC URL for anchoring.
    #[arg(long, env = "SWORN_RPC")]
    pub rpc: Option<String>,
    /// SwornAnchor contract address.
    #[arg(long, env = "SWORN_CONTRACT")]
    pub contract: Option<String>,
    /// File holding the chain account's private key.
    #[arg(long, env = "SWORN_CHAIN_KEY")]
    pub chain_key: Option<PathBuf>,
    /// Do not anchor checkpoints on a chain.
    #[arg(long, env = "SWORN_NO_ANCHOR")]
    pub no_anchor: bool,
    /// Requests waiting for the engine before new ones get 503 [default: 256].
    #[arg(long, env = "SWORN_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Linear weights of a GGUF model: `auto`, `dense` (4-bit weights dequantised: the
    /// exact mode) or `int4` (kept 4-bit, libtorch's int4 CPU kernel) [default: auto].
    #[arg(long, env = "SWORN_WEIGHTS")]
    pub weights: Option<String>,
    /// Sequences decoded together [default: 16].
    #[arg(long, env = "SWORN_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Most positions (prompts × the longest of them) one batched prefill of requests that
    /// arrived together runs; `0` prefills each prompt alone [default: 4096 on a GPU, 0 on
    /// the CPU, where batching prompts gains no speed and delays the first token].
    #[arg(long, env = "SWORN_PREFILL_BATCH_TOKENS")]
    pub prefill_batch_tokens: Option<usize>,
    /// A prompt longer than this is prefilled this many positions per turn, between the
    /// running sequences' decode steps, so it delays their next token by one chunk's
    /// prefill, not its whole; `0` prefills every prompt whole [default: 512].
    #[arg(long, env = "SWORN_PREFILL_CHUNK_TOKENS")]
    pub prefill_chunk_tokens: Option<usize>,
    /// The decode step as CUDA graphs, on CUDA: `auto` (when the CUDA-graph shim loads
    /// and the capture succeeds; else eager, the reason logged), `on` (or refuse to start)
    /// or `off` [default: auto].
    #[arg(long, env = "SWORN_CUDA_GRAPHS")]
    pub cuda_graphs: Option<String>,
    /// Largest request body in bytes [default: 4194304].
    #[arg(long, env = "SWORN_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest `max_tokens` a client may ask for [default: 4096].
    #[arg(long, env = "SWORN_MAX_TOKENS_LIMIT")]
    pub max_tokens_limit: Option<u32>,
    /// `max_tokens` when a request gives none [default: 256].
    #[arg(long, env = "SWORN_DEFAULT_MAX_TOKENS")]
    pub default_max_tokens: Option<u32>,
    /// Seal a checkpoint every N entries [default: 1024].
    #[arg(long, env = "SWORN_SEAL_EVERY")]
    pub seal_every: Option<u64>,
    /// ... or every this many milliseconds [default: 1000].
    #[arg(long, env = "SWORN_SEAL_INTERVAL_MS")]
    pub seal_interval_ms: Option<u64>,
    /// Seconds to let in-flight requests finish at shutdown [default: 30].
    #[arg(long, env = "SWORN_SHUTDOWN_GRACE_S")]
    pub shutdown_grace_s: Option<u64>,
    /// Seconds a streaming client may take no text at all before its answer is ended and
    /// sworn `cancelled` as if it had disconnected [default: 60].
    #[arg(long, env = "SWORN_CLIENT_STALL_TIMEOUT_S")]
    pub client_stall_timeout_s: Option<u64>,
    /// Connections served at once; past it the longest-idle connection is closed to make
    /// room, or, when all are busy, new ones get 503 `too_many_connections` [default: 512].
    #[arg(long, env = "SWORN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds for a request head to arrive in full once the server waits for it [default: 10].
    #[arg(long, env = "SWORN_HEADER_READ_TIMEOUT_S")]
    pub header_read_timeout_s: Option<u64>,
    /// Seconds for a request body to arrive in full after its head [default: 60].
    #[arg(long, env = "SWORN_BODY_READ_TIMEOUT_S")]
    pub body_read_timeout_s: Option<u64>,
    /// Seconds a connection with no request in flight is kept open [default: 10].
    #[arg(long, env = "SWORN_KEEP_ALIVE_TIMEOUT_S")]
    pub keep_alive_timeout_s: Option<u64>,
}

/// Chain settings for anchoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorConfig {
    /// RPC URL.
    pub rpc: String,
    /// Contract address.
    pub contract: String,
    /// Chain key file.
    pub chain_key: PathBuf,
}

/// Resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Model path.
    pub model: PathBuf,
    /// Model id for clients.
    pub model_id: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log key file.
    pub log_key: PathBuf,
    /// Log origin.
    pub origin: String,
    /// API keys file (`None` only with `insecure_no_auth`).
    pub api_keys: Option<PathBuf>,
    /// No authentication.
    pub insecure_no_auth: bool,
    /// TLS certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP off loopback.
    pub allow_plain_http: bool,
    /// Anchoring (`None`: `--no-anchor`).
    pub anchor: Option<AnchorConfig>,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Dense or 4-bit linear weights.
    pub weights: WeightsChoice,
    /// Engine batch size.
    pub max_batch: usize,
    /// Cap of one batched prefill, in padded positions (0: none batched; `None`: the
    /// device's default).
    pub prefill_batch_tokens: Option<usize>,
    /// Positions of a long prompt prefilled per turn (0: whole prompts).
    pub prefill_chunk_tokens: usize,
    /// Whether the decode step runs as CUDA graphs.
    pub cuda_graphs: CudaGraphs,
    /// Body cap.
    pub max_body_bytes: usize,
    /// `max_tokens` cap.
    pub max_tokens_limit: u32,
    /// Default `max_tokens`.
    pub default_max_tokens: u32,
    /// Checkpoint every N entries.
    pub seal_every: u64,
    /// Checkpoint interval.
    pub seal_interval: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// How long a streaming client may take no text before its answer is cut.
    pub client_stall_timeout: Duration,
    /// Connection cap and timeouts.
    pub connections: ConnectionLimits,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A required setting is missing or settings conflict.
    #[error("{0}")]
    Invalid(String),
}

impl ServeArgs {
    /// Reads a TOML config file: the same keys as the flags, in snake case.
    pub fn load(path: &Path) -> Result<ServeArgs, ConfigError> {
        let err = |reason: String| ConfigError::File {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = read_capped(path, MAX_CONFIG_BYTES).map_err(|e| err(e.reason()))?;
        let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// These settings over `file`'s: a flag or variable that was given wins. The
    /// destructuring is exhaustive, so a new setting that is not merged does not compile.
    fn over(mut self, file: ServeArgs) -> ServeArgs {
        macro_rules! overlay {
            (options: $($o:ident),*; switches: $($s:ident),*) => {{
                let ServeArgs { config: _, $($o,)* $($s,)* } = file;
                $(self.$o = self.$o.or($o);)*
                $(self.$s |= $s;)*
            }};
        }
        overlay!(
            options: model, model_id, listen, data_dir, log_key, origin, api_keys, tls_cert,
                tls_key, rpc, contract, chain_key, queue_capacity, weights, max_batch, prefill_batch_tokens, prefill_chunk_tokens, cuda_graphs,
                max_body_bytes,
                max_tokens_limit, default_max_tokens, seal_every, seal_interval_ms,
                shutdown_grace_s, client_stall_timeout_s, max_connections, header_read_timeout_s,
                body_read_timeout_s, keep_alive_timeout_s;
            switches: insecure_no_auth, allow_plain_http, no_anchor
        );
        self
    }

    /// Merges flags/env over the file (if any) over defaults, and checks the result.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let a = match &self.config {
            Some(path) => {
                let file = ServeArgs::load(path)?;
                self.over(file)
            }
            None => self,
        };
        let model = a.model.ok_or_else(|| {
            ConfigError::Invalid("no model: give --model (or `model` in the config file)".into())
        })?;
        let model_id = a.model_id.unwrap_or_else(|| default_model_id(&model));
        let data_dir = a.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        let log_key = a.log_key.unwrap_or_else(|| data_dir.join("log.key"));
        if a.api_keys.is_none() && !a.insecure_no_auth {
            return Err(ConfigError::Invalid(
                "no --api-keys file: refusing to serve without authentication (create one with `sworn keys add`, or pass --insecure-no-auth to serve anyone who can reach the port)".into(),
            ));
        }
        let tls = match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        let anchor = match (a.no_anchor, a.rpc, a.contract, a.chain_key) {
            (true, _, _, _) => None,
            (false, Some(rpc), Some(contract), Some(chain_key)) => Some(AnchorConfig {
                rpc,
                contract,
                chain_key,
            }),
            (false, None, None, None) => {
                return Err(ConfigError::Invalid(
                    "anchoring needs --rpc, --contract and --chain-key; pass --no-anchor to serve without a chain".into(),
                ));
            }
            _ => {
                return Err(ConfigError::Invalid(
                    "--rpc, --contract and --chain-key go together".into(),
                ));
            }
        };
        let positive = |name: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(ConfigError::Invalid(format!("--{name} must be at least 1"))),
            v => Ok(v.unwrap_or(default)),
        };
        let seconds = |name: &str, v: Option<u64>, default: Duration| match v {
            Some(0) => Err(ConfigError::Invalid(format!("--{name} must be at least 1"))),
            v => Ok(v.map_or(default, Duration::from_secs)),
        };
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            max_connections: positive(
                "max-connections",
                a.max_connections,
                defaults.max_connections,
            )?,
            header_read_timeout: seconds(
                "header-read-timeout-s",
                a.header_read_timeout_s,
                defaults.header_read_timeout,
            )?,
            body_read_timeout: seconds(
                "body-read-timeout-s",
                a.body_read_timeout_s,
                defaults.body_read_timeout,
            )?,
            keep_alive_timeout: seconds(
                "keep-alive-timeout-s",
                a.keep_alive_timeout_s,
                defaults.keep_alive_timeout,
            )?,
        };
        Ok(ServeConfig {
            model,
            model_id,
            listen: a
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            log_key,
            origin: a.origin.unwrap_or_else(|| "sworn.local/dev".to_string()),
            api_keys: a.api_keys,
            insecure_no_auth: a.insecure_no_auth,
            tls,
            allow_plain_http: a.allow_plain_http,
            anchor,
            queue_capacity: positive("queue-capacity", a.queue_capacity, 256)?,
            weights: match a.weights.as_deref() {
                None => WeightsChoice::Auto,
                Some(w) => w
                    .parse()
                    .map_err(|e| ConfigError::Invalid(format!("--weights {e}")))?,
            },
            max_batch: positive("max-batch", a.max_batch, 16)?,
            prefill_batch_tokens: a.prefill_batch_tokens,
            prefill_chunk_tokens: (a.prefill_chunk_tokens).unwrap_or(DEFAULT_PREFILL_CHUNK_TOKENS),
            cuda_graphs: match a.cuda_graphs.as_deref() {
                None => CudaGraphs::Auto,
                Some(g) => g
                    .parse()
                    .map_err(|e| ConfigError::Invalid(format!("--cuda-graphs {e}")))?,
            },
            max_body_bytes: positive("max-body-bytes", a.max_body_bytes, 4 * 1024 * 1024)?,
            max_tokens_limit: a.max_tokens_limit.unwrap_or(4096).max(1),
            default_max_tokens: a.default_max_tokens.unwrap_or(256).max(1),
            seal_every: a.seal_every.unwrap_or(1024),
            seal_interval: Duration::from_millis(a.seal_interval_ms.unwrap_or(1000)),
            shutdown_grace: Duration::from_secs(a.shutdown_grace_s.unwrap_or(30)),
            client_stall_timeout: Duration::from_secs(
                a.client_stall_timeout_s.unwrap_or(60).max(1),
            ),
            connections,
        })
    }
}

/// The configuration reference (`docs/CONFIG.md`), generated from [`ServeArgs`]' own
/// definition so that the documented flags, variables and keys are the ones that exist:
/// a flag, its `SWORN_*` variable and its TOML key are one setting. `sworn
/// config-reference` prints it; a test holds the committed file to it.
pub fn reference() -> String {
    use clap::Args;
    let command = ServeArgs::augment_args(clap::Command::new("serve"));
    let mut out = String::from(
        "# `sworn serve` configuration\n\n\
         Generated from the flags' definitions by `sworn config-reference` (a test in `make \
         test` fails when this file and the flags differ). Every setting is a command-line \
         flag, an environment variable and a key of the TOML file named by `--config`; \
         flags and variables win over the file, the file over the defaults.\n\n\
         | flag | environment | TOML key | meaning |\n|---|---|---|---|\n",
    );
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let env = arg
            .get_env()
            .map_or(String::new(), |e| format!("`{}`", e.to_string_lossy()));
        let key = match arg.get_id().as_str() {
            "config" => "(none)".to_string(),
            id => format!("`{id}`"),
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let help = help.replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!("| `--{long}` | {env} | {key} | {help} |\n"));
    }
    out
}

fn default_model_id(model: &Path) -> String {
    let name = model
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model");
    // `SmolLM2-135M-Instruct.Q4_1.gguf` → `SmolLM2-135M-Instruct`
    name.split('.')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            model: Some("models/SmolLM2-135M-Instruct.Q4_1.gguf".into()),
            api_keys: Some("keys.toml".into()),
            no_anchor: true,
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let c = args().resolve().unwrap();
        assert_eq!(c.model_id, "SmolLM2-135M-Instruct");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.log_key, PathBuf::from("data/log.key"));
        assert!(c.anchor.is_none());
        assert_eq!(c.connections, ConnectionLimits::default());
    }

    #[test]
    fn connection_limits_come_from_flags_or_the_file_and_are_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sworn.toml");
        std::fs::write(
            &path,
            "max_connections = 64\nheader_read_timeout_s = 5\nkeep_alive_timeout_s = 3\n",
        )
        .unwrap();
        let mut a = args();
        a.config = Some(path);
        a.body_read_timeout_s = Some(20);
        a.keep_alive_timeout_s = Some(4);
        let c = a.clone().resolve().unwrap().connections;
        assert_eq!(c.max_connections, 64);
        assert_eq!(c.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.body_read_timeout, Duration::from_secs(20));
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(4));
        a.header_read_timeout_s = Some(0);
        assert!(a.clone().resolve().is_err());
        a.header_read_timeout_s = None;
        a.max_connections = Some(0);
        assert!(a.resolve().is_err());
    }

    #[test]
    fn cuda_graphs_default_to_auto_and_take_on_or_off() {
        assert_eq!(args().resolve().unwrap().cuda_graphs, CudaGraphs::Auto);
        let mut a = args();
        a.cuda_graphs = Some("off".into());
        assert_eq!(a.clone().resolve().unwrap().cuda_graphs, CudaGraphs::Off);
        a.cuda_graphs = Some("sometimes".into());
        let err = a.resolve().unwrap_err().to_string();
        assert!(
            err.starts_with("--cuda-graphs must be auto, on or off"),
            "{err}"
        );
    }

    #[test]
    fn refuses_to_start_without_keys_unless_told() {
        let mut a = args();
        a.api_keys = None;
        assert!(
            a.clone()
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("--insecure-no-auth")
        );
        a.insecure_no_auth = true;
        assert!(a.resolve().is_ok());
    }

    #[test]
    fn file_values_lose_to_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sworn.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nqueue_capacity = 7\nmodel_id = \"from-file\"\n",
        )
        .unwrap();
        let mut a = args();
        a.config = Some(path.clone());
        a.model_id = Some("from-flag".into());
        let c = a.resolve().unwrap();
        assert_eq!(
            (c.listen.port(), c.queue_capacity, c.model_id.as_str()),
            (9000, 7, "from-flag")
        );
        std::fs::write(&path, "unknown_setting = 1\n").unwrap();
        let mut a = args();
        a.config = Some(path);
        assert!(matches!(a.resolve(), Err(ConfigError::File { .. })));
    }

    #[test]
    fn switches_in_the_file_count_and_the_file_cannot_name_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sworn.toml");
        std::fs::write(&path, "insecure_no_auth = true\nno_anchor = true\n").unwrap();
        let mut a = args();
        a.no_anchor = false;
        a.api_keys = None;
        a.config = Some(path.clone());
        let c = a.clone().resolve().unwrap();
        assert!(c.insecure_no_auth && c.anchor.is_none());
        std::fs::write(&path, "config = \"other.toml\"\n").unwrap();
        assert!(matches!(a.resolve(), Err(ConfigError::File { .. })));
    }

    #[test]
    fn the_committed_reference_is_the_flags_definition() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == reference(),
            "docs/CONFIG.md differs from the flags: run `sworn config-reference > docs/CONFIG.md`"
        );
        // Every flag but --config is a TOML key the file accepts.
        for line in reference().lines().filter(|l| l.starts_with("| `--")) {
            let key = line.split('|').nth(3).unwrap().trim().trim_matches('`');
            if key != "(none)" {
                let toml = format!("{key} = 1");
                let err = toml::from_str::<ServeArgs>(&toml)
                    .err()
                    .map(|e| e.to_string());
                assert!(
                    !err.unwrap_or_default().contains("unknown field"),
                    "{key} is documented but not a TOML key"
                );
            }
        }
    }

    #[test]
    fn anchoring_needs_all_three_or_no_anchor() {
        let mut a = args();
        a.no_anchor = false;
        assert!(a.clone().resolve().is_err());
        a.rpc = Some("http://127.0.0.1:8545".into());
        assert!(a.clone().resolve().is_err());
        a.contract = Some("0x00".into());
        a.chain_key = Some("k".into());
        assert!(a.resolve().unwrap().anchor.is_some());
    }
}
