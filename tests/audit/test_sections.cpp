// Audit sections on synthetic panels: planted effects recovered, planted robust pairs found,
// bad input reported per section, hypotheses evaluated, JSON round trip.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "phasemap/audit/audit.hpp"
#include "phasemap/audit/hypotheses.hpp"
#include "phasemap/audit/report.hpp"
#include "phasemap/audit/result.hpp"

using namespace phasemap;
using namespace phasemap::audit;

namespace {

Options small_options() {
    Options o;
    o.bootstrap = 200;
    o.reml_bootstrap = 40;
    o.permutations = 200;
    o.seed = 42;
    return o;
}

// Effects with exactly the given population variance (mean 0).
std::vector<double> planted(std::size_t n, double var, std::mt19937_64& rng) {
    std::normal_distribution<double> nd;
    std::vector<double> v(n);
    for (auto& x : v) x = nd(rng);
    double m = 0, s = 0;
    for (double x : v) m += x;
    m /= static_cast<double>(n);
    for (double x : v) s += (x - m) * (x - m);
    s = std::sqrt(s / static_cast<double>(n));
    for (auto& x : v) x = s > 0 ? (x - m) / s * std::sqrt(var) : 0.0;   // one level: no effect
    return v;
}

PanelRun make_run(const std::string& model, const std::string& category, double ratio, int i) {
    PanelRun r;
    r.model = model;
    r.category = category;
    r.prompt = category + "#" + std::to_string(i);
    r.run_id = model + "/" + r.prompt;
    r.norm = "raw";
    r.temperature = 0;
    r.n_predict = 64;
    r.metrics["ratio_norm"] = ratio;
    return r;
}

// Model effect share 10 %, category 30 %, noise 60 % of the variance of ratio_norm. The seeded
// effects and each cell's seeded noise are standardised to exactly these population variances, so
// the planted shares hold exactly in the sample (the known answer) and the bootstrap intervals
// must contain them.
PanelTable effects_panel(std::uint64_t seed, std::size_t M = 8, std::size_t K = 6, std::size_t R = 40) {
    std::mt19937_64 rng(seed);
    const auto em = planted(M, 0.10, rng), ec = planted(K, 0.30, rng);
    PanelTable p;
    for (std::size_t i = 0; i < M; ++i) {
        PanelModel m;
        m.label = "m" + std::to_string(i);
        m.family = i < M / 2 ? "famA" : "famB";
        p.models.push_back(m);
    }
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < K; ++j) {
            const auto noise = planted(R, 0.60, rng);
            for (std::size_t k = 0; k < R; ++k)
                p.runs.push_back(make_run(fmt::format("m{}", i), fmt::format("c{}", j),
                                          3.0 + em[i] + ec[j] + noise[k], static_cast<int>(k)));
        }
    return p;
}

// Eight models over six categories: (p0, p1) and (q0, q1) share distinctive profiles; the four
// others share one common profile, so no pair among them is stable.
PanelTable pairs_panel(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0, 1);
    const std::vector<double> common = {3, 3, 3, 3, 3, 3};
    const std::vector<double> P = {9, 3, 9, 3, 9, 3}, Q = {3, 9, 3, 9, 3, 9};
    const std::vector<std::pair<std::string, const std::vector<double>*>> models = {
        {"p0", &P}, {"p1", &P}, {"q0", &Q}, {"q1", &Q}, {"x0", &common}, {"x1", &common}, {"x2", &common}, {"x3", &common}};
    PanelTable p;
    for (const auto& [name, prof] : models) {
        PanelModel m;
        m.label = name;
        m.family = name.substr(0, 1) == "x" ? "x" : "pq";
        p.models.push_back(m);
        for (std::size_t j = 0; j < prof->size(); ++j)
            for (int k = 0; k < 10; ++k)
                p.runs.push_back(make_run(name, fmt::format("c{}", j), (*prof)[j] + noise(rng), k));
    }
    return p;
}

}  // namespace

TEST(AuditSections, PlantedVarianceSharesRecoveredWithinCi) {
    const auto p = effects_panel(2024);
    Options o = small_options();
    const auto v = variance_decomposition(p, o);
    ASSERT_TRUE(v.ok()) << v.reason;
    ASSERT_TRUE(v.anova.interaction);
    // Type-II shares of model and category contain the planted 10 % and 30 %.
    EXPECT_LE(v.type2_ci[0].lo, 0.10);
    EXPECT_GE(v.type2_ci[0].hi, 0.10);
    EXPECT_LE(v.type2_ci[1].lo, 0.30);
    EXPECT_GE(v.type2_ci[1].hi, 0.30);
    // Noise: residual 60 %, no interaction planted.
    EXPECT_LE(v.type1_ci[3].lo, 0.60);
    EXPECT_GE(v.type1_ci[3].hi, 0.60);
    EXPECT_NEAR(v.anova.type1[2].share, 0.0, 1e-9);
    EXPECT_GT(v.type2_perm_p[2], 0.5);
    EXPECT_LT(v.type2_perm_p[0], 0.01);   // model effect is real
    // REML: the planted realised effects have population variance 0.1 / 0.3, i.e. sample variance
    // 0.1·M/(M−1) and 0.3·K/(K−1), which REML estimates; the residual is 0.6.
    ASSERT_EQ(v.reml_terms.size(), 4u);
    EXPECT_LE(v.reml_ci[0].lo, 0.10 * 8 / 7);
    EXPECT_GE(v.reml_ci[0].hi, 0.10 * 8 / 7);
    EXPECT_LE(v.reml_ci[1].lo, 0.30 * 6 / 5);
    EXPECT_GE(v.reml_ci[1].hi, 0.30 * 6 / 5);
    EXPECT_LE(v.reml_ci[3].lo, 0.60);
    EXPECT_GE(v.reml_ci[3].hi, 0.60);
    // A very different planted split must not be "recovered": the CI excludes 30 % for the model.
    EXPECT_LT(v.type2_ci[0].hi, 0.30);
}

TEST(AuditSections, PlantedRobustPairsFoundExactly) {
    const auto p = pairs_panel(99);
    Options o = small_options();
    const auto t = topology(p, o);
    ASSERT_TRUE(t.ok()) << t.reason;
    std::set<std::pair<std::string, std::string>> robust;
    for (const auto& x : t.pairs)
        if (x.robust) robust.insert({x.a, x.b});
    const std::set<std::pair<std::string, std::string>> want = {{"p0", "p1"}, {"q0", "q1"}};
    EXPECT_EQ(robust, want);
    EXPECT_EQ(t.robust_pairs, 2u);
    EXPECT_DOUBLE_EQ(t.fragmentation, 1.0 - 4.0 / 8.0);
    EXPECT_EQ(t.merges.size(), 7u);
    EXPECT_TRUE(std::isfinite(t.ari));
}

TEST(AuditSections, RegimeTableLabelsAndShares) {
    PanelTable p;
    for (int i = 0; i < 20; ++i) {
        p.runs.push_back(make_run("under", "c0", 1.6 + 0.01 * (i % 5), i));
        p.runs.push_back(make_run("chaos", "c0", 8.0 + 0.5 * (i % 3), i));
    }
    p.models = {{.label = "under"}, {.label = "chaos"}};
    const auto r = regime_table(p, small_options());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.models.size(), 2u);
    EXPECT_EQ(r.models[0].model, "chaos");
    EXPECT_EQ(r.models[0].label, "CHAOTIC");
    EXPECT_EQ(r.models[1].label, "UNDERACTIVE");
    EXPECT_DOUBLE_EQ(r.models[1].label_share, 1.0);
    EXPECT_EQ(r.cells.size(), 2u);
    EXPECT_LE(r.models[1].ci.lo, r.models[1].mean);
    EXPECT_GE(r.models[1].ci.hi, r.models[1].mean);
}

TEST(AuditSections, NormalisationSensitivityKappa) {
    PanelTable p = effects_panel(5, 4, 3, 10);
    const std::size_t n = p.runs.size();
    for (std::size_t i = 0; i < n; ++i) {
        PanelRun r = p.runs[i];
        r.norm = "clipped_mad";
        r.metrics["ratio_norm"] = r.metrics["ratio_norm"] * 0.5;   // shifts many labels
        p.runs.push_back(r);
    }
    const auto s = normalisation_sensitivity(p, small_options());
    ASSERT_TRUE(s.ok()) << s.reason;
    ASSERT_EQ(s.modes.size(), 2u);
    ASSERT_EQ(s.agreement.size(), 1u);
    EXPECT_EQ(s.agreement[0].pairs, n);
    EXPECT_LT(s.agreement[0].kappa, 0.9);
    // η² is scale-free: both modes separate models equally.
    EXPECT_NEAR(s.modes[0].eta2, s.modes[1].eta2, 1e-12);
    EXPECT_NEAR(s.modes[0].kw.H, s.modes[1].kw.H, 1e-9);
}

TEST(AuditSections, CyclesRoboustnessVariantsControls) {
    PanelTable p = effects_panel(11, 4, 3, 8);
    p.models[1].variant_of = "m0";
    for (std::size_t i = 0; i < p.models.size(); ++i) {
        p.models[i].covariates["training_loss"] = 2.0 + static_cast<double>(i);
    }
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(0, 1);
    int k = 0;
    for (auto& r : p.runs) {
        r.metrics["exit_rate"] = u(rng);
        r.metrics["reopening_rate"] = u(rng);
        r.metrics["collapse_episodes"] = 1 + (k % 4);
        r.metrics["collapse_rate"] = 0.4;
        r.metrics["rivalry_rate"] = 0.3;
        r.metrics["diffuse_rate"] = 0.1;
        r.metrics["steady_rate"] = 0.2;
        r.metrics["perplexity"] = r.metrics["ratio_norm"] * 2 + u(rng);
        const bool collapsed = (k % 3) == 0;
        r.metrics["late_ct"] = collapsed ? 0.0005 * u(rng) : 0.01 + u(rng);
        r.metrics["mean_entropy"] = u(rng);
        r.text = collapsed ? "the the the the the the the the the the" : "a varied sentence with several distinct words " + std::to_string(k);
        r.temperature = (k % 2) ? 0.7 : 0.1;
        r.metrics["token_order_p"] = u(rng);
        ++k;
    }
    const Options o = small_options();
    const auto c = cycles(p, o);
    ASSERT_TRUE(c.ok()) << c.reason;
    EXPECT_EQ(c.models.size(), 4u);
    EXPECT_NEAR(c.models[0].state_rates[0].value, 0.4, 1e-12);
    EXPECT_FALSE(c.transitions_reason.empty());

    const auto r = robustness(p, o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.temperature.size(), 1u);
    EXPECT_FALSE(r.budget_reason.empty());
    ASSERT_FALSE(r.perplexity.empty());
    EXPECT_GT(r.perplexity[0].pearson.r, 0.5);
    ASSERT_TRUE(r.predictor_reason.empty()) << r.predictor_reason;
    EXPECT_DOUBLE_EQ(r.predictor.test_accuracy, 1.0);
    EXPECT_DOUBLE_EQ(r.predictor.test_auc, 1.0);
    EXPECT_EQ(r.predictor.entropy_metric, "mean_entropy");
    // The ROC points of the test split: from (0, 0) to (1, 1), the trapezoid area is the AUC (the
    // perfect late_ct predictor reaches (0, 1)); they go through the JSON and back unchanged.
    auto area = [](const std::vector<phasemap::stats::RocPoint>& roc) {
        double a = 0;
        for (size_t i = 1; i < roc.size(); ++i) a += (roc[i].fpr - roc[i - 1].fpr) * (roc[i].tpr + roc[i - 1].tpr) / 2;
        return a;
    };
    for (const auto* roc : {&r.predictor.test_roc, &r.predictor.entropy_test_roc}) {
        ASSERT_GE(roc->size(), 3u);
        EXPECT_EQ(roc->front().fpr, 0.0);
        EXPECT_EQ(roc->front().tpr, 0.0);
        EXPECT_EQ(roc->back().fpr, 1.0);
        EXPECT_EQ(roc->back().tpr, 1.0);
        EXPECT_LE(roc->size(), r.predictor.test + 1);
    }
    EXPECT_NEAR(area(r.predictor.test_roc), r.predictor.test_auc, 1e-12);
    EXPECT_NEAR(area(r.predictor.entropy_test_roc), r.predictor.entropy_test_auc, 1e-12);
    EXPECT_TRUE(std::any_of(r.predictor.test_roc.begin(), r.predictor.test_roc.end(),
                            [](const auto& q) { return q.fpr == 0.0 && q.tpr == 1.0; }));
    {
        const json j = to_json(r);
        const auto& roc = j["collapse_predictor"]["test_roc"];
        ASSERT_EQ(roc.size(), r.predictor.test_roc.size());
        EXPECT_EQ(roc[1]["fpr"].get<double>(), r.predictor.test_roc[1].fpr);
        EXPECT_EQ(roc[1]["tpr"].get<double>(), r.predictor.test_roc[1].tpr);
        Robustness back;
        from_json(j, back);
        ASSERT_EQ(back.predictor.entropy_test_roc.size(), r.predictor.entropy_test_roc.size());
        for (size_t i = 0; i < back.predictor.entropy_test_roc.size(); ++i) {
            EXPECT_EQ(back.predictor.entropy_test_roc[i].fpr, r.predictor.entropy_test_roc[i].fpr);
            EXPECT_EQ(back.predictor.entropy_test_roc[i].tpr, r.predictor.entropy_test_roc[i].tpr);
        }
    }

    const auto v = variants(p, o);
    ASSERT_TRUE(v.ok());
    ASSERT_EQ(v.variants.size(), 1u);
    EXPECT_EQ(v.variants[0].model, "m1");
    EXPECT_LE(v.variants[0].delta_ci.lo, v.variants[0].delta);
    ASSERT_EQ(v.covariates.size(), 1u);
    EXPECT_EQ(v.covariates[0].pearson.n, 4u);

    const auto ctl = controls(p, o);
    ASSERT_TRUE(ctl.ok()) << ctl.reason;
    EXPECT_EQ(ctl.effects.size(), 3u);   // model, family, category
    EXPECT_EQ(ctl.baselines.size(), 4u);
}

TEST(AuditSections, TextCollapseLabel) {
    EXPECT_TRUE(text_collapsed(""));
    EXPECT_TRUE(text_collapsed("ok then"));
    EXPECT_TRUE(text_collapsed("go go go go go go go go"));
    EXPECT_FALSE(text_collapsed("the quick brown fox jumps over the lazy dog"));
}

// Bad input: every section reports its own reason and the others still run.
TEST(AuditSections, BadInputPerSection) {
    const Options o = small_options();
    const HypothesisFile none;
    // Empty panel.
    PanelTable empty;
    for (const auto& s : section_names()) {
        const auto r = run_section(s, empty, o, &none);
        EXPECT_FALSE(r.ok) << s;
        EXPECT_NE(r.reason.find("empty"), std::string::npos) << s << ": " << r.reason;
        EXPECT_FALSE(r.table.empty());
        EXPECT_EQ(r.data["ok"], false);
    }
    // Single model: regime runs, the model comparisons say why not; the normalisation section runs
    // (κ between modes is defined) and says why it has no between-model statistics.
    PanelTable one = effects_panel(1, 1, 3, 5);
    EXPECT_TRUE(run_section("regime", one, o).ok);
    for (const char* s : {"variance", "topology"}) {
        const auto r = run_section(s, one, o);
        EXPECT_FALSE(r.ok) << s;
        EXPECT_NE(r.reason.find("single model"), std::string::npos) << s << ": " << r.reason;
    }
    {
        const auto r = run_section("normalisation", one, o);
        EXPECT_TRUE(r.ok) << r.reason;
        EXPECT_NE(r.data.value("modes_reason", std::string()).find("single model"), std::string::npos) << r.data.dump();
    }
    // Single category.
    PanelTable cat = effects_panel(1, 4, 1, 5);
    EXPECT_TRUE(run_section("regime", cat, o).ok);
    EXPECT_TRUE(run_section("normalisation", cat, o).ok);
    for (const char* s : {"variance", "topology"}) {
        const auto r = run_section(s, cat, o);
        EXPECT_FALSE(r.ok) << s;
        EXPECT_NE(r.reason.find("single category"), std::string::npos) << s << ": " << r.reason;
    }
    // Missing metric.
    PanelTable miss = effects_panel(1, 3, 3, 4);
    for (auto& r : miss.runs) {
        r.metrics.erase("ratio_norm");
        r.metrics["exit_rate"] = 0.5;
    }
    for (const char* s : {"regime", "normalisation", "variance", "topology", "variants", "controls"}) {
        const auto r = run_section(s, miss, o);
        EXPECT_FALSE(r.ok) << s;
        EXPECT_NE(r.reason.find("missing metric"), std::string::npos) << s << ": " << r.reason;
    }
    EXPECT_TRUE(run_section("cycles", miss, o).ok);
    // A selectable metric that does not exist.
    Options om = o;
    om.metric = "no_such_metric";
    const auto r = run_section("variance", effects_panel(1, 3, 3, 4), om);
    EXPECT_NE(r.reason.find("no_such_metric"), std::string::npos);
    // No hypotheses file.
    EXPECT_NE(run_section("hypotheses", one, o).reason.find("--hypotheses"), std::string::npos);
    EXPECT_THROW(run_section("nope", one, o), std::invalid_argument);
}

TEST(AuditSections, DeterministicInSeed) {
    const auto p = effects_panel(8, 4, 3, 6);
    const Options o = small_options();
    EXPECT_EQ(run_section("variance", p, o).data.dump(), run_section("variance", p, o).data.dump());
    Options o2 = o;
    o2.seed = 43;
    EXPECT_NE(run_section("variance", p, o).data.dump(), run_section("variance", p, o2).data.dump());
}

TEST(AuditHypotheses, VerdictsAndOrder) {
    PanelTable p;
    p.models = {{.label = "low", .family = "A"}, {.label = "low2", .family = "A"}, {.label = "high", .family = "B"},
                {.label = "high2", .family = "B"}};
    std::mt19937_64 rng(1);
    std::normal_distribution<double> nd(0, 0.05);
    for (int i = 0; i < 30; ++i)
        for (const auto& [m, base] : {std::pair<std::string, double>{"low", 1.6}, {"low2", 1.65}, {"high", 2.5}, {"high2", 2.6}}) {
            auto r = make_run(m, i % 2 ? "c0" : "c1", base + nd(rng), i);
            r.temperature = i % 3 ? 0.2 : 0.8;
            p.runs.push_back(r);
        }
    const auto file = parse_hypotheses(R"(
[subpanel]
models = ["low", "high"]

[[hypothesis]]
id = "A-below-B"
claim = "family A's ratio_norm < family B's"
type = "compare"
a = ["A"]
b = ["B"]
direction = "less"

[[hypothesis]]
id = "A-above-B"
type = "compare"
a = ["A"]
b = ["B"]
direction = "greater"
test = "welch_t"

[[hypothesis]]
id = "low-underactive"
type = "regime"
model = "low"
regime = "UNDERACTIVE"

[[hypothesis]]
id = "low-chaotic"
type = "regime"
model = "low"
regime = "CHAOTIC"

[[hypothesis]]
id = "model-share"
type = "variance_share"
factor = "model"
min_share = 0.5

[[hypothesis]]
id = "stable"
type = "ranking_stable"
across = "temperature"
min_tau = 0.3
)");
    ASSERT_EQ(file.hypotheses.size(), 6u);
    Options o = small_options();
    const auto reg = falsification_registry(p, file, o);
    ASSERT_TRUE(reg.ok());
    std::map<std::string, Verdict> full, sub;
    for (const auto& r : reg.results) {
        full[r.hypothesis.id] = r.full.verdict;
        sub[r.hypothesis.id] = r.subpanel.verdict;
    }
    EXPECT_EQ(full["A-below-B"], Verdict::SURVIVED);
    EXPECT_EQ(full["A-above-B"], Verdict::FALSIFIED);
    EXPECT_EQ(full["low-underactive"], Verdict::SURVIVED);
    EXPECT_EQ(full["low-chaotic"], Verdict::FALSIFIED);
    EXPECT_EQ(full["model-share"], Verdict::SURVIVED);
    // Sub-panel of 2 models, one per family: run-level test still decides.
    EXPECT_EQ(sub["A-below-B"], Verdict::SURVIVED);
    // Falsified first.
    EXPECT_EQ(reg.results.front().full.verdict, Verdict::FALSIFIED);
    for (std::size_t i = 1; i < reg.results.size(); ++i)
        EXPECT_LE(static_cast<int>(reg.results[i - 1].full.verdict), static_cast<int>(reg.results[i].full.verdict));
    EXPECT_FALSE(to_table(reg).empty());
    EXPECT_EQ(to_json(reg)["results"].size(), 6u);
}

TEST(AuditHypotheses, BadFilesAreRejectedWithTheirPlace) {
    EXPECT_THROW(parse_hypotheses("[[hypothesis]]\ntype = \"nope\"\n"), std::invalid_argument);
    EXPECT_THROW(parse_hypotheses("[[hypothesis]]\ntype = \"regime\"\nmodel = \"x\"\nregime = \"WILD\"\n"),
                 std::invalid_argument);
    EXPECT_THROW(parse_hypotheses("x = 1\n"), std::invalid_argument);
    EXPECT_THROW(parse_hypotheses("[[hypothesis]\n"), std::invalid_argument);
    try {
        parse_hypotheses("[[hypothesis]]\nid = \"H9\"\ntype = \"compare\"\na = [\"A\"]\n", "f.toml");
        FAIL();
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("f.toml"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("H9"), std::string::npos);
    }
}

TEST(AuditHypotheses, ShippedLimenFileParsesAndRuns) {
    const auto file = load_hypotheses(std::string(PHASEMAP_SOURCE_DIR) + "/examples/limen_hypotheses.toml");
    EXPECT_GE(file.hypotheses.size(), 6u);
    const auto reg = falsification_registry(effects_panel(3, 4, 3, 5), file, small_options());
    EXPECT_EQ(reg.results.size(), file.hypotheses.size());
}

TEST(AuditPanelJson, RoundTrip) {
    PanelTable p = effects_panel(4, 2, 2, 2);
    p.models[0].variant_of = "m1";
    p.models[0].covariates["size_b"] = 0.5;
    p.runs[0].metrics["late_ct"] = std::numeric_limits<double>::quiet_NaN();
    const nlohmann::json j = p;
    const auto q = j.get<PanelTable>();
    ASSERT_EQ(q.runs.size(), p.runs.size());
    EXPECT_EQ(*q.models[0].variant_of, "m1");
    EXPECT_EQ(q.models[0].covariates.at("size_b"), 0.5);
    EXPECT_TRUE(std::isnan(q.runs[0].metrics.at("late_ct")));
    EXPECT_EQ(q.runs[3].metrics.at("ratio_norm"), p.runs[3].metrics.at("ratio_norm"));
    EXPECT_EQ(nlohmann::json(q).dump(), j.dump());
}
