#include "analysis_cli.hpp"
#include "cli_util.hpp"

#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "phasemap/metrics/registry.hpp"
#include "phasemap/io/npz.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {

using namespace phasemap::metrics;
namespace fs = std::filesystem;

void AnalysisArgs::add_options(CLI::App& app, bool with_enable_flag) {
    const std::string g = "Analysis (METRICS.md)";
    if (with_enable_flag) app.add_flag("--analyze", enabled, "print the per-run metric summary after generation")->group(g);
    app.add_option("--metric-layer", settings.layer, "captured layer of the token axis: a label (hf:5, block:3) or an index (-1 = last)")->group(g);
    app.add_option("--norm", settings.norm, "state normalisation: raw or clipped_mad")->capture_default_str()->check(one_of({"raw", "clipped_mad"}))->group(g);
    app.add_option("--mad-k", settings.mad_k, "clip bound k of clipped_mad")->capture_default_str()->check(in({0, 1e6, true}))->group(g);
    app.add_option("--curvature", settings.curvature, "one_minus_cos, angle or second_diff")->capture_default_str()->check(one_of({"one_minus_cos", "angle", "second_diff"}))->group(g);
    app.add_flag("--ct-clip", settings.ct_clip, "clip ct above median + k·1.4826·MAD before ratio_norm")->group(g);
    app.add_option("--ct-clip-k", settings.ct_clip_k, "k of --ct-clip")->capture_default_str()->check(in({0, 1e6, true}))->group(g);
    app.add_option("--late-window", settings.late_window, "late_ct window fraction of the ct series")->capture_default_str()->check(in({0, 1, true}))->group(g);
    app.add_option("--collapse-threshold", settings.collapse_threshold, "collapse = late_ct below this")->capture_default_str()->check(in({-1e6, 1e6}))->group(g);
    app.add_option("--regime-cuts", settings.regime_cuts, "three ascending ratio_norm cut-points a,b,c, or @FILE holding them (default 1.985,2.945,3.695)")->group(g);
    app.add_flag("--no-layer-axis", no_layer_axis, "skip the layer-axis metrics")->group(g);
    app.add_option("--collapse-top1", settings.collapse_top1, "COLLAPSE: top1 ≥ this")->capture_default_str()->check(in(opt::kProbability))->group(g);
    app.add_option("--rivalry-margin", settings.rivalry_margin, "RIVALRY: margin ≤ this")->capture_default_str()->check(in(opt::kProbability))->group(g);
    app.add_option("--diffuse-entropy", settings.diffuse_entropy, "DIFFUSE: entropy ≥ this (nats)")->capture_default_str()->check(in(opt::kEntropy))->group(g);
    app.add_option("--shuffles", settings.shuffles, "K shuffled-order controls (0 = off)")->capture_default_str()->check(in(opt::kShuffles))->group(g);
    app.add_option("--control-seed", settings.control_seed, "seed of the shuffled-order controls")->capture_default_str()->group(g);
    app.add_flag("--include-embedding", include_embedding, "keep hf:0 (embedding output) in the analysis; LIMEN excludes it")->group(g);
    app.add_option("--json", json, "write the summary JSON here (several runs: {i} in the name, or NAME.N.json)")->check(kPath)->group(g);
    app.add_flag("--tokens", tokens, "print the per-token table (ct_t, delta_t, curvature_t, stats, state)")->group(g);
}

fs::path numbered_path(const std::string& out, size_t i, size_t n) {
    if (n == 1) return out;
    const size_t brace = out.find("{i}");
    if (brace != std::string::npos) return out.substr(0, brace) + std::to_string(i) + out.substr(brace + 3);
    fs::path p(out);
    return p.parent_path() / (p.stem().string() + "." + std::to_string(i) + p.extension().string());
}

namespace {

// The flags' settings through the metric library's one parser (metrics::analysis_options);
// --regime-cuts @FILE is read here.
AnalysisOptions build_options(const AnalysisArgs& a, std::span<const std::string> names) {
    AnalysisSettings st = a.settings;
    st.layer_axis = !a.no_layer_axis;
    try {
        if (!st.regime_cuts.empty() && st.regime_cuts[0] == '@') {
            std::string text = read_text_file(st.regime_cuts.substr(1), "regime cut-point file");
            while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
            st.regime_cuts = text;
        }
        return analysis_options(st, names);
    } catch (const MetricError& e) {
        throw UserError(e.what());
    }
}

std::string fmt_value(const Value& v, int prec = 4) {
    return v.ok() ? fmt::format("{:.{}f}", v.v, prec) : "n/a (" + v.missing_reason + ")";
}

std::string fmt_summary(const Summary& s) {
    if (!s.median.ok()) return "n/a";
    return fmt::format("{:.4g} [{:.4g}, {:.4g}]", s.median.v, s.q1.v, s.q3.v);
}


void print_summary(const RunSummary& s, const RunInput& in) {
    fmt::print("── {} — T={} tokens, {} layers ({} … {}), d={}\n", in.label, s.tokens, s.layers,
               in.layer_names.empty() ? "" : in.layer_names.front(), in.layer_names.empty() ? "" : in.layer_names.back(), s.dim);
    if (!in.ctx.prompt.empty() || !in.ctx.generated_text.empty())
        fmt::print("text: {}\n", printable(in.ctx.prompt + in.ctx.generated_text));
    std::string regime = "n/a";
    if (s.token.regime) regime = std::string(to_string(*s.token.regime));
    fmt::print("token axis ({}, {}, norm {}{}):\n", s.layer_name, to_string(s.options.token.curvature), to_string(s.options.token.norm),
               s.options.token.ct_clip ? ", ct_clip" : "");
    fmt::print("  ratio_norm {}  regime {}\n", fmt_value(s.token.ratio_norm), regime);
    fmt::print("  late_ct {}  collapse {}\n", fmt_value(s.token.late_ct, 6),
               s.token.collapse ? (*s.token.collapse ? "yes" : "no") : "n/a");
    if (!s.layer.missing_reason.empty()) {
        fmt::print("layer axis: n/a ({})\n", s.layer.missing_reason);
    } else {
        fmt::print("layer axis (median [q1, q3] over tokens):\n");
        for (size_t m = 0; m < kLayerMetricCount; ++m)
            fmt::print("  {:<24} {}\n", kLayerMetricNames[m], fmt_summary(s.layer.summary[m]));
        if (!s.layer.token_errors.empty())
            fmt::print("  {} token(s) dropped: {} (first: t={})\n", s.layer.token_errors.size(), s.layer.token_errors.front().second,
                       s.layer.token_errors.front().first);
    }
    if (s.output) {
        const auto& o = *s.output;
        fmt::print("output states: ");
        for (size_t k = 0; k < kOutputStateCount; ++k)
            fmt::print("{} {:.1f}%  ", to_string(kOutputStates[k]), std::isfinite(o.rates[k]) ? 100.0 * o.rates[k] : 0.0);
        fmt::print("\n  collapse episodes {}  exit_rate {}  reopening_rate {}\n", o.episodes.size(), fmt_value(o.exit_rate, 3),
                   fmt_value(o.reopening_rate, 3));
        fmt::print("probability baselines: entropy {}  top1 {}  margin {}\n", fmt_summary(s.baselines.entropy),
                   fmt_summary(s.baselines.top1), fmt_summary(s.baselines.margin));
    } else {
        fmt::print("output states: n/a ({})\n", s.output_missing_reason);
    }
    if (s.token_control) {
        const auto& c = *s.token_control;
        fmt::print("control (token order, K={}): ratio_norm {} vs shuffled mean {}  p = {}\n", c.shuffles, fmt_value(c.real),
                   fmt_value(c.mean), fmt_value(c.p_value, 4));
    }
    if (s.layer_control) {
        fmt::print("control (layer order, K={}):", s.options.controls.shuffles);
        for (const auto& c : *s.layer_control) fmt::print(" {} p={}", c.metric, fmt_value(c.p_value, 3));
        fmt::print("\n");
    } else if (!s.controls_missing_reason.empty() && s.options.controls.shuffles > 0) {
        fmt::print("controls: n/a ({})\n", s.controls_missing_reason);
    }
    if (s.routing) {
        const RoutingResult& r = *s.routing;
        Summary h = summarize(r.entropy);
        fmt::print("routing ({} MoE blocks, {} of {} experts): entropy {} nats  switch rate {}  load entropy {}  imbalance {}\n",
                   r.blocks, r.k, r.n_expert, fmt_summary(h), fmt_value(r.switch_rate, 3), fmt_value(r.load_entropy, 3),
                   fmt_value(r.load_imbalance, 3));
        fmt::print("  adjacent blocks: top-1 NMI {}  switch agreement {}\n", fmt_value(r.top1_nmi, 3), fmt_value(r.switch_agreement, 3));
    }
}

void print_tokens(const RunSummary& s, const RunInput& in) {
    const auto* ct = find_metric("ct_t");
    const auto* dl = find_metric("delta_t");
    const auto* cv = find_metric("curvature_t");
    const auto* st = find_metric("output_state");
    const auto vct = ct->per_token(s), vdl = dl->per_token(s), vcv = cv->per_token(s);
    const auto vst = st->per_token_label(s);
    fmt::print("{:>4}  {:<16} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7}  {}\n", "t", "token", "delta_t", "curv_t", "ct_t", "entropy",
               "top1", "margin", "state");
    auto f = [](double v) { return std::isfinite(v) ? fmt::format("{:9.5f}", v) : fmt::format("{:>9}", "-"); };
    for (size_t t = 0; t < s.tokens; ++t) {
        const std::string tok = t < in.ctx.token_texts.size() ? "'" + printable(in.ctx.token_texts[t]) + "'" : "";
        const bool hs = t < s.stats.size();
        fmt::print("{:>4}  {:<16} {} {} {} {:>8} {:>7} {:>7}  {}\n", t, tok, f(vdl[t]), f(vcv[t]), f(vct[t]),
                   hs ? fmt::format("{:.4f}", s.stats[t].entropy) : "-", hs ? fmt::format("{:.4f}", s.stats[t].top1) : "-",
                   hs ? fmt::format("{:.4f}", s.stats[t].margin) : "-", t < vst.size() ? vst[t] : "");
    }
}

}  // namespace

nlohmann::json analyze_and_report(const RunInput& in0, const AnalysisArgs& a, size_t run_index, size_t n_runs) {
    RunInput in = in0;
    // LIMEN's protocol leaves the embedding output out of the analysed states: a view that skips
    // hf:0 over the same data (no copy).
    StatesView view = StatesView{in.states, in.tokens, in.layers, in.dim, in.layer_names}.analysed(a.include_embedding);
    in.ctx.embedding_output_included = embedding_analysed(in.layer_names, a.include_embedding);
    if (in.tokens == 0) throw UserError(fmt::format("{}: the run has no generated tokens", in.label));
    const std::vector<std::string> names(view.layer_names.begin(), view.layer_names.end());
    view.layer_names = names;
    in.layer_names = names;  // the analysed layers, as printed
    const AnalysisOptions opt = build_options(a, names);
    RunSummary s;
    try {
        s = analyze_run(view, in.stats, opt);
    } catch (const MetricError& e) {
        throw UserError(fmt::format("{}: {}", in.label, e.what()));
    }
    if (!in.routing_blocks.empty()) {
        const RoutingView rv{in.routing_experts.data(), in.routing_weights.data(), in.tokens, in.routing_blocks.size(),
                             in.routing_k, in.routing_n_expert, in.routing_blocks};
        if (in.routing_experts.size() != in.tokens * rv.blocks * rv.k || in.routing_weights.size() != in.routing_experts.size())
            throw UserError(fmt::format("{}: routing holds {} values, expected T·M·k = {}·{}·{}", in.label, in.routing_experts.size(),
                                        in.tokens, rv.blocks, rv.k));
        try {
            s.routing = routing_metrics(rv);
            s.routing_missing_reason.clear();
        } catch (const MetricError& e) {
            throw UserError(fmt::format("{}: {}", in.label, e.what()));
        }
    } else if (a.require_routing) {
        throw UserError(fmt::format("{}: routing metrics asked for (--routing), but the run has no MoE routing: it needs a run "
                                    "file from `generate --routing` on an MoE model (a dense model has no router)", in.label));
    }
    if (!a.quiet) {
        print_summary(s, in);
        if (a.tokens) print_tokens(s, in);
    }
    nlohmann::json j = io::summary_json(s, in.ctx);
    if (!a.json.empty()) {
        const fs::path p = numbered_path(a.json, run_index, n_runs);
        try {
            io::write_file_atomic(p, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
        } catch (const std::exception& e) {
            throw UserError(e.what());
        }
    }
    return j;
}

}  // namespace phasemap::cli
