// `phasemap analyze RUN.npz [...]`: per-run metric summaries of run files (phasemap's or LIMEN's
// extraction layout), printed and optionally written as JSON.
#include <fmt/core.h>

#include "analysis_cli.hpp"
#include "phasemap/io/run_file.hpp"
#include "cli_util.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct AnalyzeCmd {
    std::vector<std::string> files;
    AnalysisArgs args;
};

int run_analyze(AnalyzeCmd& c) {
    // No --json output may be one of the run files (same file by device and inode).
    if (!c.args.json.empty())
        for (size_t i = 0; i < c.files.size(); ++i) check_output(numbered_path(c.args.json, i, c.files.size()).string(), c.files, "--json");
    for (size_t i = 0; i < c.files.size(); ++i) {
        io::RunData r;
        try {
            r = io::load_run_npz(c.files[i]);
        } catch (const std::exception& e) {
            throw UserError(e.what());
        }
        RunInput in;
        in.label = r.path.filename().string();
        in.states = r.states.data();
        in.tokens = r.tokens;
        in.layers = r.layers;
        in.dim = r.dim;
        in.layer_names = r.layer_names;
        in.stats = r.stats;
        in.ctx.hidden_states_shape = {r.tokens, r.layers, r.dim};
        in.ctx.logits_shape = r.logits_shape;
        in.ctx.source_npz_sha256 = r.sha256;
        in.ctx.token_texts = r.token_texts;
        in.ctx.token_ids = r.token_ids;
        in.routing_experts = std::move(r.routing_experts);
        in.routing_weights = std::move(r.routing_weights);
        in.routing_blocks = r.routing_blocks;
        in.routing_k = r.routing_k;
        in.routing_n_expert = r.routing_n_expert;
        if (r.metadata.is_object()) {
            in.ctx.prompt = r.metadata.value("prompt_text", std::string());
            in.ctx.generated_text = r.metadata.value("generated_text", std::string());
            in.ctx.provenance = r.metadata;
        }
        analyze_and_report(in, c.args, i, c.files.size());
    }
    return 0;
}

Verb reg{"analyze", "Metric summary of run files (NPZ from generate, or LIMEN's extraction layout)", [](CLI::App& app) {
    auto c = std::make_shared<AnalyzeCmd>();
    app.add_option("files", c->files, "run NPZ files")->required();
    c->args.add_options(app, false);
    app.add_flag("-q,--quiet", c->args.quiet, "print nothing (use with --json)");
    app.add_flag("--routing", c->args.require_routing,
                 "MoE routing metrics (docs/metrics-moe.md; computed whenever the file has routing): a run without routing is an error");
    return [c] { return run_analyze(*c); };
}};

}  // namespace
}  // namespace phasemap::cli
