// Analysis of a recorded run into results-DB rows (include/phasemap/panel/run_analysis.hpp),
// extracted from the panel runner's commit so that `serve --db` stores runs the same way.
#include "phasemap/panel/run_analysis.hpp"

#include <cmath>

#include "phasemap/metrics/layer_axis.hpp"
#include "phasemap/metrics/routing.hpp"
#include "phasemap/metrics/token_axis.hpp"

namespace phasemap::panel {

namespace {

// MoE routing metrics of the run (docs/metrics-moe.md) into its summary.
void attach_routing(const capture::RunRecord& r, metrics::RunSummary& s) {
    const capture::RoutingLayout& lay = r.start.routing;
    std::vector<int32_t> ex;
    std::vector<float> w;
    for (const auto& t : r.tokens) {
        ex.insert(ex.end(), t.experts.begin(), t.experts.end());
        w.insert(w.end(), t.expert_weights.begin(), t.expert_weights.end());
    }
    try {
        s.routing = metrics::routing_metrics({ex.data(), w.data(), r.tokens.size(), lay.blocks.size(), size_t(lay.n_expert_used),
                                              size_t(lay.n_expert), lay.blocks});
        s.routing_missing_reason.clear();
    } catch (const metrics::MetricError& e) {
        s.routing_missing_reason = e.what();
    }
}

}  // namespace

std::vector<std::string> analysed_layer_names(const std::vector<std::string>& captured, bool include_embedding) {
    std::vector<std::string> names = captured;
    if (metrics::drops_embedding(captured, include_embedding)) names.erase(names.begin());
    return names;
}

metrics::RunSummary analyse_recorded_run(const capture::RunRecord& r, const std::vector<std::string>& captured, bool include_embedding,
                                         const metrics::AnalysisOptions& opt) {
    const size_t T = r.tokens.size(), L = r.start.layers.size(), d = size_t(r.start.n_embd);
    // A view that skips hf:0 over the captured data (no copy).
    const std::vector<std::string> names = analysed_layer_names(captured, include_embedding);
    metrics::StatesView view = metrics::StatesView{r.states.data(), T, L, d, captured}.analysed(include_embedding);
    view.layer_names = names;
    std::vector<metrics::TokenProbStats> stats;
    for (const auto& t : r.tokens) stats.push_back(t.stats);
    metrics::RunSummary s;
    if (T == 0) {
        s.options = opt;
        const std::string why = "the run has no generated tokens";
        s.token.ratio_norm = metrics::Value::missing(why);
        s.token.late_ct = metrics::Value::missing(why);
        s.layer.missing_reason = why;
        s.output_missing_reason = why;
    } else {
        s = metrics::analyze_run(view, stats, opt);
    }
    if (!r.start.routing.blocks.empty()) attach_routing(r, s);
    return s;
}

store::ModelRow model_row(const std::string& label, const capture::ModelInfo& info) {
    store::ModelRow row;
    row.label = label;
    row.path = info.path.string();
    row.sha256 = info.sha256;
    row.architecture = info.architecture;
    row.gguf_architecture = info.architecture;
    row.description = info.description;
    row.n_layer = info.n_layer;
    row.n_embd = info.n_embd;
    row.n_vocab = info.n_vocab;
    row.n_params = info.n_params;
    return row;
}

store::RunRow run_row(const capture::RunRecord& r, const capture::EngineFacts& facts, const std::string& layers) {
    store::RunRow row;
    row.prompt_text = r.start.prompt_text;
    row.layers = layers;
    row.precision = facts.precision;
    row.n_ctx = facts.n_ctx;
    row.output_stats = r.start.output_stats;
    row.n_generated = r.end.n_generated;
    row.stop_reason = r.end.stop_reason;
    row.text = r.end.text;
    return row;
}

std::vector<store::TokenData> token_rows(const capture::RunRecord& r) {
    std::vector<store::TokenData> toks;
    for (const auto& t : r.tokens) toks.push_back({t.id, t.text, t.position});
    return toks;
}

std::vector<store::LayerTokenData> layer_token_series(const capture::RunRecord& r, const std::vector<std::string>& captured,
                                                      const metrics::TokenAxisOptions& topt) {
    const size_t T = r.tokens.size(), L = r.start.layers.size(), d = size_t(r.start.n_embd);
    std::vector<store::LayerTokenData> out;
    if (T == 0) return out;
    for (size_t l = 0; l < L && l < captured.size(); ++l) {
        store::LayerTokenData ld;
        ld.layer = captured[l];
        ld.delta_t.assign(T, std::nan(""));
        ld.curvature_t.assign(T, std::nan(""));
        ld.ct_t.assign(T, std::nan(""));
        const metrics::TokenAxisResult ta = metrics::token_axis({r.states.data() + l * d, T, d, L * d}, topt);
        for (size_t i = 0; i < ta.series.delta.size() && i + 1 < T; ++i) ld.delta_t[i + 1] = ta.series.delta[i];
        for (size_t i = 0; i < ta.series.curvature.size() && i + 2 < T; ++i) ld.curvature_t[i + 2] = ta.series.curvature[i];
        for (size_t i = 0; i < ta.series.ct.size() && i + 2 < T; ++i) ld.ct_t[i + 2] = ta.series.ct[i];
        ld.speed.assign(T, std::nan(""));
        ld.turning_angle_rad.assign(T, std::nan(""));
        out.push_back(std::move(ld));
    }
    // Layer axis resolved per layer, on the states as captured (like §3 in the analysis).
    for (size_t t = 0; t < T; ++t) {
        const metrics::LayerSteps st = metrics::layer_steps({r.states.data() + t * L * d, out.size(), d});
        for (size_t l = 0; l < out.size(); ++l) {
            out[l].speed[t] = st.speed[l];
            out[l].turning_angle_rad[t] = st.turning_angle[l];
        }
    }
    return out;
}

}  // namespace phasemap::panel
