// llama.cpp-compatible control vectors (the GGUF files `llama-cli --control-vector` reads): the
// type and its GGUF I/O live in capture, beside the engine that applies them (cvec.cpp, ggml's gguf
// API); steer builds them (steer/vectors.hpp) and re-exports the names (steer/control_vector.hpp).
// A ControlVector is a plain value (it owns its directions; nothing refers into a file).
//
// File format (as read by common_control_vector_load in llama.cpp's common/common.cpp and
// written by repeng / llama.cpp's cvector-generator):
//   * tensors `direction.N`, N ≥ 1, each 1-d F32 of n_embd values; direction.N is added to the
//     output of block N (graph tensor l_out-N) at every position. There is never a direction.0.
//   * metadata general.architecture = "controlvector", controlvector.model_hint = the model's
//     architecture, controlvector.layer_count = number of direction tensors (the loader ignores
//     these keys; phasemap checks model_hint).
//   * phasemap adds phasemap.n_embd, phasemap.n_layer, phasemap.model_sha256, phasemap.method and
//     phasemap.layers (block indices) to recognise a vector built for another model.
//
// Lifetimes: everything here is a plain value; reading a file keeps no handle on it. Throws: as stated per
// function (std::runtime_error for files, std::invalid_argument for a mismatch).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace phasemap::capture {

struct ControlVector {
    int n_embd = 0;
    std::map<int, std::vector<float>> directions;  // block N (≥ 1) → n_embd values
    std::string model_hint;                        // architecture ("" when the file has none)
    int model_n_layer = 0;                         // phasemap.n_layer (0 when absent)
    std::string model_sha256;                      // phasemap.model_sha256 ("" when absent)
    std::string method;                            // phasemap.method ("" when absent)

    // Data in the layout llama_set_adapter_cvec expects: n_embd × max N floats, block 1 first,
    // each direction multiplied by `scale`; blocks without a direction are zero.
    std::vector<float> flat(float scale) const;
};

// Reads a control-vector GGUF. Throws std::runtime_error with a clear message (missing file,
// not GGUF, no direction tensor, bad name/type/shape, mismatched dimensions).
ControlVector read_control_vector(const std::filesystem::path& path);
// Writes one (atomically: temporary file + rename).
void write_control_vector(const ControlVector& cv, const std::filesystem::path& path);

// Checks a control vector against a model (architecture, n_layer, n_embd): throws
// std::invalid_argument naming the mismatch (e.g. a vector built for another model, a direction
// for a block the model does not have, or direction.0).
void check_control_vector(const ControlVector& cv, const std::string& architecture, int n_layer, int n_embd);

}  // namespace phasemap::capture
