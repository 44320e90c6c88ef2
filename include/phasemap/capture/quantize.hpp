// Quantised variants of a model through libllama's own quantisation (llama_model_quantize), so a
// panel can hold F16 / Q8_0 / Q4_K_M … variants of one model. Declared here, implemented in
// src/capture/quantize.cpp (the only code that includes llama.h is src/capture).
//
// Owns: nothing kept after the call. Throws: as stated below.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace phasemap::capture {

// Target types, by llama.cpp's names: F16 BF16 Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S
// Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K (the importance-matrix types IQ* are not offered).
std::vector<std::string> quantize_type_names();

struct QuantizeResult {
    std::uintmax_t in_bytes = 0, out_bytes = 0;
    std::string type;   // canonical name
};

// Quantises `in` (a GGUF model) to `out` with type `type` (case-insensitive). Writes a temporary
// file next to `out` and renames it into place, so `out` is complete or absent. Throws
// std::invalid_argument for an unknown type or out == in, std::runtime_error when the input
// is missing / not GGUF, the output directory is not writable, or llama.cpp fails (its message
// is included). n_threads 0 = all.
QuantizeResult quantize_model(const std::filesystem::path& in, const std::filesystem::path& out, const std::string& type,
                              int n_threads = 0);

}  // namespace phasemap::capture
