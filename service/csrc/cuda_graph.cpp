// The CUDA-graph shim: libtorch's `at::cuda::CUDAGraph` behind a small C ABI.
//
// Built by service/build.rs as its own shared library, libsworn_cuda_graph.so, linked
// against libtorch_cuda/libc10_cuda; the `sworn` binary never links it. At start-up
// service/src/engine/cuda_graph/shim.rs dlopens it, and only after libtorch_cuda.so
// loaded (service/src/device.rs), so a CPU-only machine never needs the CUDA libraries.
//
// A capture goes: enter_side_stream (device synchronised, then a stream from libtorch's
// pool made current by a CUDAStreamGuard: graphs cannot be captured on the default
// stream) -> the caller's warm-up runs -> capture_begin -> the caller's forward pass, whose
// libtorch calls all go to the current stream -> capture_end (which instantiates the
// graph) -> leave_side_stream (the previous stream restored, device synchronised).
// replay() then launches the whole graph on the caller's current stream.
//
// Every function returns 0 on success, or -1 with a NUL-terminated message in `err`
// (truncated to `err_len`); no C++ exception crosses the boundary.

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#define SWORN_EXPORT extern "C" __attribute__((visibility("default")))

// Bumped whenever a signature below changes; the loader refuses any other value.
static constexpr uint32_t kAbiVersion = 1;

struct SwornCudaGraph {
    c10::DeviceIndex device;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    std::optional<c10::cuda::CUDAStreamGuard> side_stream;
};

namespace {

void write_error(char* err, size_t err_len, const char* what) {
    if (err == nullptr || err_len == 0) {
        return;
    }
    size_t n = std::strlen(what);
    if (n > err_len - 1) {
        n = err_len - 1;
    }
    std::memcpy(err, what, n);
    err[n] = '\0';
}

template <typename F>
int guarded(char* err, size_t err_len, F&& body) {
    try {
        body();
        return 0;
    } catch (const std::exception& e) {
        write_error(err, err_len, e.what());
    } catch (...) {
        write_error(err, err_len, "unknown C++ exception");
    }
    return -1;
}

}  // namespace

SWORN_EXPORT uint32_t sworn_cuda_graph_abi_version(void) { return kAbiVersion; }

// A new, empty graph for `device`.
SWORN_EXPORT int sworn_cuda_graph_new(int device, SwornCudaGraph** out, char* err,
                                      size_t err_len) {
    return guarded(err, err_len, [&] {
        auto index = static_cast<c10::DeviceIndex>(device);
        // The graph remembers the current stream of its device at construction.
        c10::cuda::CUDAGuard on_device(index);
        auto g = std::make_unique<SwornCudaGraph>();
        g->device = index;
        g->graph = std::make_unique<at::cuda::CUDAGraph>();
        *out = g.release();
    });
}

// Frees the graph (and its executable); leaves the side stream first if still in it.
SWORN_EXPORT void sworn_cuda_graph_free(SwornCudaGraph* g) {
    if (g == nullptr) {
        return;
    }
    try {
        g->side_stream.reset();
        g->graph.reset();
    } catch (...) {
        // Destructors of libtorch objects do not throw in practice; never unwind into Rust.
    }
    delete g;
}

// Makes a pool stream current (after synchronising the device, so that it sees every
// earlier write, such as the weights and the KV cache), for warm-up and capture.
SWORN_EXPORT int sworn_cuda_graph_enter_side_stream(SwornCudaGraph* g, char* err,
                                                    size_t err_len) {
    return guarded(err, err_len, [&] {
        if (g->side_stream.has_value()) {
            throw std::runtime_error("already on the side stream");
        }
        c10::cuda::CUDAGuard on_device(g->device);
        c10::cuda::device_synchronize();
        g->side_stream.emplace(c10::cuda::getStreamFromPool(false, g->device));
    });
}

// Restores the stream that was current before, then synchronises the device.
SWORN_EXPORT int sworn_cuda_graph_leave_side_stream(SwornCudaGraph* g, char* err,
                                                    size_t err_len) {
    return guarded(err, err_len, [&] {
        if (!g->side_stream.has_value()) {
            throw std::runtime_error("not on the side stream");
        }
        g->side_stream.reset();
        c10::cuda::CUDAGuard on_device(g->device);
        c10::cuda::device_synchronize();
    });
}

// Starts capturing the current (side) stream. Allocations during capture come from the
// memory pool (pool_a, pool_b); {0, 0} gives the graph a private pool. Thread-local mode:
// CUDA calls that other threads of the process make meanwhile are neither captured nor
// refused.
SWORN_EXPORT int sworn_cuda_graph_capture_begin(SwornCudaGraph* g, uint64_t pool_a,
                                                uint64_t pool_b, char* err, size_t err_len) {
    return guarded(err, err_len, [&] {
        if (!g->side_stream.has_value()) {
            throw std::runtime_error("capture must start on the side stream");
        }
        at::cuda::MempoolId_t pool{static_cast<c10::CaptureId_t>(pool_a),
                                   static_cast<c10::CaptureId_t>(pool_b)};
        g->graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
    });
}

// Ends the capture and instantiates the graph.
SWORN_EXPORT int sworn_cuda_graph_capture_end(SwornCudaGraph* g, char* err, size_t err_len) {
    return guarded(err, err_len, [&] { g->graph->capture_end(); });
}

// Launches the captured work on the current stream of the graph's device.
SWORN_EXPORT int sworn_cuda_graph_replay(SwornCudaGraph* g, char* err, size_t err_len) {
    return guarded(err, err_len, [&] {
        c10::cuda::CUDAGuard on_device(g->device);
        g->graph->replay();
    });
}

// Drops the captured graph and its executable (the graph can be captured again).
SWORN_EXPORT int sworn_cuda_graph_reset(SwornCudaGraph* g, char* err, size_t err_len) {
    return guarded(err, err_len, [&] { g->graph->reset(); });
}

// The memory pool this graph captured into, for later captures to share.
SWORN_EXPORT int sworn_cuda_graph_pool(SwornCudaGraph* g, uint64_t* pool_a, uint64_t* pool_b,
                                       char* err, size_t err_len) {
    return guarded(err, err_len, [&] {
        at::cuda::MempoolId_t pool = g->graph->pool();
        *pool_a = static_cast<uint64_t>(pool.first);
        *pool_b = static_cast<uint64_t>(pool.second);
    });
}
