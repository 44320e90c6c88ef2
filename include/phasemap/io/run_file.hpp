// Reading a run for analysis: NPZ files written by `phasemap generate` and NPZ files in LIMEN's
// extraction layout (hidden_states [T, L, d], optional logits [T, V], token_ids [T]; float32 or
// float16 arrays, int32/int64 ids, stored or deflated members).
//
// Owns: RunData owns every array it read (nothing refers into the file after the call). Throws:
// std::runtime_error naming the file and the problem.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "phasemap/metrics/token_stats.hpp"

namespace phasemap::io {

struct RunData {
    std::filesystem::path path;
    std::string sha256;                       // of the NPZ file
    size_t tokens = 0, layers = 0, dim = 0;
    std::vector<float> states;                // [T, L, d]
    std::vector<std::string> layer_names;     // from metadata, else "layer[i]"
    std::vector<metrics::TokenProbStats> stats;  // stored per-token stats, or computed from logits; empty if neither
    std::string stats_source;                 // "stored", "logits" or "" (none)
    std::vector<size_t> logits_shape;         // empty when the file has no logits
    std::vector<int64_t> token_ids;           // empty when absent
    std::vector<std::string> token_texts;     // from metadata when present
    nlohmann::json metadata;                  // phasemap metadata.json, or null
    bool phasemap_layout = false;             // written by phasemap generate
    // MoE routing (generate --routing): [T, M, k] experts and weights of the M MoE blocks listed
    // in metadata "routing" (blocks, n_expert); routing_blocks empty when the file has none.
    std::vector<int32_t> routing_experts;
    std::vector<float> routing_weights;
    std::vector<int> routing_blocks;
    size_t routing_k = 0, routing_n_expert = 0;
};

// Throws std::runtime_error with a message naming the file and the problem: missing file,
// not a zip, truncated, no hidden_states, wrong rank, mismatched lengths, bad dtype, routing
// members without their metadata or of other shapes than [T, M, k].
RunData load_run_npz(const std::filesystem::path& path);

// sha256 of a file as lowercase hex.
std::string file_sha256(const std::filesystem::path& path);
// sha256 of a byte string as lowercase hex.
std::string sha256_hex(std::string_view data);
// Lowercase hex of a digest.
std::string hex_digest(const unsigned char* md, unsigned int n);

}  // namespace phasemap::io
