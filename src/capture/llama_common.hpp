// Internal to src/capture: llama.cpp handles and shared helpers. The only place besides the
// capture .cpp files that includes llama.h.
#pragma once
#include <optional>
#include <llama.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"

namespace phasemap::capture {

struct Model::Impl {
    llama_model* model = nullptr;
    const llama_vocab* vocab = nullptr;
    // LoRA adapters of this model and their scales (ModelOptions::adapters order); freed before
    // the model.
    std::vector<llama_adapter_lora*> loras;
    std::vector<float> lora_scales;
    bool allow_unverified = false;  // ModelOptions::allow_unverified_architecture
    ~Impl();
};

// The engine's way to the model's handles (Model::Impl is private to Model and this module).
struct ModelAccess {
    using Impl = Model::Impl;
    static Impl& impl(const Model& m) { return *m.impl_; }
};

// Loads `adapters` onto the loaded model `impl.model` (src/capture/lora.cpp): checks each file
// first (exists, GGUF, general.type "adapter", adapter.type "lora", architecture `arch`), then
// hands it to llama_adapter_lora_init. Throws std::runtime_error naming the adapter file.
std::vector<AdapterInfo> load_lora_adapters(ModelAccess::Impl& impl, const std::string& arch, const std::string& model_file,
                                            const std::vector<LoraAdapter>& adapters);

// Initialises the llama.cpp backend once and routes its log: errors are kept (the last few
// lines are appended to our error messages); everything is printed when PHASEMAP_LLAMA_LOG=1.
void ensure_backend();

// Why the capture point `kind` (resid_mid, attn_out or ffn_out) is refused for `arch`, or
// nullptr (src/capture/components.cpp, settled by the architecture sweep).
const char* component_refusal(const std::string& arch, const std::string& kind);
std::string take_llama_errors();
// The whole number in environment variable `name` within [lo, hi]; nullopt when it is unset or
// empty. Throws std::invalid_argument naming the variable and its range otherwise.
std::optional<long> env_whole_number(const char* name, long lo, long hi, const char* range_words);
// The collected error lines as llama.cpp wrote them (cleared).
std::string take_llama_errors_raw();

}  // namespace phasemap::capture
