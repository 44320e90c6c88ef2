// Per-run analysis: the CLI's single entry point (METRICS.md §2–§6).
#include "phasemap/metrics/option_domains.hpp"
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/layer_id.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <cmath>
#include <string>

namespace phasemap::metrics {

namespace {

std::string num(double x) {
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
    return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}

}  // namespace

void AnalysisOptions::validate() const {
    token.validate();
    states.validate();
    if (auto p = opt::domain_problem(double(controls.shuffles), opt::kShuffles); !p.empty()) throw MetricError("shuffles: " + p);
}

std::vector<std::pair<std::string, std::string>> options_record(const AnalysisOptions& o) {
    const auto& t = o.token;
    const auto& c = t.regime_cuts;
    return {
        {"layer", std::to_string(o.layer)},
        {"norm", std::string(to_string(t.norm))},
        {"mad_k", num(t.mad_k)},
        {"curvature", std::string(to_string(t.curvature))},
        {"ct_clip", t.ct_clip ? "true" : "false"},
        {"ct_clip_k", num(t.ct_clip_k)},
        {"late_window", num(t.late_window)},
        {"collapse_threshold", num(t.collapse_threshold)},
        {"regime_cuts", num(c.underactive_below) + "," + num(c.adaptive_below) + "," + num(c.transition_below)},
        {"layer_axis", o.layer_axis ? "true" : "false"},
        {"state.collapse_top1", num(o.states.collapse_top1)},
        {"state.rivalry_margin", num(o.states.rivalry_margin)},
        {"state.diffuse_entropy", num(o.states.diffuse_entropy)},
        {"controls.shuffles", std::to_string(o.controls.shuffles)},
        {"controls.seed", std::to_string(o.controls.seed)},
        {"controls.token_tail", std::string(to_string(o.controls.token_tail))},
        {"controls.layer_tail", std::string(to_string(o.controls.layer_tail))},
    };
}

std::size_t resolve_layer_index(std::int64_t layer, std::size_t captured) {
    const auto n = static_cast<std::int64_t>(captured);
    const std::int64_t i = layer < 0 ? n + layer : layer;
    if (captured == 0 || i < 0 || i >= n)
        throw MetricError("layer index " + std::to_string(layer) + " is outside the " + std::to_string(captured) +
                          " captured layers (valid: 0 … " + std::to_string(n - 1) + ", or −1 … −" +
                          std::to_string(n) + " from the end)");
    return static_cast<std::size_t>(i);
}

std::int64_t parse_layer_choice(std::string_view choice, std::span<const std::string> names) {
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == choice) return static_cast<std::int64_t>(i);
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    if (list.empty()) list = "none named";
    std::int64_t v = 0;
    const char* b = choice.data();
    const char* e = b + choice.size();
    if (!choice.empty() && *b == '+') ++b;
    const auto [end, ec] = std::from_chars(b, e, v);
    std::optional<LayerId> id;
    if (!choice.empty() && ec == std::errc() && end == e) {
        if (v < 0) return v;  // −k: the k-th captured layer from the end of the list
        // N ≥ 0 is hf:N (layer_id.hpp). Files that name no layers (LIMEN's extraction layout:
        // "layer[i]") have nothing to match it against: N is then the position in the file.
        const bool labelled =
            std::any_of(names.begin(), names.end(), [](const std::string& n) { return LayerId::try_parse(n).has_value(); });
        if (!labelled) return v;
        id = LayerId{LayerKind::hf, v > std::int64_t(1) << 30 ? -1 : int(v), {}};
    } else {
        id = LayerId::try_parse(choice);
    }
    if (id) {
        const std::string label = id->label();
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i] == label) return static_cast<std::int64_t>(i);
        throw MetricError("layer '" + std::string(choice) + "' (" + label + ") is not among the analysed layers (" + list + ")");
    }
    throw MetricError("layer '" + std::string(choice) + "' is neither an index nor a captured layer (captured: " + list + ")");
}

RunSummary analyze_run(const StatesView& states, std::span<const TokenProbStats> stats, const AnalysisOptions& opt) {
    opt.validate();
    if (!stats.empty() && stats.size() != states.tokens)
        throw MetricError("probability stats cover " + std::to_string(stats.size()) + " tokens but the states cover " +
                          std::to_string(states.tokens));
    if (states.tokens > 0 && states.layers > 0 && states.dim > 0 && states.data == nullptr)
        throw MetricError("states view has no data");

    RunSummary r;
    r.tokens = states.tokens;
    r.layers = states.layers;
    r.dim = states.dim;
    r.options = opt;
    r.layer_index = resolve_layer_index(opt.layer, states.layers);
    r.layer_name = states.layer_name(r.layer_index);

    // §2 (+ §4) on the chosen layer.
    r.token = token_axis(states.layer(r.layer_index), opt.token);

    // §3 on every token.
    if (opt.layer_axis)
        r.layer = layer_axis(states);
    else
        r.layer.missing_reason = "disabled by option layer_axis";

    // §5 and the §6 probability baselines.
    if (stats.empty()) {
        r.output_missing_reason = "no probability statistics given";
    } else {
        r.stats.assign(stats.begin(), stats.end());
        try {
            r.output = output_states(stats, opt.states);
        } catch (const MetricError& e) {
            r.output_missing_reason = e.what();
        }
    }
    std::vector<double> col(r.stats.size());
    auto summary_of = [&](double TokenProbStats::*field) {
        for (std::size_t t = 0; t < r.stats.size(); ++t) col[t] = r.stats[t].*field;
        return summarize(col);
    };
    r.baselines.entropy = summary_of(&TokenProbStats::entropy);
    r.baselines.top1 = summary_of(&TokenProbStats::top1);
    r.baselines.margin = summary_of(&TokenProbStats::margin);
    r.baselines.surprisal = summary_of(&TokenProbStats::surprisal);

    // §6 shuffled-order baselines.
    const std::size_t K = opt.controls.shuffles;
    if (K == 0) {
        r.controls_missing_reason = "disabled (controls.shuffles = 0)";
    } else {
        std::string why;
        if (!r.token.ratio_norm.ok()) {
            why = "token-order control: ratio_norm is missing (" + r.token.ratio_norm.missing_reason + ")";
        } else {
            try {
                r.token_control = token_order_control(states.layer(r.layer_index), opt.token, K, opt.controls.seed,
                                                      opt.controls.token_tail);
            } catch (const MetricError& e) {
                why = std::string("token-order control: ") + e.what();
            }
        }
        if (!r.layer.missing_reason.empty()) {
            why += (why.empty() ? "" : "; ") + std::string("layer-order control: ") + r.layer.missing_reason;
        } else {
            try {
                r.layer_control = layer_order_control(states, K, opt.controls.seed, opt.controls.layer_tail);
            } catch (const MetricError& e) {
                why += (why.empty() ? "" : "; ") + std::string("layer-order control: ") + e.what();
            }
        }
        r.controls_missing_reason = why;
    }
    return r;
}

}  // namespace phasemap::metrics
