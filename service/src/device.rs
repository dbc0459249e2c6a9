//! Which device the engine runs on, and what libtorch the process actually loaded.
//!
//! The binary links only libtorch's CPU libraries. [`load_cuda`] dlopens
//! `libtorch_cuda.so` at start-up: on a machine with CUDA libraries and a GPU its static
//! initialisers register the CUDA backend and `tch::Cuda` sees the devices; elsewhere the
//! load fails harmlessly and the engine runs on the CPU. One binary serves both. The
//! CUDA-graph shim (`libsworn_cuda_graph.so`, [`crate::engine::cuda_graph`]) is loaded the
//! same way, after `libtorch_cuda.so` and only where it loaded.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// The outcome of trying to load libtorch's CUDA backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaLoad {
    /// `libtorch_cuda.so` was loaded from this path (or library name).
    Loaded(String),
    /// Every candidate failed; the last loader error, e.g. a missing `libcudart.so.13`.
    Unavailable(String),
}

/// Loads `libtorch_cuda.so` once per process; later calls return the first outcome.
///
/// Candidates, in order: the plain library name (found through `LD_LIBRARY_PATH` or the
/// binary's rpath), then the torch wheel directory the binary was built against.
pub fn load_cuda() -> &'static CudaLoad {
    static LOADED: OnceLock<CudaLoad> = OnceLock::new();
    LOADED.get_or_init(|| {
        let mut candidates = vec!["libtorch_cuda.so".to_owned()];
        if let Some(dir) = option_env!("SWORN_TORCH_LIB_DIR") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        let mut last_error = String::from("no candidate");
        for candidate in candidates {
            match dlopen_global(&candidate) {
                Ok(()) => return CudaLoad::Loaded(candidate),
                Err(e) => last_error = e,
            }
        }
        CudaLoad::Unavailable(last_error)
    })
}

fn dlopen_global(name: &str) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: dlopen is given a NUL-terminated path; the handle is deliberately leaked so
    // the library stays loaded for the life of the process (its backend registrations
    // must outlive every tensor). dlerror is read immediately on the same thread.
    unsafe {
        let handle = libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            if err.is_null() {
                return Err(format!("dlopen({name}) failed"));
            }
            return Err(CStr::from_ptr(err).to_string_lossy().into_owned());
        }
    }
    Ok(())
}

unsafe extern "C" {
    fn sworn_torch_show_config(buf: *mut libc::c_char, len: libc::c_ulong) -> libc::c_long;
}

/// libtorch's build configuration (`at::show_config()`), read from the loaded library.
pub fn torch_show_config() -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: the shim writes at most `len - 1` bytes plus a NUL into `buf`.
    let n = unsafe { sworn_torch_show_config(buf.as_mut_ptr().cast(), buf.len() as libc::c_ulong) };
    if n < 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The libtorch version, from `TORCH_VERSION=` in libtorch's own build configuration.
pub fn torch_version() -> Option<String> {
    let config = torch_show_config()?;
    let start = config.find("TORCH_VERSION=")? + "TORCH_VERSION=".len();
    let rest = &config[start..];
    let end = rest.find([',', ' ', '\n']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// What this process can run on, for `sworn --version`, `/health` and receipts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceReport {
    /// libtorch version as reported by the loaded library.
    pub libtorch: String,
    /// Number of CUDA devices libtorch sees (0 without a GPU or without CUDA libraries).
    pub cuda_devices: usize,
    /// Whether cuDNN is usable.
    pub cudnn: bool,
    /// How the CUDA backend load went, then the CUDA-graph shim's state (built or not,
    /// loaded or not; see [`crate::engine::cuda_graph`]).
    pub cuda_backend: String,
    /// Intra-op CPU threads libtorch uses.
    pub cpu_threads: i32,
}

impl DeviceReport {
    /// Loads the CUDA backend if possible and asks libtorch what it sees.
    pub fn probe() -> Self {
        let cuda_backend = match load_cuda() {
            CudaLoad::Loaded(path) => format!("loaded ({path})"),
            CudaLoad::Unavailable(err) => format!("not loaded: {err}"),
        };
        let cuda_backend = format!(
            "{cuda_backend}; {}",
            crate::engine::cuda_graph::shim_status()
        );
        Self {
            libtorch: torch_version().unwrap_or_else(|| "unknown".to_owned()),
            cuda_devices: tch::Cuda::device_count().max(0) as usize,
            cudnn: tch::Cuda::cudnn_is_available(),
            cuda_backend,
            cpu_threads: tch::get_num_threads(),
        }
    }

    /// The device the engine will use by default: the first GPU if any, else the CPU.
    pub fn default_device(&self) -> tch::Device {
        if self.cuda_devices > 0 {
            tch::Device::Cuda(0)
        } else {
            tch::Device::Cpu
        }
    }
}
