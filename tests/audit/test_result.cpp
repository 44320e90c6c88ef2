// The audit's typed result (include/phasemap/audit/result.hpp): for the document of every section
// as run_section writes it — ran, did not run (reason), threw (error) — from_json then to_json
// gives the same JSON; a missing or mistyped required field is one error naming its path.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "phasemap/audit/audit.hpp"
#include "phasemap/audit/hypotheses.hpp"
#include "phasemap/audit/report.hpp"
#include "phasemap/audit/result.hpp"
#include "support/paths.hpp"

using namespace phasemap;
using namespace phasemap::audit;

namespace {

PanelRun run(const std::string& model, const std::string& category, double ratio, int i) {
    PanelRun r;
    r.run_id = model + "-" + category + "-" + std::to_string(i);
    r.model = model;
    r.category = category;
    r.prompt = "prompt " + std::to_string(i % 5);
    r.seed = static_cast<std::uint64_t>(i);
    r.temperature = i % 2 ? 0.7 : 0.1;
    r.n_predict = i % 3 ? 32 : 64;
    r.n_generated = r.n_predict;
    r.norm = "raw";
    r.text = "a varied sentence with several distinct words " + std::to_string(i);
    r.metrics["ratio_norm"] = ratio;
    return r;
}

// A panel on which every section runs: 4 models of 2 families (one a variant, with covariates),
// 3 categories, two temperatures and budgets, the cycle, predictor and shuffle metrics.
PanelTable rich_panel() {
    std::mt19937_64 rng(11);
    std::normal_distribution<double> nd(0, 0.4);
    std::uniform_real_distribution<double> u(0, 1);
    PanelTable p;
    for (int m = 0; m < 4; ++m) {
        PanelModel pm;
        pm.label = "m" + std::to_string(m);
        pm.family = m < 2 ? "famA" : "famB";
        pm.covariates["training_loss"] = 2.0 + m;
        p.models.push_back(pm);
    }
    p.models[1].variant_of = "m0";
    int k = 0;
    for (int m = 0; m < 4; ++m)
        for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 8; ++i, ++k) {
                PanelRun r = run(fmt::format("m{}", m), fmt::format("c{}", c), 2.0 + 0.5 * m + 0.3 * c + nd(rng), k);
                r.metrics["exit_rate"] = u(rng);
                r.metrics["reopening_rate"] = u(rng);
                r.metrics["collapse_episodes"] = 1 + (k % 4);
                r.metrics["collapse_rate"] = 0.4;
                r.metrics["rivalry_rate"] = 0.3;
                r.metrics["diffuse_rate"] = 0.1;
                r.metrics["steady_rate"] = 0.2;
                r.metrics["dwell_mean_COLLAPSE"] = 2 + u(rng);
                r.metrics["perplexity"] = r.metrics["ratio_norm"] * 2 + u(rng);
                const bool collapsed = (k % 3) == 0;
                r.metrics["late_ct"] = collapsed ? 0.0005 * u(rng) : 0.01 + u(rng);
                r.metrics["mean_entropy"] = u(rng);
                if (collapsed) r.text = "the the the the the the the the the the";
                r.metrics["token_order_p"] = u(rng);
                p.runs.push_back(r);
            }
    return p;
}

Options small() {
    Options o;
    o.bootstrap = 100;
    o.reml_bootstrap = 20;
    o.permutations = 100;
    o.seed = 5;
    return o;
}

const char* kHypotheses = R"(
[subpanel]
models = ["m0", "m2"]

[[hypothesis]]
id = "A-below-B"
claim = "family A's ratio_norm < family B's"
type = "compare"
a = ["famA"]
b = ["famB"]
direction = "less"

[[hypothesis]]
id = "m0-chaotic"
type = "regime"
model = "m0"
regime = "CHAOTIC"
)";

AuditResult audit_of(const PanelTable& p, const Options& o, const HypothesisFile* h) {
    AuditResult r;
    r.phasemap_version = "test";
    r.source = "panel.json";
    r.options = o;
    r.panel_models = p.models.size();
    r.panel_runs = p.runs.size();
    for (const auto& name : section_names()) r.sections.push_back(run_section(name, p, o, h).section);
    return r;
}

void expect_round_trip(const AuditResult& r) {
    const json j = to_json(r);
    const AuditResult back = audit_result_from_json(j);
    EXPECT_EQ(to_json(back), j);
    ASSERT_EQ(back.sections.size(), j["sections"].size());
    for (const auto& s : back.sections) {
        EXPECT_EQ(to_json(audit_section_from_json(s.name, j["sections"][s.name])), j["sections"][s.name]) << s.name;
        EXPECT_EQ(s.ok(), j["sections"][s.name]["ok"].get<bool>()) << s.name;
    }
}

}  // namespace

TEST(AuditResultJson, EverySectionThatRanRoundTrips) {
    const PanelTable p = rich_panel();
    const HypothesisFile h = parse_hypotheses(kHypotheses);
    const AuditResult r = audit_of(p, small(), &h);
    std::size_t ok = 0;
    for (const auto& s : r.sections) {
        ok += s.ok();
        EXPECT_TRUE(s.ok()) << s.name << ": " << s.reason();
    }
    EXPECT_EQ(ok, section_names().size());
    // The parts the report draws, read back as typed fields.
    const json j = to_json(r);
    const AuditResult back = audit_result_from_json(j);
    for (const auto& s : back.sections)
        if (const auto* t = s.get<Topology>()) {
            EXPECT_EQ(t->models.size(), 4u);
            EXPECT_EQ(t->distances.rows(), 4);
            EXPECT_EQ(t->merges.size(), 3u);
        } else if (const auto* v = s.get<VarianceDecomposition>()) {
            EXPECT_FALSE(v->anova.type2.empty());
            EXPECT_EQ(v->reml_terms.size(), v->reml_share.size());
        } else if (const auto* reg = s.get<Registry>()) {
            EXPECT_EQ(reg->results.size(), 2u);
        }
    EXPECT_EQ(back.options.seed, 5u);
    EXPECT_EQ(back.options.cuts.adaptive_below, Options{}.cuts.adaptive_below);
    expect_round_trip(r);
}

TEST(AuditResultJson, SectionsThatDidNotRunRoundTrip) {
    // An empty panel: every section reports its reason; hypotheses without a file say so.
    expect_round_trip(audit_of(PanelTable{}, small(), nullptr));
    // One model, one category, one temperature: the partial reasons (modes, ari, temperature, …).
    PanelTable one;
    one.models.push_back({.label = "solo"});
    for (int i = 0; i < 10; ++i) one.runs.push_back(run("solo", "c", 2.0 + 0.1 * i, i));
    const AuditResult r = audit_of(one, small(), nullptr);
    std::size_t not_ok = 0;
    for (const auto& s : r.sections) not_ok += !s.ok();
    EXPECT_GT(not_ok, 0u);
    expect_round_trip(r);
    // A section that threw: only {section, ok: false, reason}.
    AuditResult e = r;
    AuditSection thrown;
    thrown.name = "variance";
    thrown.error = "error: singular design";
    e.sections = {thrown};
    const json j = to_json(e);
    EXPECT_EQ(j["sections"]["variance"], json({{"section", "variance"}, {"ok", false}, {"reason", "error: singular design"}}));
    const AuditResult back = audit_result_from_json(j);
    ASSERT_EQ(back.sections.size(), 1u);
    EXPECT_FALSE(back.sections[0].result.has_value());
    EXPECT_EQ(back.sections[0].reason(), "error: singular design");
    expect_round_trip(e);
}

TEST(AuditResultJson, MissingOrRenamedFieldIsOneErrorNamingIt) {
    const HypothesisFile h = parse_hypotheses(kHypotheses);
    const json good = to_json(audit_of(rich_panel(), small(), &h));
    auto error_of = [](const json& j) {
        try {
            audit_result_from_json(j);
        } catch (const JsonError& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    json j = good;
    j["sections"]["topology"]["pairs"][0].erase("share");
    EXPECT_EQ(error_of(j), "sections.topology.pairs[0].share: missing");
    j = good;
    j["sections"]["variance"]["type2"][1]["shares"] = j["sections"]["variance"]["type2"][1]["share"];
    j["sections"]["variance"]["type2"][1].erase("share");
    EXPECT_EQ(error_of(j), "sections.variance.type2[1].share: missing");
    j = good;
    j["sections"]["cycles"]["models"][0]["exit_rate"]["n"] = "eight";
    EXPECT_EQ(error_of(j), "sections.cycles.models[0].exit_rate.n: expected a count");
    j = good;
    j["sections"]["hypotheses"]["results"][1]["full"]["verdict"] = "MAYBE";
    EXPECT_EQ(error_of(j), "sections.hypotheses.results[1].full.verdict: unknown verdict \"MAYBE\"");
    j = good;
    j.erase("phasemap_version");
    EXPECT_EQ(error_of(j), "phasemap_version: missing");
    j = good;
    j["options"]["regime_cuts"] = {1.0, 2.0};
    EXPECT_EQ(error_of(j), "options.regime_cuts: expected three cut-points");
    j = good;
    j["sections"]["regime"]["section"] = "normalisation";
    EXPECT_EQ(error_of(j), "sections.regime.section: expected \"regime\"");
    j = good;
    j["sections"]["renamed"] = j["sections"]["regime"];
    EXPECT_EQ(error_of(j), "sections.renamed: unknown audit section \"renamed\"");
    // A section's own from_json names the path inside the section.
    json reg = good["sections"]["regime"];
    reg["models"][0].erase("label");
    EXPECT_THROW(
        {
            try {
                reg.get<RegimeTable>();
            } catch (const JsonError& e) {
                EXPECT_STREQ(e.what(), "models[0].label: missing");
                throw;
            }
        },
        JsonError);
}

// Files written by `phasemap audit --json`: the report fixture (every section ran, with a
// hypotheses file; written by the binary before the typed result existed) and a fresh run of the
// current binary on it, which must write the same document.
TEST(AuditResultJson, CliFilesRoundTrip) {
    namespace fs = std::filesystem;
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/report/fixtures/pre-typed";
    std::ifstream f(fx / "audit.json");
    ASSERT_TRUE(f) << fx;
    const json j = json::parse(f);
    const AuditResult r = audit_result_from_json(j);
    EXPECT_EQ(r.sections.size(), 9u);
    for (const auto& s : r.sections) EXPECT_TRUE(s.ok()) << s.name << ": " << s.reason();
    EXPECT_EQ(to_json(r), j);
    pmtest::TempDir tmp;
    const fs::path out = tmp / "audit.json";
    const auto res = pmtest::run_command({"/bin/sh", "-c", "cd '" + fx.string() + "' && exec '" + pmtest::phasemap_binary().string() +
                                                               "' audit --panel-json panel.json --hypotheses hypotheses.toml --bootstrap 100 "
                                                               "--permutations 100 --reml-bootstrap 20 -q --json '" + out.string() + "'"});
    ASSERT_EQ(res.exit_code, 0) << res.err;
    std::ifstream g(out);
    json now = json::parse(g), before = j;
    now.erase("phasemap_version");
    before.erase("phasemap_version");
    // The fixture predates the ROC points: the current binary adds them and changes nothing else.
    json& cp = now["sections"]["robustness"]["collapse_predictor"];
    ASSERT_TRUE(cp.contains("test_roc") && cp.contains("entropy_test_roc")) << cp.dump();
    EXPECT_FALSE(before["sections"]["robustness"]["collapse_predictor"].contains("test_roc"));
    cp.erase("test_roc");
    cp.erase("entropy_test_roc");
    EXPECT_EQ(now, before);
}
