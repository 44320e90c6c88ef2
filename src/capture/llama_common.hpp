// Internal to src/capture: llama.cpp handles and shared helpers. The only place besides the
// capture .cpp files that includes llama.h.
#pragma once
#include <llama.h>

#include <memory>
#include <mutex>
#include <string>

#include "phasemap/capture.hpp"

namespace phasemap::capture {

struct Model::Impl {
    llama_model* model = nullptr;
    const llama_vocab* vocab = nullptr;
    ~Impl();
};

// Initialises the llama.cpp backend once and routes its log: errors are kept (the last few
// lines are appended to our error messages); everything is printed when PHASEMAP_LLAMA_LOG=1.
void ensure_backend();
std::string take_llama_errors();

}  // namespace phasemap::capture
