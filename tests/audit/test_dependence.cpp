// Issue 16: statistical units (identical temperature-0 generations counted once, nested budgets
// analysed through their longest run), paired variant tests, verdicts that need their test,
// degenerate threshold rules, κ on a single-model panel. Expected values are computed here from
// the panels' construction, not by the code under test.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "phasemap/audit/audit.hpp"
#include "phasemap/audit/hypotheses.hpp"
#include "phasemap/audit/report.hpp"

using namespace phasemap;
using namespace phasemap::audit;

namespace {

Options small_options() {
    Options o;
    o.bootstrap = 200;
    o.reml_bootstrap = 20;
    o.permutations = 200;
    o.seed = 7;
    return o;
}

PanelRun run(const std::string& model, const std::string& category, const std::string& prompt, double temperature,
             std::int64_t n_predict, std::uint64_t seed, const std::string& text, double ratio) {
    PanelRun r;
    r.model = model;
    r.category = category;
    r.prompt = prompt;
    r.temperature = temperature;
    r.n_predict = n_predict;
    r.n_generated = n_predict;
    r.seed = seed;
    r.text = text;
    r.norm = "raw";
    r.run_id = model + "/" + prompt + "/" + std::to_string(temperature) + "/" + std::to_string(n_predict) + "/" +
               std::to_string(seed);
    r.metrics["ratio_norm"] = ratio;
    return r;
}

double value(int m, int c, int q, int s) { return 2.0 + 0.3 * m + 0.2 * c + 0.07 * q + 0.011 * s; }

}  // namespace

// 3 models × 2 categories × 3 prompts × 4 seeds at temperature 0 (one generation per prompt; the
// seeds repeat it) and at temperature 0.8 (four different generations). One temperature-0 seed of
// one prompt produced a different generation (as batched decoding can): it is a unit of its own.
TEST(AuditUnits, TemperatureZeroSeedsCountedOnce) {
    PanelTable p;
    for (int m = 0; m < 3; ++m) p.models.push_back({.label = "m" + std::to_string(m)});
    std::map<std::string, std::vector<double>> expected;   // model → the values of its distinct units
    for (int m = 0; m < 3; ++m)
        for (int c = 0; c < 2; ++c)
            for (int q = 0; q < 3; ++q) {
                const std::string model = "m" + std::to_string(m), cat = "c" + std::to_string(c),
                                  prompt = cat + "p" + std::to_string(q);
                for (int s = 1; s <= 4; ++s) {
                    const bool odd = m == 0 && c == 0 && q == 0 && s == 4;
                    const std::string text = "greedy text of " + model + " " + prompt + (odd ? " (diverged)" : "");
                    const double v = odd ? value(m, c, q, 9) : value(m, c, q, 0);
                    p.runs.push_back(run(model, cat, prompt, 0.0, 32, s, text, v));
                    if (s == 1 || odd) expected[model].push_back(v);
                    const double w = value(m, c, q, s) + 0.05;
                    p.runs.push_back(run(model, cat, prompt, 0.8, 32, s, "sampled " + std::to_string(s) + " " + prompt, w));
                    expected[model].push_back(w);
                }
            }
    ASSERT_EQ(p.runs.size(), 144u);
    const Options o = small_options();
    const auto units = distinct_runs(p, "raw");
    EXPECT_EQ(units.total, 144u);
    EXPECT_EQ(units.runs.size(), 91u);          // 3 × 6 greedy + 1 diverged + 3 × 24 sampled
    EXPECT_EQ(units.merged_identical, 53u);
    EXPECT_EQ(units.nested_budget, 0u);

    const auto t = regime_table(p, o);
    ASSERT_TRUE(t.ok()) << t.reason;
    ASSERT_EQ(t.models.size(), 3u);
    for (const auto& row : t.models) {
        const auto& xs = expected[row.model];
        double mean = 0;
        for (double x : xs) mean += x / static_cast<double>(xs.size());
        EXPECT_EQ(row.n, xs.size()) << row.model;
        EXPECT_NEAR(row.mean, mean, 1e-12) << row.model;
    }
    EXPECT_EQ(t.models[0].n, 31u);
    const auto v = variance_decomposition(p, o);
    ASSERT_TRUE(v.ok()) << v.reason;
    EXPECT_EQ(v.n, 91u);
    const auto out = run_section("variance", p, o);
    EXPECT_EQ(out.data["units"]["runs"], 144);
    EXPECT_EQ(out.data["units"]["distinct"], 91);
    EXPECT_EQ(out.data["units"]["merged_identical"], 53);
    EXPECT_NE(out.table.find("53 identical temperature-0 runs merged"), std::string::npos) << out.table;
}

// Greedy runs at budgets 16 and 32 whose 16-token text is the start of the 32-token text: the
// pooled sections see the 32-token run only, the budget comparison sees both lengths.
TEST(AuditUnits, NestedBudgetsAreOneRunAtSeveralLengths) {
    PanelTable p;
    for (int m = 0; m < 4; ++m) p.models.push_back({.label = "m" + std::to_string(m)});
    std::map<std::string, std::map<std::int64_t, double>> sum;   // model → budget → Σ values
    for (int m = 0; m < 4; ++m)
        for (int c = 0; c < 2; ++c)
            for (int q = 0; q < 3; ++q) {
                const std::string model = "m" + std::to_string(m), cat = "c" + std::to_string(c),
                                  prompt = cat + "p" + std::to_string(q);
                const std::string head = "once upon a time " + model + " " + prompt;
                for (std::uint64_t s = 1; s <= 2; ++s) {
                    p.runs.push_back(run(model, cat, prompt, 0.0, 16, s, head, value(m, c, q, 0)));
                    p.runs.push_back(run(model, cat, prompt, 0.0, 32, s, head + " and then more", value(m, c, q, 1) + 0.5));
                }
                sum[model][16] += value(m, c, q, 0);
                sum[model][32] += value(m, c, q, 1) + 0.5;
            }
    const auto pooled = distinct_runs(p, "raw");
    EXPECT_EQ(pooled.total, 96u);
    EXPECT_EQ(pooled.merged_identical, 48u);
    EXPECT_EQ(pooled.nested_budget, 24u);
    ASSERT_EQ(pooled.runs.size(), 24u);
    for (const PanelRun* r : pooled.runs) EXPECT_EQ(r->n_predict, 32);
    EXPECT_EQ(distinct_runs(p, "raw", true).runs.size(), 48u);

    const Options o = small_options();
    const auto t = regime_table(p, o);
    ASSERT_TRUE(t.ok());
    for (const auto& row : t.models) {
        EXPECT_EQ(row.n, 6u);
        EXPECT_NEAR(row.mean, sum[row.model][32] / 6, 1e-12);
    }
    const auto r = robustness(p, o);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.budget.size(), 1u) << r.budget_reason;
    EXPECT_EQ(r.budget[0].tau.n, 4u);
    // Model means increase with m at both budgets: the rankings agree exactly.
    EXPECT_DOUBLE_EQ(r.budget[0].tau.tau, 1.0);
}

// Variant and base runs matched by prompt and seed: the Δ test is on the paired differences. The
// base varies strongly between prompts, the variant is the base plus 0.05 + a small wobble, so
// every difference is positive: of the 2^12 sign vectors only the two constant ones reach |mean d|.
TEST(AuditUnits, PairedVariantTestOnMatchedRuns) {
    PanelTable p;
    p.models = {{.label = "base"}, {.label = "var", .variant_of = std::string("base")}};
    std::vector<double> diff;
    for (int i = 0; i < 12; ++i) {
        const double b = 2.5 + 0.8 * std::sin(1.7 * i), d = 0.05 + 0.01 * std::cos(3.0 * i);
        const std::string prompt = "p" + std::to_string(i);
        p.runs.push_back(run("base", "c0", prompt, 0.7, 32, 100 + i, "", b));
        p.runs.push_back(run("var", "c0", prompt, 0.7, 32, 100 + i, "", b + d));
        diff.push_back(d);
    }
    double mean = 0;
    for (double d : diff) mean += d / 12;
    long extreme = 0;
    for (int mask = 0; mask < 4096; ++mask) {
        double s = 0;
        for (int i = 0; i < 12; ++i) s += (mask >> i & 1) ? -diff[i] : diff[i];
        extreme += std::abs(s / 12) >= std::abs(mean) - 1e-15;
    }
    ASSERT_EQ(extreme, 2);
    Options o = small_options();
    o.permutations = 5000;
    const auto v = variants(p, o);
    ASSERT_TRUE(v.ok()) << v.reason;
    ASSERT_EQ(v.variants.size(), 1u);
    const auto& row = v.variants[0];
    EXPECT_EQ(row.test, "paired");
    EXPECT_EQ(row.pairs, 12u);
    EXPECT_NEAR(row.delta, mean, 1e-12);
    EXPECT_EQ(row.p_method, "exact sign-flip enumeration");
    EXPECT_DOUBLE_EQ(row.perm_p, static_cast<double>(extreme) / 4096);
    EXPECT_GE(row.delta_ci.lo, 0.04);
    EXPECT_LE(row.delta_ci.hi, 0.06);

    // The same runs with seeds that do not match: no pairs, the unpaired test (and its large p,
    // since the prompt spread swamps the shift).
    for (auto& r : p.runs)
        if (r.model == "var") r.seed += 1000;
    const auto u = variants(p, o);
    ASSERT_EQ(u.variants.size(), 1u);
    EXPECT_EQ(u.variants[0].test, "unpaired");
    EXPECT_EQ(u.variants[0].pairs, 0u);
    EXPECT_EQ(u.variants[0].p_method, "label permutation");
    EXPECT_GT(u.variants[0].perm_p, 0.5);
}

// A ranking hypothesis whose τ intervals (run-level bootstrap) sit at 1 but whose own test cannot
// reach α: with 4 models and perfectly concordant rankings the exact two-sided p is 2/4! = 1/12,
// so the verdict is INCONCLUSIVE; with 5 models it is 2/5! = 1/60 and the verdict SURVIVED.
TEST(AuditUnits, VerdictNeedsItsTest) {
    const auto file = parse_hypotheses(R"(
[[hypothesis]]
id = "stable"
type = "ranking_stable"
across = "temperature"
min_tau = 0.5
)");
    for (int models : {4, 5}) {
        PanelTable p;
        for (int m = 0; m < models; ++m) {
            p.models.push_back({.label = "m" + std::to_string(m)});
            for (int k = 0; k < 8; ++k)
                for (double t : {0.2, 0.8})
                    p.runs.push_back(run(fmt::format("m{}", m), "c0", fmt::format("p{}", k), t, 32, k, "",
                                         2.0 + m + 0.001 * k));
        }
        const auto reg = falsification_registry(p, file, small_options());
        ASSERT_TRUE(reg.ok());
        const auto& e = reg.results[0].full;
        EXPECT_DOUBLE_EQ(e.statistic, 1.0);
        EXPECT_NEAR(e.p, models == 4 ? 1.0 / 12 : 1.0 / 60, 1e-12);
        EXPECT_EQ(e.verdict, models == 4 ? Verdict::INCONCLUSIVE : Verdict::SURVIVED) << e.detail;
        EXPECT_FALSE(e.interval_reflects.empty());
    }
}

// late_ct carries no information (constant): the fitted threshold puts every run on one side, so
// the section prints no rule; the entropy separates the classes and gets a rule.
TEST(AuditUnits, DegenerateThresholdIsNoRule) {
    PanelTable p;
    p.models = {{.label = "m"}};
    for (int i = 0; i < 40; ++i) {
        const bool collapsed = i % 3 == 0;
        auto r = run("m", "c0", "p" + std::to_string(i), 0.7, 32, i,
                     collapsed ? "no no no no no no no no" : "a long and varied answer number " + std::to_string(i), 2.0);
        r.metrics["late_ct"] = 0.5;
        r.metrics["mean_entropy"] = collapsed ? 0.1 + 0.001 * i : 2.0 + 0.001 * i;
        p.runs.push_back(r);
    }
    const auto r = robustness(p, small_options());
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r.predictor_reason.empty()) << r.predictor_reason;
    EXPECT_EQ(r.predictor.rule, "no rule better than the majority class");
    EXPECT_TRUE(std::isnan(r.predictor.threshold));
    EXPECT_NE(to_table(r).find("no rule better than the majority class"), std::string::npos);
    EXPECT_TRUE(to_json(r)["collapse_predictor"]["late_ct_threshold"].is_null());
    EXPECT_EQ(r.predictor.entropy_rule.rfind("collapsed when mean_entropy < ", 0), 0u) << r.predictor.entropy_rule;
    EXPECT_DOUBLE_EQ(r.predictor.entropy_test_accuracy, 1.0);
}

// One model, two normalisation modes: the between-model statistics do not apply, the κ between the
// modes does. Labels (cut-points 1.985 / 2.945 / 3.695): raw U U A A T T C C; clipped U A A A T T T C.
// Agreement 6/8; p_e = Σ_label (raw share × clipped share) = (2·1 + 2·3 + 2·3 + 2·1)/64 = 16/64.
TEST(AuditUnits, SingleModelKappaBetweenModes) {
    PanelTable p;
    p.models = {{.label = "m"}};
    const std::vector<double> raw = {1.5, 1.6, 2.5, 2.6, 3.2, 3.3, 4.0, 4.1};
    const std::vector<double> clipped = {1.5, 2.2, 2.5, 2.6, 3.2, 3.3, 3.5, 4.1};
    for (std::size_t i = 0; i < raw.size(); ++i) {
        auto r = run("m", "c0", "p" + std::to_string(i), 0.7, 32, i, "", raw[i]);
        p.runs.push_back(r);
        r.norm = "clipped";
        r.metrics["ratio_norm"] = clipped[i];
        p.runs.push_back(r);
    }
    const auto s = normalisation_sensitivity(p, small_options());
    ASSERT_TRUE(s.ok()) << s.reason;
    EXPECT_NE(s.modes_reason.find("single model"), std::string::npos);
    ASSERT_EQ(s.agreement.size(), 1u) << s.agreement_reason;
    EXPECT_EQ(s.agreement[0].pairs, 8u);
    EXPECT_DOUBLE_EQ(s.agreement[0].agreement, 0.75);
    EXPECT_NEAR(s.agreement[0].kappa, (0.75 - 0.25) / (1 - 0.25), 1e-12);
}

// Where the store has the token ids, their digest decides what is identical; the text only stands
// in for runs without one.
TEST(AuditUnits, TokenDigestDecidesIdentity) {
    PanelTable p;
    p.models = {{.label = "m"}};
    // Seeds 1 and 2: same tokens, texts differ (say, a detokeniser detail) → one generation.
    // Seed 3: same text as seed 1 but other tokens → its own unit. Seeds 4 and 5: no digest, same text → merged.
    const std::vector<std::pair<std::string, std::string>> runs = {
        {"abc", "once upon"}, {"abc", "once upon "}, {"xyz", "once upon"}, {"", "a time"}, {"", "a time"}};
    for (std::size_t i = 0; i < runs.size(); ++i) {
        auto r = run("m", "c0", i < 3 ? "p0" : "p1", 0.0, 32, i + 1, runs[i].second, 2.0 + 0.1 * static_cast<double>(i));
        r.tokens_digest = runs[i].first;
        p.runs.push_back(r);
    }
    const auto u = distinct_runs(p, "raw");
    EXPECT_EQ(u.merged_identical, 2u);
    ASSERT_EQ(u.runs.size(), 3u);
    EXPECT_EQ(u.runs[0]->seed, 1u);
    EXPECT_EQ(u.runs[1]->seed, 3u);
    EXPECT_EQ(u.runs[2]->seed, 4u);
}

// A constant metric: the ANOVA has nothing to split and the REML shares are undefined, with the reason.
TEST(AuditUnits, ConstantMetricHasNoShares) {
    PanelTable p;
    for (int m = 0; m < 3; ++m) {
        p.models.push_back({.label = "m" + std::to_string(m)});
        for (int c = 0; c < 2; ++c)
            for (int k = 0; k < 4; ++k)
                p.runs.push_back(run("m" + std::to_string(m), "c" + std::to_string(c), "p" + std::to_string(k), 0.7, 32,
                                     k, "", 2.5));
    }
    const auto v = variance_decomposition(p, small_options());
    ASSERT_TRUE(v.ok()) << v.reason;
    ASSERT_EQ(v.reml_share.size(), 4u);
    for (double s : v.reml_share) EXPECT_TRUE(std::isnan(s));
    for (double s : v.reml.sigma2) EXPECT_EQ(s, 0.0);
    EXPECT_NE(v.reml_reason.find("constant"), std::string::npos) << v.reml_reason;
    for (const auto& t : v.anova.type2) EXPECT_TRUE(std::isnan(t.share));
}
