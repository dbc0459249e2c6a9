//! Links libtorch with an rpath (`scripts/torch_rpath.rs`) and builds the C++ that tch does
//! not cover:
//!
//! * `csrc/torch_info.cpp`, libtorch's own build configuration, linked into the crate;
//! * `csrc/cuda_graph.cpp`, libtorch's CUDA graphs, as a shared library of its own,
//!   `libsworn_cuda_graph.so`, which the binary does not link: it is dlopened at run time
//!   on machines where libtorch's CUDA backend loads (`src/engine/cuda_graph/shim.rs`).
//!   It is built where libtorch's CUDA libraries and the CUDA headers are found, and
//!   copied beside the binaries of the profile; elsewhere the build goes on without it,
//!   with a warning, and the engine decodes eagerly.

use std::path::{Path, PathBuf};

include!("../scripts/torch_rpath.rs");

/// The triton wheel whose CUDA headers (`triton/backends/nvidia/include`) the CUDA-graph
/// shim compiles against: the version torch 2.11.0 pins. `scripts/setup.sh` unpacks them
/// into the cache as `triton-<version>-cuda-include/`.
const TRITON_VERSION: &str = "3.6.0";
/// The shim's file name (`shim::SHIM_FILE` on the Rust side).
const SHIM_FILE: &str = "libsworn_cuda_graph.so";

fn main() {
    let libtorch = emit_torch_rpath();
    println!("cargo:rerun-if-changed=csrc/torch_info.cpp");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file("csrc/torch_info.cpp")
        .compile("sworn_torch_info");

    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-env-changed=SWORN_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=SWORN_NO_CUDA_GRAPH_SHIM");
    match build_cuda_graph_shim(&libtorch) {
        Ok(path) => println!("cargo:rustc-env=SWORN_CUDA_GRAPH_SHIM={}", path.display()),
        Err(reason) => {
            let reason = reason.replace(['\n', '\r'], " ");
            println!("cargo:warning=CUDA-graph shim ({SHIM_FILE}) not built: {reason}");
            println!("cargo:rustc-env=SWORN_CUDA_GRAPH_SHIM_SKIPPED={reason}");
        }
    }
}

/// Compiles and links `libsworn_cuda_graph.so` into OUT_DIR (copied beside the profile's
/// binaries too); returns its path, or why it was not built.
fn build_cuda_graph_shim(libtorch: &Path) -> Result<PathBuf, String> {
    if std::env::var_os("SWORN_NO_CUDA_GRAPH_SHIM").is_some() {
        return Err("SWORN_NO_CUDA_GRAPH_SHIM is set".into());
    }
    // The real torch/lib: the link directory holds no CUDA library (scripts/setup.sh).
    let cpu = libtorch.join("lib/libtorch_cpu.so");
    let torch_lib = std::fs::canonicalize(&cpu)
        .map_err(|e| format!("{}: {e}", cpu.display()))?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("libtorch_cpu.so has no directory")?;
    for lib in ["libtorch_cuda.so", "libc10_cuda.so"] {
        if !torch_lib.join(lib).is_file() {
            return Err(format!(
                "{} has no {lib} (a CPU-only libtorch)",
                torch_lib.display()
            ));
        }
    }
    let site = torch_lib
        .parent()
        .and_then(Path::parent)
        .ok_or("torch/lib has no site-packages above it")?;
    // libtorch's CUDA headers call the CUDA runtime inline: the shim links it too.
    let cudart_dir = site.join("nvidia/cu13/lib");
    if !cudart_dir.join("libcudart.so.13").is_file() {
        return Err(format!("no libcudart.so.13 in {}", cudart_dir.display()));
    }
    let cuda_include = cuda_include(libtorch, site)?;
    println!("cargo:rerun-if-changed={}", cuda_include.display());

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let out = out_dir.join(SHIM_FILE);
    let mut command = cc::Build::new().cpp(true).get_compiler().to_command();
    command
        .args([
            "-std=c++17",
            "-D_GLIBCXX_USE_CXX11_ABI=1",
            "-O2",
            "-fPIC",
            "-shared",
        ])
        .arg("-fvisibility=hidden")
        .arg("-I")
        .arg(libtorch.join("include"))
        .arg("-I")
        .arg(libtorch.join("include/torch/csrc/api/include"))
        .arg("-I")
        .arg(&cuda_include)
        .arg("csrc/cuda_graph.cpp")
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", torch_lib.display()))
        .arg(format!("-L{}", cudart_dir.display()))
        .args([
            "-ltorch_cuda",
            "-lc10_cuda",
            "-ltorch_cpu",
            "-lc10",
            "-l:libcudart.so.13",
        ])
        // Every symbol resolved now, against exactly these libraries.
        .args(["-Wl,--no-undefined", "-Wl,--as-needed"])
        .arg(format!("-Wl,-soname,{SHIM_FILE}"))
        .arg(format!(
            "-Wl,-rpath,{}:{}",
            torch_lib.display(),
            cudart_dir.display()
        ));
    let output = command
        .output()
        .map_err(|e| format!("running the C++ compiler: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!(
            "compiling csrc/cuda_graph.cpp failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    // Beside the profile's binaries (OUT_DIR is <profile>/build/<crate>-<hash>/out), where
    // the shim is looked for first and where benches/gpu/build.sh takes it from; copied
    // then renamed, so that a concurrent build (check and test profiles share the
    // directory) never leaves a half-written file there.
    if let Some(profile_dir) = out_dir.ancestors().nth(3)
        && let Err(e) = copy_atomically(&out, &profile_dir.join(SHIM_FILE))
    {
        println!(
            "cargo:warning=copying {SHIM_FILE} to {}: {e}",
            profile_dir.display()
        );
    }
    Ok(out)
}

fn copy_atomically(from: &Path, to: &Path) -> std::io::Result<()> {
    let partial = to.with_extension(format!("so.partial-{}", std::process::id()));
    std::fs::copy(from, &partial)?;
    std::fs::rename(&partial, to).inspect_err(|_| drop(std::fs::remove_file(&partial)))
}

/// The CUDA headers: `SWORN_CUDA_INCLUDE`, else the triton headers setup unpacked into the
/// cache (beside the libtorch link directory), else those of a triton wheel installed
/// beside torch.
fn cuda_include(libtorch: &Path, site: &Path) -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("SWORN_CUDA_INCLUDE") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(cache) = std::fs::canonicalize(libtorch)
        .ok()
        .and_then(|l| Some(l.parent()?.to_path_buf()))
    {
        candidates.push(cache.join(format!("triton-{TRITON_VERSION}-cuda-include")));
    }
    candidates.push(site.join("triton/backends/nvidia/include"));
    let usable = |dir: &Path| {
        dir.join("cuda_runtime_api.h").is_file() && dir.join("crt/host_config.h").is_file()
    };
    candidates
        .iter()
        .find(|d| usable(d))
        .cloned()
        .ok_or_else(|| {
            format!(
                "no CUDA headers (cuda_runtime_api.h and crt/host_config.h) in {}; `make setup` \
             unpacks them from triton=={TRITON_VERSION}, or set SWORN_CUDA_INCLUDE (then \
             `touch service/build.rs`)",
                candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}
