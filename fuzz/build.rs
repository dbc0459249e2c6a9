//! Gives the fuzz binaries an rpath to libtorch (`scripts/torch_rpath.rs`, shared with
//! sworn-service's build script), so the targets that link sworn-service start without
//! LD_LIBRARY_PATH. LIBTORCH comes from the repository's `.cargo/config.toml`.

include!("../scripts/torch_rpath.rs");

fn main() {
    emit_torch_rpath();
}
