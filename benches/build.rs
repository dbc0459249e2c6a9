//! The engine benches link libtorch (through `sworn-service`): set its rpath so they run
//! without LD_LIBRARY_PATH.

include!("../scripts/torch_rpath.rs");

fn main() {
    emit_torch_rpath();
}
