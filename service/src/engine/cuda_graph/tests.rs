//! What can be checked of CUDA graphs without a GPU: the setting, the refusals and
//! fallbacks with their reasons, and the shim library the build produced. (The step that
//! graphs capture is held to the eager step in `engine::model`'s fixed-decode tests.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::shim::{SHIM_FILE, ShimBuild, load_shim, shim_build};
use super::*;
use crate::engine::runner::{DeviceChoice, Engine, EngineError, EngineOptions};
use crate::engine::sampling::SamplingRequest;

fn tiny_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model/tiny-llama")
}

fn cpu_engine(cuda_graphs: CudaGraphs) -> Result<Engine, EngineError> {
    let options = EngineOptions {
        device: DeviceChoice::Cpu,
        slots: 3,
        max_ctx: 64,
        cuda_graphs,
        ..EngineOptions::default()
    };
    Engine::load(&tiny_llama(), &options)
}

#[test]
fn the_setting_is_auto_on_or_off() {
    assert_eq!(CudaGraphs::default(), CudaGraphs::Auto);
    for (text, choice) in [
        ("auto", CudaGraphs::Auto),
        ("on", CudaGraphs::On),
        ("off", CudaGraphs::Off),
    ] {
        assert_eq!(text.parse::<CudaGraphs>(), Ok(choice));
    }
    let err = "yes".parse::<CudaGraphs>().unwrap_err();
    assert!(
        err.contains("auto, on or off") && err.contains("`yes`"),
        "{err}"
    );
}

#[test]
fn buckets_are_the_powers_of_two_below_the_slot_count_then_it() {
    assert_eq!(bucket_sizes(1), [1]);
    assert_eq!(bucket_sizes(2), [1, 2]);
    assert_eq!(bucket_sizes(6), [1, 2, 4, 6]);
    assert_eq!(bucket_sizes(16), [1, 2, 4, 8, 16]);
    assert_eq!(bucket_sizes(256).len(), 9);
    assert!(bucket_sizes(0).is_empty());
}

#[test]
fn graphs_asked_for_on_the_cpu_are_refused_and_auto_decodes_eagerly() {
    let err = cpu_engine(CudaGraphs::On).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CUDA graphs need a CUDA device; the model runs on the CPU"
    );
    assert!(matches!(
        err,
        EngineError::Model(ModelError::Graph(GraphError::NotCuda { .. }))
    ));

    for (choice, reason) in [
        (CudaGraphs::Auto, "the model runs on the CPU"),
        (CudaGraphs::Off, "--cuda-graphs off"),
    ] {
        let mut engine = cpu_engine(choice).unwrap();
        assert_eq!(
            engine.cuda_graphs(),
            &GraphUse::Eager {
                reason: reason.to_owned()
            }
        );
        assert_eq!(
            engine.cuda_graphs().to_string(),
            format!("eager ({reason})")
        );
        // The eager cache: no scratch position, so the recorded size is unchanged.
        assert_eq!(
            engine.info().kv_bytes,
            KvSlots::bytes_needed(engine.config(), 3, 64, tch::Kind::Float).unwrap()
        );
        let params = SamplingRequest {
            max_tokens: Some(4),
            ..Default::default()
        }
        .validate(16)
        .unwrap();
        engine.add(&[5, 6, 7], params).unwrap();
        assert_eq!(engine.step().unwrap().len(), 1, "{choice:?} decodes");
    }
}

#[test]
fn capturing_a_model_on_the_cpu_is_refused_before_anything_loads() {
    let engine = cpu_engine(CudaGraphs::Off).unwrap();
    let mut kv = engine.model().new_kv_slots_for_graphs(2, 16).unwrap();
    let err = DecodeGraphs::capture(engine.model(), &mut kv).unwrap_err();
    assert!(
        matches!(&err, GraphError::NotCuda { device } if device == "cpu"),
        "{err}"
    );
}

#[test]
fn the_shim_loads_only_where_libtorchs_cuda_backend_did() {
    match (load_cuda(), shim_build()) {
        (CudaLoad::Unavailable(_), _) => {
            let err = load_shim().unwrap_err();
            assert!(
                matches!(&err, GraphError::ShimUnavailable { reason } if reason.contains("CUDA backend is not loaded")),
                "{err}"
            );
            assert!(err.to_string().contains(SHIM_FILE), "{err}");
        }
        (CudaLoad::Loaded(_), ShimBuild::Built { .. }) => {
            let shim = load_shim().unwrap();
            assert!(shim.path().ends_with(SHIM_FILE));
        }
        (CudaLoad::Loaded(_), ShimBuild::Skipped { reason }) => {
            assert!(!reason.is_empty());
            assert!(load_shim().is_err());
        }
    }
}

#[test]
fn the_version_report_says_whether_the_shim_was_built() {
    let status = shim_status();
    match shim_build() {
        ShimBuild::Built { .. } => assert!(
            status.starts_with("CUDA-graph shim built")
                || status.starts_with("CUDA-graph shim loaded"),
            "{status}"
        ),
        ShimBuild::Skipped { reason } => {
            assert_eq!(status, format!("CUDA-graph shim not built ({reason})"));
        }
    }
    let report = crate::device::DeviceReport::probe();
    assert!(
        report.cuda_backend.ends_with(&status),
        "{}",
        report.cuda_backend
    );
}

/// The shared library the build produced: it exports the ABI the loader resolves, and
/// every symbol it imports is defined by the libraries it names (libtorch's CUDA and CPU
/// libraries and the CUDA runtime of `make setup`), the system C/C++ runtime aside.
#[test]
fn the_built_shim_exports_its_abi_and_its_imports_resolve_against_libtorch_cuda() {
    let ShimBuild::Built { path } = shim_build() else {
        // Only where the build found no CUDA headers; `make setup` provides them.
        eprintln!("shim not built: {:?}", shim_build());
        return;
    };
    let shim = Path::new(path);
    assert!(shim.is_file(), "{path}");
    let exported = dynamic_symbols(shim, "--defined-only");
    for name in [
        "abi_version",
        "new",
        "free",
        "enter_side_stream",
        "leave_side_stream",
        "capture_begin",
        "capture_end",
        "replay",
        "reset",
        "pool",
    ] {
        let symbol = format!("sworn_cuda_graph_{name}");
        assert!(
            exported.contains(&symbol),
            "{symbol} not exported by {path}"
        );
    }
    // Hidden visibility: the ABI, and only C++'s vague-linkage (mangled) symbols beside.
    assert!(
        exported
            .iter()
            .all(|s| s.starts_with("sworn_cuda_graph_") || s.starts_with("_Z")),
        "{exported:?}"
    );

    let torch_lib = PathBuf::from(env!("SWORN_TORCH_LIB_DIR"));
    let cudart = torch_lib.join("../../nvidia/cu13/lib/libcudart.so.13");
    let mut defined = HashSet::new();
    for lib in [
        torch_lib.join("libtorch_cuda.so"),
        torch_lib.join("libc10_cuda.so"),
        torch_lib.join("libtorch_cpu.so"),
        torch_lib.join("libc10.so"),
        cudart,
    ] {
        defined.extend(dynamic_symbols(&lib, "--defined-only"));
    }
    // The system C and C++ runtimes' symbols carry their version; everything else must
    // come from the libraries above.
    let system = ["GLIBC_", "GLIBCXX_", "CXXABI_", "GCC_"];
    let imports: Vec<(String, String)> = nm_lines(shim, "--undefined-only")
        .into_iter()
        .filter(|(kind, _)| !matches!(kind.as_str(), "w" | "v"))
        .map(|(_, full)| match full.split_once('@') {
            Some((name, version)) => (name.to_owned(), version.trim_start_matches('@').to_owned()),
            None => (full, String::new()),
        })
        .collect();
    assert!(
        imports
            .iter()
            .any(|(name, _)| name == "_ZN2at4cuda9CUDAGraph6replayEv"),
        "the shim calls libtorch's CUDAGraph::replay"
    );
    let unresolved: Vec<&String> = imports
        .iter()
        .filter(|(_, version)| !system.iter().any(|p| version.starts_with(p)))
        .map(|(name, _)| name)
        .filter(|name| !defined.contains(*name))
        .collect();
    assert!(unresolved.is_empty(), "unresolved imports: {unresolved:?}");
}

/// Names (version suffix dropped) of the strong dynamic symbols `nm -D <filter>` lists.
fn dynamic_symbols(lib: &Path, filter: &str) -> HashSet<String> {
    nm_lines(lib, filter)
        .into_iter()
        .filter(|(kind, _)| !matches!(kind.as_str(), "w" | "v"))
        .map(|(_, name)| name.split('@').next().unwrap_or_default().to_owned())
        .collect()
}

fn nm_lines(lib: &Path, filter: &str) -> Vec<(String, String)> {
    let out = Command::new("nm")
        .args(["-D", filter])
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("nm (binutils) is needed: {e}"));
    assert!(out.status.success(), "nm -D {}: {:?}", lib.display(), out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace().rev();
            let name = parts.next()?;
            let kind = parts.next()?;
            Some((kind.to_owned(), name.to_owned()))
        })
        .collect()
}
