// Metric options on the command line and the printed / JSON per-run summary, shared by
// `phasemap analyze` and `phasemap generate --analyze`.
#pragma once
#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/io/summary_json.hpp"

namespace phasemap::cli {

struct AnalysisArgs {
    bool enabled = false;               // generate --analyze
    // The metric options (--metric-layer, --norm, …; metrics::AnalysisSettings, parsed by
    // metrics::analysis_options); --regime-cuts may be @FILE here, read by build_options.
    metrics::AnalysisSettings settings;
    bool no_layer_axis = false;         // --no-layer-axis (settings.layer_axis = false)
    bool include_embedding = false;
    std::string json;                   // output path ({i} or .N inserted for several runs)
    bool tokens = false;                // print the per-token table
    bool quiet = false;
    bool require_routing = false;       // analyze --routing: a run without MoE routing is an error

    void add_options(CLI::App& app, bool with_enable_flag);
};

// One run to analyse: states [T, L', d] with layer names, per-token stats (may be empty).
struct RunInput {
    std::string label;                  // shown in the header (file name or run index)
    const float* states = nullptr;
    size_t tokens = 0, layers = 0, dim = 0;
    std::vector<std::string> layer_names;
    std::vector<metrics::TokenProbStats> stats;
    io::SummaryContext ctx;
    // MoE routing [T, M, k] (empty routing_blocks: none).
    std::vector<int32_t> routing_experts;
    std::vector<float> routing_weights;
    std::vector<int> routing_blocks;
    size_t routing_k = 0, routing_n_expert = 0;
};

// Analyses, prints (unless quiet) and writes the JSON (when asked). Returns the JSON summary.
// Throws UserError for invalid options.
nlohmann::json analyze_and_report(const RunInput& in, const AnalysisArgs& a, size_t run_index, size_t n_runs);

// Output path of run i of n (one run: the path itself; else {i} replaced or .i before the extension).
std::filesystem::path numbered_path(const std::string& path, size_t i, size_t n);

}  // namespace phasemap::cli
