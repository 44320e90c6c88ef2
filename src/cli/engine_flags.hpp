// --output-stats, bound once for every verb that decodes with the engine (generate, serve,
// panel run): the same values, validator and help in each, parsed by capture::parse_output_stats.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

#include "options.hpp"

namespace phasemap::cli {

inline void bind_output_stats(CLI::App& app, std::string& value) {
    app.add_option("--output-stats", value,
                   "where entropy/top1/margin/surprisal are computed: graph (ggml ops in llama.cpp's graph, a few floats per greedy "
                   "sequence leave it; sampled sequences use host), host (float64 over the full logits row, the reference) or auto "
                   "(graph on an accelerator, host on the CPU backend)")
        ->capture_default_str()->check(one_of({"auto", "graph", "host"}));
}

}  // namespace phasemap::cli
