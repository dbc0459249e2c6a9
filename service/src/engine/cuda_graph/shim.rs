//! `libsworn_cuda_graph.so`: libtorch's `at::cuda::CUDAGraph` behind a C ABI
//! (`service/csrc/cuda_graph.cpp`), loaded at run time.
//!
//! `service/build.rs` builds the library beside the binaries when libtorch's CUDA
//! libraries and the CUDA headers are there; the `sworn` binary does not link it. It is
//! dlopened only after `libtorch_cuda.so` loaded ([`crate::device::load_cuda`]), from the
//! first of, in order:
//!
//! 1. the file named by `SWORN_CUDA_GRAPH_LIB`, when set (then nothing else is tried);
//! 2. `libsworn_cuda_graph.so` in the running executable's directory (where the build
//!    copies it, and where `benches/gpu/build.sh` puts it beside the stripped binaries);
//! 3. the path it was built at (the build script's output directory).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::OnceLock;

use super::GraphError;
use crate::device::{CudaLoad, load_cuda};

/// The shim's file name.
pub const SHIM_FILE: &str = "libsworn_cuda_graph.so";
/// The variable that names the shim's file explicitly.
pub const SHIM_ENV: &str = "SWORN_CUDA_GRAPH_LIB";
/// The ABI version this side speaks (`kAbiVersion` in `cuda_graph.cpp`).
const ABI_VERSION: u32 = 1;
/// Bytes for the shim's error messages.
const ERROR_BYTES: usize = 1024;

/// Whether `service/build.rs` built the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimBuild {
    /// Built at this path.
    Built {
        /// Where the build script wrote it.
        path: &'static str,
    },
    /// Not built (the build still succeeded): why.
    Skipped {
        /// The build script's reason, e.g. missing CUDA headers.
        reason: &'static str,
    },
}

/// How the build went, as the build script recorded it.
pub fn shim_build() -> ShimBuild {
    match (
        option_env!("SWORN_CUDA_GRAPH_SHIM"),
        option_env!("SWORN_CUDA_GRAPH_SHIM_SKIPPED"),
    ) {
        (Some(path), _) => ShimBuild::Built { path },
        (None, Some(reason)) => ShimBuild::Skipped { reason },
        (None, None) => ShimBuild::Skipped {
            reason: "the build script recorded nothing",
        },
    }
}

type GraphFn = unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> c_int;

/// The shim's entry points, resolved once.
#[derive(Debug)]
pub(crate) struct Shim {
    path: String,
    new: unsafe extern "C" fn(c_int, *mut *mut c_void, *mut c_char, usize) -> c_int,
    free: unsafe extern "C" fn(*mut c_void),
    enter_side_stream: GraphFn,
    leave_side_stream: GraphFn,
    capture_begin: unsafe extern "C" fn(*mut c_void, u64, u64, *mut c_char, usize) -> c_int,
    capture_end: GraphFn,
    replay: GraphFn,
    pool: unsafe extern "C" fn(*mut c_void, *mut u64, *mut u64, *mut c_char, usize) -> c_int,
}

impl Shim {
    /// Where the library was loaded from.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

/// Loads the shim once per process (later calls return the first outcome). Refused
/// unless the shim was built and libtorch's CUDA backend is loaded.
pub(crate) fn load_shim() -> Result<&'static Shim, GraphError> {
    static LOADED: OnceLock<Result<Shim, GraphError>> = OnceLock::new();
    LOADED.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Shim, GraphError> {
    if let CudaLoad::Unavailable(reason) = load_cuda() {
        return Err(GraphError::ShimUnavailable {
            reason: format!("libtorch's CUDA backend is not loaded ({reason})"),
        });
    }
    let candidates: Vec<PathBuf> = match std::env::var_os(SHIM_ENV) {
        Some(path) => vec![PathBuf::from(path)],
        None => {
            let mut c = Vec::new();
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|e| Some(e.parent()?.to_owned()))
            {
                c.push(dir.join(SHIM_FILE));
            }
            match shim_build() {
                ShimBuild::Built { path } => c.push(PathBuf::from(path)),
                ShimBuild::Skipped { reason } if c.iter().all(|p| !p.exists()) => {
                    return Err(GraphError::ShimNotBuilt {
                        reason: reason.to_owned(),
                    });
                }
                ShimBuild::Skipped { .. } => {}
            }
            c
        }
    };
    let mut failures = Vec::new();
    for path in candidates {
        match open(&path) {
            Ok(shim) => return Ok(shim),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    Err(GraphError::ShimUnavailable {
        reason: failures.join("; "),
    })
}

fn open(path: &std::path::Path) -> Result<Shim, String> {
    let name = path.to_string_lossy().into_owned();
    let c_name = CString::new(name.clone()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen gets a NUL-terminated path; the handle is deliberately leaked (the
    // library stays loaded for the life of the process, as graphs made through it must).
    // dlerror is read on the same thread right after.
    let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(last_dl_error("dlopen"));
    }
    let symbol = |name: &str| -> Result<*mut c_void, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: a live handle and a NUL-terminated name.
        let ptr = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if ptr.is_null() {
            Err(format!("no symbol {name}"))
        } else {
            Ok(ptr)
        }
    };
    // SAFETY (for every transmute below): each symbol is the `extern "C"` function of that
    // name in cuda_graph.cpp, whose signature the fn type here spells; the ABI version is
    // checked first, so a library with other signatures is refused before any is called.
    unsafe {
        let abi = std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> u32>(symbol(
            "sworn_cuda_graph_abi_version",
        )?)();
        if abi != ABI_VERSION {
            return Err(format!("ABI version {abi}, expected {ABI_VERSION}"));
        }
        let graph_fn = |name: &str| -> Result<GraphFn, String> {
            Ok(std::mem::transmute::<*mut c_void, GraphFn>(symbol(name)?))
        };
        Ok(Shim {
            path: name,
            new: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(c_int, *mut *mut c_void, *mut c_char, usize) -> c_int,
            >(symbol("sworn_cuda_graph_new")?),
            free: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(symbol(
                "sworn_cuda_graph_free",
            )?),
            enter_side_stream: graph_fn("sworn_cuda_graph_enter_side_stream")?,
            leave_side_stream: graph_fn("sworn_cuda_graph_leave_side_stream")?,
            capture_begin: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut c_void, u64, u64, *mut c_char, usize) -> c_int,
            >(symbol("sworn_cuda_graph_capture_begin")?),
            capture_end: graph_fn("sworn_cuda_graph_capture_end")?,
            replay: graph_fn("sworn_cuda_graph_replay")?,
            pool: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut c_void, *mut u64, *mut u64, *mut c_char, usize) -> c_int,
            >(symbol("sworn_cuda_graph_pool")?),
        })
    }
}

fn last_dl_error(what: &str) -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
    unsafe {
        let err = libc::dlerror();
        if err.is_null() {
            format!("{what} failed")
        } else {
            CStr::from_ptr(err).to_string_lossy().into_owned()
        }
    }
}

/// A memory pool graphs share: the intermediates of one graph's replay may reuse those of
/// another's, which is safe because replays never overlap and outputs stay allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemPool(u64, u64);

/// One captured CUDA graph, freed (with its executable) on drop.
pub(crate) struct CudaGraph {
    shim: &'static Shim,
    raw: NonNull<c_void>,
}

// SAFETY: the graph is an owned C++ object with no thread affinity: it is captured on one
// thread (the loading one) and replayed from another (the engine's), never from two at once
// (`&mut self` for every call that touches it).
unsafe impl Send for CudaGraph {}

impl std::fmt::Debug for CudaGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaGraph")
            .field("shim", &self.shim.path)
            .finish_non_exhaustive()
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the shim's `new` and is freed exactly once, here.
        unsafe { (self.shim.free)(self.raw.as_ptr()) }
    }
}

impl CudaGraph {
    /// Captures what `forward` issues on CUDA device `device` into a new graph, after
    /// `warmups` uncaptured runs of it on the same side stream (libtorch allocates
    /// workspaces and loads kernels on first use, which a capture must not see). Returns
    /// the graph and the captured run's result, whose tensors are the graph's outputs.
    pub(crate) fn capture<T>(
        shim: &'static Shim,
        device: usize,
        pool: Option<MemPool>,
        warmups: usize,
        mut forward: impl FnMut() -> Result<T, GraphError>,
    ) -> Result<(Self, T), GraphError> {
        let mut graph = Self::new(shim, device)?;
        graph.call("enter side stream", shim.enter_side_stream)?;
        let mut captured = || -> Result<T, GraphError> {
            for _ in 0..warmups {
                forward()?;
            }
            let MemPool(a, b) = pool.unwrap_or(MemPool(0, 0));
            let mut err = [0 as c_char; ERROR_BYTES];
            // SAFETY: a live graph and an error buffer of the size given.
            let rc = unsafe {
                (shim.capture_begin)(graph.raw.as_ptr(), a, b, err.as_mut_ptr(), ERROR_BYTES)
            };
            check("capture begin", rc, &err)?;
            let out = forward();
            // Always ended, also after a failed forward, or the stream stays capturing.
            let ended = graph.call("capture end", shim.capture_end);
            let out = out?;
            ended?;
            Ok(out)
        };
        let out = captured();
        let left = graph.call("leave side stream", shim.leave_side_stream);
        let out = out?;
        left?;
        Ok((graph, out))
    }

    fn new(shim: &'static Shim, device: usize) -> Result<Self, GraphError> {
        let mut raw = std::ptr::null_mut();
        let mut err = [0 as c_char; ERROR_BYTES];
        let device = c_int::try_from(device).map_err(|_| GraphError::Cuda {
            op: "new graph",
            message: format!("device index {device} out of range"),
        })?;
        // SAFETY: `raw` receives a new object; the error buffer has the size given.
        let rc = unsafe { (shim.new)(device, &mut raw, err.as_mut_ptr(), ERROR_BYTES) };
        check("new graph", rc, &err)?;
        let raw = NonNull::new(raw).ok_or(GraphError::Cuda {
            op: "new graph",
            message: "the shim returned no graph".to_owned(),
        })?;
        Ok(Self { shim, raw })
    }

    /// Launches the captured work on the current stream.
    pub(crate) fn replay(&mut self) -> Result<(), GraphError> {
        self.call("replay", self.shim.replay)
    }

    /// The memory pool this graph captured into, for the next captures to share.
    pub(crate) fn pool(&mut self) -> Result<MemPool, GraphError> {
        let (mut a, mut b) = (0u64, 0u64);
        let mut err = [0 as c_char; ERROR_BYTES];
        // SAFETY: a live graph, two out-parameters and an error buffer of the size given.
        let rc = unsafe {
            (self.shim.pool)(
                self.raw.as_ptr(),
                &mut a,
                &mut b,
                err.as_mut_ptr(),
                ERROR_BYTES,
            )
        };
        check("pool", rc, &err)?;
        Ok(MemPool(a, b))
    }

    fn call(&mut self, op: &'static str, f: GraphFn) -> Result<(), GraphError> {
        let mut err = [0 as c_char; ERROR_BYTES];
        // SAFETY: a live graph and an error buffer of the size given.
        let rc = unsafe { f(self.raw.as_ptr(), err.as_mut_ptr(), ERROR_BYTES) };
        check(op, rc, &err)
    }
}

fn check(op: &'static str, rc: c_int, err: &[c_char]) -> Result<(), GraphError> {
    if rc == 0 {
        return Ok(());
    }
    let bytes: Vec<u8> = err
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Err(GraphError::Cuda {
        op,
        message: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
