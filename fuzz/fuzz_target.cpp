// libFuzzer entry point; PM_FUZZ_TARGET names the harness (fuzz/CMakeLists.txt builds one
// executable per target).
#include <cstddef>
#include <cstdint>

#include "harness.hpp"

#ifndef PM_FUZZ_TARGET
#error "define PM_FUZZ_TARGET to a pmfuzz harness, e.g. fuzz_npy"
#endif

#ifdef PM_FUZZ_CVEC
#include <ggml.h>

// ggml logs every rejected GGUF to stderr (90 MB of build-fuzz/control_vector.log a minute):
// silence its logger; crash reports (sanitizers, GGML_ABORT's message) still reach stderr.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    ggml_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    return 0;
}
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return pmfuzz::PM_FUZZ_TARGET(data, size); }
