// `phasemap panel plan`: the expanded grid's size and an estimate of tokens and disk.
//
// Owns: nothing kept; plan_panel reads each model file's GGUF header (gguf/metadata.hpp) and closes it;
// results are plain values. Throws: std::runtime_error naming the model file that cannot be read.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "phasemap/panel/manifest.hpp"

namespace phasemap::panel {

struct ModelPlan {
    std::string label;
    std::string architecture;       // general.architecture from the file
    int64_t n_layer = 0, n_embd = 0;
    int64_t captured_layers = 0;    // rows of [L', d] per token for the model's layer spec
    int64_t generations = 0;        // sequences generated (norms share one generation)
    int64_t runs = 0;               // run rows
    int64_t max_tokens = 0;         // sum of the token budgets
};

struct PlanEstimate {
    std::vector<ModelPlan> models;
    int64_t runs = 0, generations = 0, max_tokens = 0, prompts = 0;
    int64_t db_bytes = 0;           // results DB (run and token rows), upper bound
    int64_t states_bytes = 0;       // NPZ raw states when save_states, upper bound
};

// Reads each model's GGUF header (no weights) and multiplies out the grid.
PlanEstimate plan_panel(const Manifest& m);
std::string format_plan(const Manifest& m, const PlanEstimate& p);
// Design warnings (docs/audit.md, "Dependence"): seeds crossed with temperature 0 (greedy decoding
// ignores the seed, so the seeds repeat one generation) and several token budgets at temperature 0
// (the shorter budgets are prefixes of the longest one). One line per warning; format_plan prints them.
std::vector<std::string> design_warnings(const Manifest& m);

}  // namespace phasemap::panel
