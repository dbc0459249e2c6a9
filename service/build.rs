//! Links libtorch with an rpath (`scripts/torch_rpath.rs`) and builds the small C++ shim in
//! `csrc/` for what tch does not expose, such as libtorch's own build configuration.

include!("../scripts/torch_rpath.rs");

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
}
