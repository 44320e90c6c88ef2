// The one GGUF-metadata reader (module gguf: the only module besides capture and modelgen that
// uses ggml's gguf API, docs/DESIGN.md). Reads a file's header — key/values and tensor
// descriptions, no tensor data — into plain types, so that modules which may not include gguf.h
// (panel's estimates, …) read a model's facts through it.
//
// Owns: nothing kept; the file is opened and closed inside the call, Metadata is a plain value. Throws:
// std::runtime_error naming the file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace phasemap::gguf {

struct Metadata {
    std::string architecture;     // general.architecture ("" when absent)
    std::string name;             // general.name ("" when absent)
    std::string type;             // general.type ("model", "adapter", … ; "" when absent)
    int64_t n_layer = 0;          // <arch>.block_count (0 when absent)
    int64_t n_embd = 0;           // <arch>.embedding_length (0 when absent)
    int64_t n_ctx_train = 0;      // <arch>.context_length (0 when absent)
    std::vector<std::string> tensors;  // tensor names, in file order
};

// Reads the header of a GGUF file. The sizes it declares are checked against the file before
// anything is sized from them (gguf_size_problem, docs/hardening.md class 3). Throws
// std::runtime_error naming the file: not a readable GGUF file, or the size problem.
Metadata read_metadata(const std::filesystem::path& path);

}  // namespace phasemap::gguf
