// What tch does not expose: libtorch's own build configuration, read from the library at
// run time (not from headers), so `sworn --version` reports the libtorch actually loaded.
#include <ATen/Version.h>

#include <cstring>
#include <string>

extern "C" {

// Copies at::show_config() into buf (NUL-terminated, truncated to len - 1 bytes).
// Returns the full length, or -1 if libtorch threw.
long sworn_torch_show_config(char* buf, unsigned long len) {
    try {
        std::string s = at::show_config();
        if (len > 0) {
            unsigned long n = s.size() < len - 1 ? s.size() : len - 1;
            std::memcpy(buf, s.data(), n);
            buf[n] = '\0';
        }
        return static_cast<long>(s.size());
    } catch (...) {
        return -1;
    }
}

}
