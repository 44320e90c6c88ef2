// analyze_run (the CLI's entry point) and the metric registry: consistency with the individual
// metric functions, determinism, and bad input handled without crashing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/registry.hpp"

using namespace phasemap::metrics;

namespace {

struct SyntheticRun {
    std::size_t T, L, d;
    std::vector<float> h;
    std::vector<std::string> names;
    std::vector<TokenProbStats> stats;
    StatesView view() const { return StatesView{h.data(), T, L, d, names}; }
};

SyntheticRun make_run(std::size_t T, std::size_t L, std::size_t d, std::uint64_t seed) {
    SyntheticRun r{T, L, d, std::vector<float>(T * L * d), {}, {}};
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> u(0, 1);
    // Random walk along tokens for every layer, plus a drift along layers.
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t l = 0; l < L; ++l)
            for (std::size_t j = 0; j < d; ++j) {
                const double prev = t ? r.h[((t - 1) * L + l) * d + j] : nd(rng) * 3;
                r.h[(t * L + l) * d + j] = static_cast<float>(prev + 0.3 * nd(rng) + (t ? 0.0 : 0.5 * static_cast<double>(l)));
            }
    for (std::size_t l = 0; l < L; ++l) r.names.push_back("hf:" + std::to_string(l + 1));
    for (std::size_t t = 0; t < T; ++t) {
        TokenProbStats s;
        s.top1 = u(rng);
        s.margin = s.top1 * u(rng);
        s.entropy = 4 * u(rng);
        s.surprisal = 3 * u(rng);
        r.stats.push_back(s);
    }
    return r;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

}  // namespace

TEST(Analyze, DefaultsMatchSpec) {
    const AnalysisOptions o;
    EXPECT_EQ(o.layer, -1);
    EXPECT_EQ(o.token.norm, NormMode::raw);
    EXPECT_EQ(o.token.mad_k, 5.0);
    EXPECT_EQ(o.token.curvature, Curvature::one_minus_cos);
    EXPECT_FALSE(o.token.ct_clip);
    EXPECT_EQ(o.token.late_window, 0.25);
    EXPECT_EQ(o.token.collapse_threshold, 0.001);
    EXPECT_EQ(o.token.regime_cuts.underactive_below, 1.985);
    EXPECT_EQ(o.token.regime_cuts.adaptive_below, 2.945);
    EXPECT_EQ(o.token.regime_cuts.transition_below, 3.695);
    EXPECT_EQ(o.states.collapse_top1, 0.90);
    EXPECT_EQ(o.states.rivalry_margin, 0.20);
    EXPECT_EQ(o.states.diffuse_entropy, 2.5);
    EXPECT_EQ(o.controls.shuffles, 0u);
    EXPECT_TRUE(o.layer_axis);
}

TEST(Analyze, MatchesIndividualMetricsOnLastLayer) {
    const SyntheticRun run = make_run(30, 5, 24, 1);
    const RunSummary r = analyze_run(run.view(), run.stats);
    EXPECT_EQ(r.tokens, 30u);
    EXPECT_EQ(r.layer_index, 4u);
    EXPECT_EQ(r.layer_name, "hf:5");
    const TokenAxisResult t = token_axis(run.view().layer(4));
    EXPECT_EQ(r.token.series.ct, t.series.ct);
    ASSERT_TRUE(r.token.ratio_norm.ok());
    EXPECT_EQ(r.token.ratio_norm.v, t.ratio_norm.v);
    EXPECT_EQ(r.token.late_ct.v, t.late_ct.v);
    ASSERT_TRUE(r.token.regime.has_value());
    EXPECT_EQ(*r.token.regime, classify_regime(r.token.ratio_norm.v));
    const LayerAxisResult l = layer_axis(run.view());
    for (std::size_t k = 0; k < kLayerMetricCount; ++k) EXPECT_EQ(r.layer.values[k], l.values[k]);
    ASSERT_TRUE(r.output.has_value());
    EXPECT_EQ(r.output->states.size(), 30u);
    EXPECT_EQ(r.baselines.entropy.n, 30u);
    EXPECT_FALSE(r.token_control.has_value());
    EXPECT_FALSE(r.controls_missing_reason.empty());
    // Another layer by index, and counted from the end.
    AnalysisOptions o;
    o.layer = 1;
    EXPECT_EQ(analyze_run(run.view(), run.stats, o).layer_name, "hf:2");
    o.layer = -5;
    EXPECT_EQ(analyze_run(run.view(), run.stats, o).layer_index, 0u);
}

TEST(Analyze, DeterministicBitForBit) {
    const SyntheticRun run = make_run(25, 6, 40, 2);
    AnalysisOptions o;
    o.controls.shuffles = 15;
    o.token.norm = NormMode::clipped_mad;
    o.token.ct_clip = true;
    const RunSummary a = analyze_run(run.view(), run.stats, o);
    const RunSummary b = analyze_run(run.view(), run.stats, o);
    EXPECT_TRUE(same_bits(a.token.series.delta, b.token.series.delta));
    EXPECT_TRUE(same_bits(a.token.series.curvature, b.token.series.curvature));
    EXPECT_TRUE(same_bits(a.token.series.ct, b.token.series.ct));
    EXPECT_TRUE(same_bits(a.token.ratio_norm.v, b.token.ratio_norm.v));
    for (std::size_t k = 0; k < kLayerMetricCount; ++k) EXPECT_TRUE(same_bits(a.layer.values[k], b.layer.values[k]));
    ASSERT_TRUE(a.token_control.has_value() && b.token_control.has_value());
    EXPECT_TRUE(same_bits(a.token_control->mean.v, b.token_control->mean.v));
    EXPECT_TRUE(same_bits(a.token_control->p_value.v, b.token_control->p_value.v));
    ASSERT_TRUE(a.layer_control.has_value());
    for (std::size_t k = 0; k < kLayerMetricCount; ++k)
        EXPECT_TRUE(same_bits((*a.layer_control)[k].q50.v, (*b.layer_control)[k].q50.v));
    EXPECT_TRUE(a.controls_missing_reason.empty()) << a.controls_missing_reason;
}

TEST(Analyze, NoStatsMeansMissingOutputWithReason) {
    const SyntheticRun run = make_run(10, 4, 8, 3);
    const RunSummary r = analyze_run(run.view(), {});
    EXPECT_FALSE(r.output.has_value());
    EXPECT_NE(r.output_missing_reason.find("no probability"), std::string::npos);
    EXPECT_EQ(r.baselines.top1.n, 0u);
    const Value er = find_metric("exit_rate")->scalar(r);
    EXPECT_FALSE(er.ok());
    EXPECT_EQ(er.missing_reason, r.output_missing_reason);
}

TEST(Analyze, BadInputIsAClearErrorOrAMissingValue) {
    const SyntheticRun run = make_run(10, 4, 8, 4);
    // stats of the wrong length, layer index outside the captured layers, invalid options: errors.
    std::vector<TokenProbStats> short_stats(run.stats.begin(), run.stats.begin() + 3);
    EXPECT_THROW(analyze_run(run.view(), short_stats), MetricError);
    AnalysisOptions o;
    o.layer = 4;
    EXPECT_THROW(analyze_run(run.view(), run.stats, o), MetricError);
    o.layer = -5;
    EXPECT_THROW(analyze_run(run.view(), run.stats, o), MetricError);
    o = {};
    o.token.late_window = 0;
    EXPECT_THROW(analyze_run(run.view(), run.stats, o), MetricError);
    o = {};
    o.token.regime_cuts = {3, 2, 1};
    EXPECT_THROW(analyze_run(run.view(), run.stats, o), MetricError);
    StatesView none{run.h.data(), 10, 0, 8};
    EXPECT_THROW(analyze_run(none, {}), MetricError);

    // Too few tokens / layers: missing values with reasons, no exception.
    const SyntheticRun small = make_run(2, 2, 3, 5);
    AnalysisOptions c;
    c.controls.shuffles = 5;
    const RunSummary s = analyze_run(small.view(), small.stats, c);
    EXPECT_FALSE(s.token.ratio_norm.ok());
    EXPECT_FALSE(s.layer.missing_reason.empty());
    EXPECT_FALSE(s.token_control.has_value());
    EXPECT_FALSE(s.layer_control.has_value());
    EXPECT_NE(s.controls_missing_reason.find("ratio_norm is missing"), std::string::npos) << s.controls_missing_reason;
    const RunSummary empty = analyze_run(StatesView{nullptr, 0, 3, 4}, {});
    EXPECT_EQ(empty.tokens, 0u);
    EXPECT_FALSE(empty.token.ratio_norm.ok());

    // NaN in one state of the chosen layer: the token axis is missing with the reason; the layer
    // axis drops that token only; probability states are unaffected.
    SyntheticRun bad = make_run(12, 4, 8, 6);
    bad.h[(7 * 4 + 3) * 8 + 2] = std::numeric_limits<float>::quiet_NaN();
    const RunSummary b = analyze_run(bad.view(), bad.stats, c);
    EXPECT_NE(b.token.missing_reason.find("token 7"), std::string::npos) << b.token.missing_reason;
    EXPECT_FALSE(b.token.ratio_norm.ok());
    ASSERT_EQ(b.layer.token_errors.size(), 1u);
    EXPECT_EQ(b.layer.token_errors[0].first, 7u);
    EXPECT_EQ(b.layer.summary[0].n, 11u);
    EXPECT_TRUE(b.output.has_value());
    EXPECT_FALSE(b.token_control.has_value());
    EXPECT_TRUE(b.layer_control.has_value());
    // A NaN in another layer leaves the token axis of the last layer intact.
    SyntheticRun bad2 = make_run(12, 4, 8, 6);
    bad2.h[(7 * 4 + 0) * 8 + 2] = std::numeric_limits<float>::infinity();
    const RunSummary b2 = analyze_run(bad2.view(), bad2.stats);
    EXPECT_TRUE(b2.token.ratio_norm.ok());
    EXPECT_EQ(b2.layer.token_errors.size(), 1u);
    // Non-finite probability stats: output missing with the reason, the rest computed.
    SyntheticRun bad3 = make_run(12, 4, 8, 6);
    bad3.stats[4].top1 = std::numeric_limits<double>::quiet_NaN();
    const RunSummary b3 = analyze_run(bad3.view(), bad3.stats);
    EXPECT_FALSE(b3.output.has_value());
    EXPECT_NE(b3.output_missing_reason.find("token 4"), std::string::npos);
    EXPECT_EQ(b3.baselines.top1.n, 11u);
}

TEST(Analyze, OptionsRecordListsEveryOption) {
    AnalysisOptions o;
    o.token.regime_cuts = {1.5, 2.5, 3.25};
    o.controls.shuffles = 100;
    const auto rec = options_record(o);
    std::set<std::string> keys;
    for (const auto& [k, v] : rec) {
        EXPECT_TRUE(keys.insert(k).second) << "duplicate " << k;
        EXPECT_FALSE(v.empty()) << k;
    }
    EXPECT_EQ(keys.size(), 17u);
    auto value = [&](const std::string& k) {
        for (const auto& [kk, v] : rec)
            if (kk == k) return v;
        return std::string("<absent>");
    };
    EXPECT_EQ(value("layer"), "-1");
    EXPECT_EQ(value("norm"), "raw");
    EXPECT_EQ(value("curvature"), "one_minus_cos");
    EXPECT_EQ(value("late_window"), "0.25");
    EXPECT_EQ(value("collapse_threshold"), "0.001");
    EXPECT_EQ(value("regime_cuts"), "1.5,2.5,3.25");
    EXPECT_EQ(value("state.collapse_top1"), "0.9");
    EXPECT_EQ(value("controls.shuffles"), "100");
    EXPECT_EQ(parse_regime_cuts(value("regime_cuts")).transition_below, 3.25);
}

TEST(Registry, EveryMetricOnceWithConsistentMetadata) {
    const auto reg = metric_registry();
    std::set<std::string> names;
    std::set<std::string> option_keys;
    for (const auto& [k, v] : options_record({})) option_keys.insert(k);
    for (const MetricInfo& m : reg) {
        EXPECT_TRUE(names.insert(std::string(m.name)).second) << "duplicate " << m.name;
        EXPECT_FALSE(m.unit.empty()) << m.name;
        EXPECT_FALSE(m.description.empty()) << m.name;
        EXPECT_EQ(m.spec.substr(0, 2), "§") << m.name;
        for (std::string_view o : m.options) EXPECT_TRUE(option_keys.count(std::string(o))) << m.name << " reads unknown option " << o;
        const int accessors = (m.per_token != nullptr) + (m.per_token_label != nullptr) + (m.scalar != nullptr) + (m.label != nullptr);
        EXPECT_EQ(accessors, m.shape == Shape::table ? 0 : 1) << m.name;
        EXPECT_EQ(m.per_token != nullptr, m.shape == Shape::per_token) << m.name;
        EXPECT_EQ(m.scalar != nullptr, m.shape == Shape::scalar) << m.name;
        EXPECT_EQ(m.label != nullptr, m.shape == Shape::label) << m.name;
        EXPECT_EQ(m.per_token_label != nullptr, m.shape == Shape::per_token_label) << m.name;
        EXPECT_EQ(find_metric(m.name), &m);
    }
    // The exact METRICS.md names.
    for (const char* n : {"delta_t", "curvature_t", "ct_t", "ratio_norm", "late_ct", "collapse", "regime", "path_length",
                          "displacement", "tortuosity", "mean_speed", "speed_cv", "mean_acceleration",
                          "mean_turning_angle_rad", "entropy", "top1", "margin", "surprisal"})
        EXPECT_NE(find_metric(n), nullptr) << n;
    EXPECT_EQ(find_metric("no_such_metric"), nullptr);
    // LIMEN summary.json keys of the layer-axis metrics and the probability baselines.
    std::set<std::string> limen;
    for (const MetricInfo& m : reg)
        if (!m.limen_name.empty()) limen.insert(std::string(m.limen_name));
    EXPECT_EQ(limen, (std::set<std::string>{"trajectory.path_length", "trajectory.displacement", "trajectory.tortuosity",
                                            "trajectory.mean_speed", "trajectory.speed_cv", "trajectory.mean_acceleration",
                                            "trajectory.mean_turning_angle_rad", "baseline.entropy_nats",
                                            "baseline.top1_probability", "baseline.top1_top2_margin"}));
}

TEST(Registry, AccessorsReadTheRunSummary) {
    const SyntheticRun run = make_run(20, 4, 16, 8);
    const RunSummary r = analyze_run(run.view(), run.stats);
    for (const MetricInfo& m : metric_registry()) {
        if (m.per_token) {
            EXPECT_EQ(m.per_token(r).size(), 20u) << m.name;
        }
        if (m.per_token_label) {
            EXPECT_EQ(m.per_token_label(r).size(), 20u) << m.name;
        }
    }
    // Token-axis series are aligned to token t (NaN before their first defined token).
    const auto delta = find_metric("delta_t")->per_token(r);
    EXPECT_TRUE(std::isnan(delta[0]));
    EXPECT_EQ(delta[1], r.token.series.delta[0]);
    const auto ct = find_metric("ct_t")->per_token(r);
    EXPECT_TRUE(std::isnan(ct[0]) && std::isnan(ct[1]));
    EXPECT_EQ(ct[2], r.token.series.ct[0]);
    EXPECT_EQ(ct[19], r.token.series.ct[17]);
    EXPECT_EQ(find_metric("ratio_norm")->scalar(r).v, r.token.ratio_norm.v);
    std::string why;
    EXPECT_EQ(find_metric("regime")->label(r, why), to_string(*r.token.regime));
    EXPECT_EQ(find_metric("tortuosity")->per_token(r), r.layer.values[static_cast<std::size_t>(LayerMetric::tortuosity)]);
    EXPECT_EQ(find_metric("top1")->per_token(r)[3], run.stats[3].top1);
    EXPECT_EQ(find_metric("output_state")->per_token_label(r)[3], to_string(r.output->states[3]));
    double rates = 0;
    for (const char* n : {"collapse_rate", "rivalry_rate", "diffuse_rate", "steady_rate"}) rates += find_metric(n)->scalar(r).v;
    EXPECT_NEAR(rates, 1.0, 1e-15);
    const Value col = find_metric("collapse")->scalar(r);
    ASSERT_TRUE(col.ok());
    EXPECT_EQ(col.v, *r.token.collapse ? 1.0 : 0.0);
    // Missing regime: the label accessor reports ratio_norm's reason.
    const SyntheticRun tiny = make_run(4, 3, 4, 9);
    const RunSummary t = analyze_run(tiny.view(), {});
    why.clear();
    EXPECT_TRUE(find_metric("regime")->label(t, why).empty());
    EXPECT_EQ(why, t.token.ratio_norm.missing_reason);
}

TEST(Registry, PerTokenSummariesMatchTheAxes) {
    const SyntheticRun run = make_run(21, 5, 12, 10);
    const RunSummary r = analyze_run(run.view(), run.stats);
    const auto sums = per_token_summaries(r);
    std::size_t seen = 0;
    for (const NamedSummary& s : sums) {
        for (std::size_t k = 0; k < kLayerMetricCount; ++k)
            if (s.name == kLayerMetricNames[k]) {
                EXPECT_EQ(s.summary.n, r.layer.summary[k].n);
                EXPECT_EQ(s.summary.median.v, r.layer.summary[k].median.v);
                EXPECT_EQ(s.summary.q1.v, r.layer.summary[k].q1.v);
                EXPECT_EQ(s.summary.q3.v, r.layer.summary[k].q3.v);
                ++seen;
            }
        if (s.limen_name == "baseline.top1_probability") {
            EXPECT_EQ(s.summary.median.v, r.baselines.top1.median.v);
            ++seen;
        }
        if (s.name == "ct_t") {
            EXPECT_EQ(s.summary.n, 19u);  // T − 2 defined values
            ++seen;
        }
    }
    EXPECT_EQ(seen, kLayerMetricCount + 2);
}

TEST(Analyze, ParseLayerChoice) {
    const std::vector<std::string> names = {"hf:1", "hf:2", "hf:3"};
    EXPECT_EQ(parse_layer_choice("hf:2", names), 1);
    EXPECT_EQ(parse_layer_choice("-1", names), -1);
    // An integer N is hf:N (layer_id.hpp), not the position in the analysed list: with hf:0
    // dropped, position 2 is hf:3 (the bug of issue 12).
    EXPECT_EQ(parse_layer_choice("2", names), 1);
    EXPECT_EQ(parse_layer_choice("+3", names), 2);
    EXPECT_EQ(parse_layer_choice(" hf:3", names), 2);  // a label in any accepted spelling
    EXPECT_THROW(parse_layer_choice("0", names), MetricError);  // hf:0 is not analysed here
    // Unlabelled layers (LIMEN's extraction layout): N is the position.
    const std::vector<std::string> unnamed = {"layer[0]", "layer[1]", "layer[2]"};
    EXPECT_EQ(parse_layer_choice("2", unnamed), 2);
    EXPECT_EQ(parse_layer_choice("layer[1]", unnamed), 1);
    try {
        parse_layer_choice("hf:9", names);
        FAIL() << "expected MetricError";
    } catch (const MetricError& e) {
        EXPECT_NE(std::string(e.what()).find("hf:1, hf:2, hf:3"), std::string::npos) << e.what();
    }
    EXPECT_THROW(parse_layer_choice("", names), MetricError);
    EXPECT_THROW(parse_layer_choice("1x", names), MetricError);
}
