// libFuzzer entry point; PM_FUZZ_TARGET names the harness (fuzz/CMakeLists.txt builds one
// executable per target).
#include <cstddef>
#include <cstdint>

#include "harness.hpp"

#ifndef PM_FUZZ_TARGET
#error "define PM_FUZZ_TARGET to a pmfuzz harness, e.g. fuzz_npy"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return pmfuzz::PM_FUZZ_TARGET(data, size); }
