// The metric registry (one table, one entry per metric). See registry.hpp for how to add one.
#include "phasemap/metrics/registry.hpp"

#include <vector>

#include "phasemap/metrics/analyze.hpp"

namespace phasemap::metrics {

std::string_view to_string(Axis a) {
    switch (a) {
        case Axis::token: return "token";
        case Axis::layer: return "layer";
        case Axis::output: return "output";
        case Axis::run: return "run";
        case Axis::routing: return "routing";
    }
    return "?";
}

std::string_view to_string(Shape s) {
    switch (s) {
        case Shape::per_token: return "per_token";
        case Shape::per_token_label: return "per_token_label";
        case Shape::scalar: return "scalar";
        case Shape::label: return "label";
        case Shape::table: return "table";
    }
    return "?";
}

namespace {

// Token-axis series are stored from their first defined token on; per-token tables want T rows.
std::vector<double> pad(const RunSummary& r, const std::vector<double>& v, std::size_t first_t) {
    std::vector<double> out(r.tokens, kNaN);
    for (std::size_t i = 0; i < v.size() && first_t + i < r.tokens; ++i) out[first_t + i] = v[i];
    return out;
}

template <LayerMetric M>
std::vector<double> layer_values(const RunSummary& r) {
    const auto& v = r.layer.values[static_cast<std::size_t>(M)];
    return v.empty() ? std::vector<double>(r.tokens, kNaN) : v;
}

template <double TokenProbStats::*F>
std::vector<double> stat_values(const RunSummary& r) {
    std::vector<double> out(r.tokens, kNaN);
    for (std::size_t t = 0; t < r.stats.size() && t < out.size(); ++t) out[t] = r.stats[t].*F;
    return out;
}

Value output_value(const RunSummary& r, Value OutputStatesResult::*field) {
    return r.output ? (*r.output).*field : Value::missing(r.output_missing_reason);
}

template <OutputState S>
Value state_rate(const RunSummary& r) {
    if (!r.output) return Value::missing(r.output_missing_reason);
    if (r.tokens == 0) return Value::missing("no tokens");
    return Value::of(r.output->rates[static_cast<std::size_t>(S)]);
}

// Options read by every token-axis metric.
#define PM_TOKEN_OPTS "layer", "norm", "mad_k", "curvature"
#define PM_STATE_OPTS "state.collapse_top1", "state.rivalry_margin", "state.diffuse_entropy"

// MoE routing (docs/metrics-moe.md): missing, with the reason, on a run without routing.
template <Value RoutingResult::*F>
Value routing_value(const RunSummary& r) {
    return r.routing ? (*r.routing).*F : Value::missing(r.routing_missing_reason);
}
template <std::vector<double> RoutingResult::*F>
std::vector<double> routing_series(const RunSummary& r) {
    return r.routing ? (*r.routing).*F : std::vector<double>(r.tokens, kNaN);
}

const std::vector<MetricInfo>& table() {
    static const std::vector<MetricInfo> t = [] {
        std::vector<MetricInfo> m;
        auto add = [&m](MetricInfo i) { m.push_back(std::move(i)); };

        // ---------------------------------------------------------------- §2 token axis
        add({.name = "delta_t", .unit = "1", .axis = Axis::token, .shape = Shape::per_token, .spec = "§2.2",
             .description = "‖x_t − x_{t−1}‖₂ between consecutive unit-normalised states (t ≥ 1), in [0, 2]",
             .options = {"layer", "norm", "mad_k"},
             .per_token = [](const RunSummary& r) { return pad(r, r.token.series.delta, 1); }});
        add({.name = "curvature_t", .unit = "1 (rad with curvature=angle)", .axis = Axis::token,
             .shape = Shape::per_token, .spec = "§2.3",
             .description = "turning of consecutive displacements (t ≥ 2): 1 − cos (default), angle, or ‖v_t − v_{t−1}‖",
             .options = {PM_TOKEN_OPTS},
             .per_token = [](const RunSummary& r) { return pad(r, r.token.series.curvature, 2); }});
        add({.name = "ct_t", .unit = "1", .axis = Axis::token, .shape = Shape::per_token, .spec = "§2.4",
             .description = "delta_t × curvature_t (t ≥ 2)", .options = {PM_TOKEN_OPTS},
             .per_token = [](const RunSummary& r) { return pad(r, r.token.series.ct, 2); }});
        add({.name = "ratio_norm", .unit = "1", .axis = Axis::token, .shape = Shape::scalar, .spec = "§2.5",
             .description = "max ct / mean ct; in [1, number of ct values]; missing with < 3 ct values or mean 0",
             .options = {PM_TOKEN_OPTS, "ct_clip", "ct_clip_k"},
             .scalar = [](const RunSummary& r) { return r.token.ratio_norm; }});
        add({.name = "late_ct", .unit = "1", .axis = Axis::token, .shape = Shape::scalar, .spec = "§2.6",
             .description = "mean of the last ⌈n·late_window⌉ ct values", .options = {PM_TOKEN_OPTS, "late_window"},
             .scalar = [](const RunSummary& r) { return r.token.late_ct; }});
        add({.name = "collapse", .unit = "bool (1 = collapse)", .axis = Axis::token, .shape = Shape::scalar,
             .spec = "§2.6",
             .description = "late_ct < collapse_threshold (silent-collapse hypothesis, published on n = 8 only)",
             .options = {PM_TOKEN_OPTS, "late_window", "collapse_threshold"},
             .scalar = [](const RunSummary& r) {
                 return r.token.collapse ? Value::of(*r.token.collapse ? 1.0 : 0.0)
                                         : Value::missing(r.token.late_ct.missing_reason);
             }});
        add({.name = "regime", .unit = "label", .axis = Axis::token, .shape = Shape::label, .spec = "§2.7",
             .description = "UNDERACTIVE / ADAPTIVE / TRANSITION / CHAOTIC from ratio_norm and the cut-points",
             .options = {PM_TOKEN_OPTS, "ct_clip", "ct_clip_k", "regime_cuts"},
             .label = [](const RunSummary& r, std::string& why) {
                 if (r.token.regime) return std::string(to_string(*r.token.regime));
                 why = r.token.ratio_norm.missing_reason;
                 return std::string();
             }});

        // ---------------------------------------------------------------- §3 layer axis
        add({.name = "path_length", .unit = "state norm", .axis = Axis::layer, .shape = Shape::per_token,
             .spec = "§3", .description = "Σ_l ‖h_{l+1} − h_l‖₂ over the captured layers", .options = {"layer_axis"},
             .limen_name = "trajectory.path_length", .per_token = layer_values<LayerMetric::path_length>});
        add({.name = "displacement", .unit = "state norm", .axis = Axis::layer, .shape = Shape::per_token,
             .spec = "§3", .description = "‖h_last − h_first‖₂", .options = {"layer_axis"},
             .limen_name = "trajectory.displacement", .per_token = layer_values<LayerMetric::displacement>});
        add({.name = "tortuosity", .unit = "1", .axis = Axis::layer, .shape = Shape::per_token, .spec = "§3",
             .description = "path_length / displacement (NaN when displacement is 0)", .options = {"layer_axis"},
             .limen_name = "trajectory.tortuosity", .per_token = layer_values<LayerMetric::tortuosity>});
        add({.name = "mean_speed", .unit = "state norm", .axis = Axis::layer, .shape = Shape::per_token,
             .spec = "§3", .description = "mean ‖h_{l+1} − h_l‖₂", .options = {"layer_axis"},
             .limen_name = "trajectory.mean_speed", .per_token = layer_values<LayerMetric::mean_speed>});
        add({.name = "speed_cv", .unit = "1", .axis = Axis::layer, .shape = Shape::per_token, .spec = "§3",
             .description = "population std(speed) / mean(speed) (0 when the mean is 0)", .options = {"layer_axis"},
             .limen_name = "trajectory.speed_cv", .per_token = layer_values<LayerMetric::speed_cv>});
        add({.name = "mean_acceleration", .unit = "state norm", .axis = Axis::layer, .shape = Shape::per_token,
             .spec = "§3", .description = "mean ‖v_{l+1} − v_l‖₂", .options = {"layer_axis"},
             .limen_name = "trajectory.mean_acceleration", .per_token = layer_values<LayerMetric::mean_acceleration>});
        add({.name = "mean_turning_angle_rad", .unit = "rad", .axis = Axis::layer, .shape = Shape::per_token,
             .spec = "§3", .description = "mean arccos(clamp(cos(v_l, v_{l+1}), −1, 1)); cos = 1 when a norm is 0",
             .options = {"layer_axis"}, .limen_name = "trajectory.mean_turning_angle_rad",
             .per_token = layer_values<LayerMetric::mean_turning_angle_rad>});

        // ---------------------------------------------------------------- §1/§6 probability baselines, §5 states
        add({.name = "entropy", .unit = "nats", .axis = Axis::output, .shape = Shape::per_token, .spec = "§1",
             .description = "−Σ p ln max(p, 1e-300) of the next-token distribution", .options = {},
             .limen_name = "baseline.entropy_nats", .per_token = stat_values<&TokenProbStats::entropy>});
        add({.name = "top1", .unit = "probability", .axis = Axis::output, .shape = Shape::per_token, .spec = "§1",
             .description = "largest next-token probability", .options = {},
             .limen_name = "baseline.top1_probability", .per_token = stat_values<&TokenProbStats::top1>});
        add({.name = "margin", .unit = "probability", .axis = Axis::output, .shape = Shape::per_token, .spec = "§1",
             .description = "top1 − second largest probability", .options = {},
             .limen_name = "baseline.top1_top2_margin", .per_token = stat_values<&TokenProbStats::margin>});
        add({.name = "surprisal", .unit = "nats", .axis = Axis::output, .shape = Shape::per_token, .spec = "§1",
             .description = "−ln p(chosen token)", .options = {},
             .per_token = stat_values<&TokenProbStats::surprisal>});
        add({.name = "output_state", .unit = "label", .axis = Axis::output, .shape = Shape::per_token_label,
             .spec = "§5", .description = "COLLAPSE / RIVALRY / DIFFUSE / STEADY per token", .options = {PM_STATE_OPTS},
             .per_token_label = [](const RunSummary& r) {
                 std::vector<std::string> out(r.tokens);
                 if (r.output)
                     for (std::size_t t = 0; t < r.output->states.size() && t < out.size(); ++t)
                         out[t] = std::string(to_string(r.output->states[t]));
                 return out;
             }});
        add({.name = "exit_rate", .unit = "1", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "COLLAPSE episodes that end before the run ends / all episodes", .options = {PM_STATE_OPTS},
             .scalar = [](const RunSummary& r) { return output_value(r, &OutputStatesResult::exit_rate); }});
        add({.name = "reopening_rate", .unit = "1", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "COLLAPSE episodes followed by a RIVALRY token before the next COLLAPSE (or the end) / all episodes",
             .options = {PM_STATE_OPTS},
             .scalar = [](const RunSummary& r) { return output_value(r, &OutputStatesResult::reopening_rate); }});
        add({.name = "collapse_rate", .unit = "1", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "fraction of tokens in state COLLAPSE", .options = {PM_STATE_OPTS},
             .scalar = state_rate<OutputState::COLLAPSE>});
        add({.name = "rivalry_rate", .unit = "1", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "fraction of tokens in state RIVALRY", .options = {PM_STATE_OPTS},
             .scalar = state_rate<OutputState::RIVALRY>});
        add({.name = "diffuse_rate", .unit = "1", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "fraction of tokens in state DIFFUSE", .options = {PM_STATE_OPTS},
             .scalar = state_rate<OutputState::DIFFUSE>});
        add({.name = "steady_rate", .unit = "1", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "fraction of tokens in state STEADY", .options = {PM_STATE_OPTS},
             .scalar = state_rate<OutputState::STEADY>});
        add({.name = "collapse_episodes", .unit = "count", .axis = Axis::output, .shape = Shape::scalar, .spec = "§5",
             .description = "number of maximal runs of COLLAPSE tokens", .options = {PM_STATE_OPTS},
             .scalar = [](const RunSummary& r) {
                 return r.output ? Value::of(static_cast<double>(r.output->episodes.size()))
                                 : Value::missing(r.output_missing_reason);
             }});
        add({.name = "transition_matrix", .unit = "count / probability", .axis = Axis::output, .shape = Shape::table,
             .spec = "§5", .description = "4×4 state transitions t → t+1, counts and row-normalised (RunSummary::output)",
             .options = {PM_STATE_OPTS}});
        add({.name = "dwell_times", .unit = "tokens", .axis = Axis::output, .shape = Shape::table, .spec = "§5",
             .description = "lengths of the maximal runs of each state (RunSummary::output)", .options = {PM_STATE_OPTS}});

        // ---------------------------------------------------------------- §6 controls
        add({.name = "token_order_control", .unit = "p-value", .axis = Axis::run, .shape = Shape::table, .spec = "§6",
             .description = "ratio_norm against K shuffled token orders: distribution and empirical p-value "
                            "(RunSummary::token_control)",
             .options = {PM_TOKEN_OPTS, "ct_clip", "ct_clip_k", "controls.shuffles", "controls.seed", "controls.token_tail"}});
        add({.name = "layer_order_control", .unit = "p-value", .axis = Axis::run, .shape = Shape::table, .spec = "§6",
             .description = "median over tokens of each layer-axis metric against K shuffled layer orders "
                            "(RunSummary::layer_control)",
             .options = {"layer_axis", "controls.shuffles", "controls.seed", "controls.layer_tail"}});

        // ---------------------------------------------------------------- MoE routing (docs/metrics-moe.md)
        add({.name = "routing_entropy", .unit = "nats", .axis = Axis::routing, .shape = Shape::per_token,
             .spec = "§1 metrics-moe.md", .description = "mean over MoE blocks of −Σ ŵ ln ŵ of the normalised top-k routing weights, in [0, ln k]",
             .per_token = routing_series<&RoutingResult::entropy>});
        add({.name = "expert_switch", .unit = "1", .axis = Axis::routing, .shape = Shape::per_token, .spec = "§2 metrics-moe.md",
             .description = "share of MoE blocks whose top-k expert set differs from the previous token's (t ≥ 1)",
             .per_token = routing_series<&RoutingResult::switch_share>});
        add({.name = "expert_switch_rate", .unit = "1", .axis = Axis::routing, .shape = Shape::scalar, .spec = "§2 metrics-moe.md",
             .description = "switch events / (M·(T − 1)) over all MoE blocks and consecutive token pairs",
             .scalar = routing_value<&RoutingResult::switch_rate>});
        add({.name = "expert_load_entropy", .unit = "1", .axis = Axis::routing, .shape = Shape::scalar, .spec = "§3 metrics-moe.md",
             .description = "mean over MoE blocks of the expert-load entropy / ln E, in [0, 1] (1 = every expert equally used)",
             .scalar = routing_value<&RoutingResult::load_entropy>});
        add({.name = "expert_load_imbalance", .unit = "1", .axis = Axis::routing, .shape = Shape::scalar, .spec = "§3 metrics-moe.md",
             .description = "mean over MoE blocks of E · the largest expert-load share, in [1, E/k]",
             .scalar = routing_value<&RoutingResult::load_imbalance>});
        add({.name = "routing_layer_nmi", .unit = "1", .axis = Axis::routing, .shape = Shape::scalar, .spec = "§4 metrics-moe.md",
             .description = "mean over adjacent MoE blocks of I(top-1 experts) / √(H·H), in [0, 1]",
             .scalar = routing_value<&RoutingResult::top1_nmi>});
        add({.name = "routing_switch_agreement", .unit = "1", .axis = Axis::routing, .shape = Shape::scalar, .spec = "§4 metrics-moe.md",
             .description = "mean over adjacent MoE blocks of the Jaccard index of their switch-event token sets",
             .scalar = routing_value<&RoutingResult::switch_agreement>});
        add({.name = "expert_load", .unit = "share", .axis = Axis::routing, .shape = Shape::table, .spec = "§3 metrics-moe.md",
             .description = "per MoE block and expert: selections / (T·k) (RunSummary::routing)"});
        return m;
    }();
    return t;
}

#undef PM_TOKEN_OPTS
#undef PM_STATE_OPTS

}  // namespace

std::span<const MetricInfo> metric_registry() { return table(); }

std::vector<NamedSummary> per_token_summaries(const RunSummary& r) {
    std::vector<NamedSummary> out;
    for (const MetricInfo& m : table())
        if (m.shape == Shape::per_token && m.per_token) out.push_back({m.name, m.limen_name, summarize(m.per_token(r))});
    return out;
}

const MetricInfo* find_metric(std::string_view name) {
    for (const MetricInfo& m : table())
        if (m.name == name) return &m;
    return nullptr;
}

}  // namespace phasemap::metrics
