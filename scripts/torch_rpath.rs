// Shared by the build scripts of every crate that links libtorch (`include!`d).
//
// Sets an rpath to the real `torch/lib` of the PyPI torch wheel that `make setup`
// installed, so binaries and tests run without LD_LIBRARY_PATH, and exports that
// directory as SWORN_TORCH_LIB_DIR so start-up can dlopen libtorch_cuda.so from it.

/// Emits the rpath and SWORN_TORCH_LIB_DIR; returns the LIBTORCH directory.
fn emit_torch_rpath() -> std::path::PathBuf {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        panic!("LIBTORCH is not set: run `make setup` (it installs libtorch and links .libtorch)")
    };
    let libtorch = std::path::PathBuf::from(libtorch);
    let cpu = libtorch.join("lib/libtorch_cpu.so");
    let real = match std::fs::canonicalize(&cpu) {
        Ok(real) => real,
        Err(e) => panic!("{} not found ({e}): run `make setup`", cpu.display()),
    };
    let Some(dir) = real.parent() else {
        panic!("{} has no parent directory", real.display())
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rustc-env=SWORN_TORCH_LIB_DIR={}", dir.display());
    libtorch
}
