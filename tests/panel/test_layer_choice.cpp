// An integer layer choice means the same layer in analyze, panel, the monitor and control-audit
// (include/phasemap/metrics/layer_id.hpp: an integer N is hf:N). Each verb runs on a capture of
// hf:all with --metric-layer 2 / [metrics] layer = 2, and its token-axis numbers are compared
// with `analyze --metric-layer hf:2` on the same greedy run.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "phasemap/store/store.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using namespace phasemap;

namespace {

nlohmann::json read_json(const fs::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

const char* kPrompt = "Once upon a time there was a little cat named Tom.";  // builtin stories, animals #1

}  // namespace

TEST(LayerChoice, AnIntegerIsTheSameHfLayerInAnalyzePanelMonitorAndControlAudit) {
    const fs::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    const std::string M = model.string();
    auto ok = [](const pmtest::RunResult& r) {
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.exit_code == 0;
    };
    ASSERT_TRUE(ok(pmtest::run_phasemap({"generate", "-m", M, "-p", kPrompt, "-n", "12", "--layers", "hf:all", "-o",
                                         (d / "run.npz").string(), "-q"})));
    // The reference: the explicit label.
    ASSERT_TRUE(ok(pmtest::run_phasemap({"analyze", (d / "run.npz").string(), "--metric-layer", "hf:2", "--json",
                                         (d / "ref.json").string()})));
    const nlohmann::json ref = read_json(d / "ref.json");
    ASSERT_EQ(ref["token_axis"]["layer"], "hf:2");
    const double ref_ratio = ref["token_axis"]["ratio_norm"].get<double>();
    const nlohmann::json ref_ct = ref["per_token"]["ct_t"];
    // hf:3 (what the integer used to pick after hf:0 was dropped) gives other numbers, so each
    // comparison below tells the two apart.
    ASSERT_TRUE(ok(pmtest::run_phasemap({"analyze", (d / "run.npz").string(), "--metric-layer", "hf:3", "--json",
                                         (d / "hf3.json").string()})));
    ASSERT_NE(read_json(d / "hf3.json")["token_axis"]["ratio_norm"], ref["token_axis"]["ratio_norm"]);

    // analyze
    ASSERT_TRUE(ok(pmtest::run_phasemap({"analyze", (d / "run.npz").string(), "--metric-layer", "2", "--json",
                                         (d / "a.json").string()})));
    const nlohmann::json a = read_json(d / "a.json");
    EXPECT_EQ(a["token_axis"], ref["token_axis"]);
    EXPECT_EQ(a["per_token"], ref["per_token"]);

    // panel ([metrics] layer = 2)
    {
        std::ofstream(d / "panel.toml")
            << "name = \"layer-choice\"\n[generation]\ntemperatures = [0.0]\nn_predict = 12\nseeds = [1]\nlayers = \"hf:all\"\n"
               "[metrics]\nlayer = 2\n[[models]]\nlabel = \"stories\"\npath = \"" << M << "\"\n"
               "[[prompts]]\nbuiltin = \"stories\"\ncategories = [\"animals\"]\nlimit = 1\n";
    }
    ASSERT_TRUE(ok(pmtest::run_phasemap({"panel", "run", (d / "panel.toml").string(), "--db", (d / "p.duckdb").string(), "-t", "1"})));
    {
        auto db = store::Store::open(d / "p.duckdb", {.read_only = true});
        const auto prompt = db->rows("SELECT prompt FROM runs WHERE norm = 'raw'");
        ASSERT_EQ(prompt, std::vector<std::string>{kPrompt});
        EXPECT_EQ(db->rows("SELECT metric_layer FROM runs WHERE norm = 'raw'"), std::vector<std::string>{"hf:2"});
        const auto rn = db->rows("SELECT ratio_norm FROM runs WHERE norm = 'raw'");
        ASSERT_EQ(rn.size(), 1u);
        EXPECT_NEAR(std::stod(rn[0]), ref_ratio, 1e-9 * ref_ratio);
        const auto ct = db->rows("SELECT ct_t FROM tokens k JOIN runs r USING (run_id) WHERE r.norm = 'raw' AND ct_t IS NOT NULL ORDER BY t");
        ASSERT_EQ(ct.size(), ref_ct.size() - 2);
        for (size_t i = 0; i < ct.size(); ++i) EXPECT_NEAR(std::stod(ct[i]), ref_ct[i + 2].get<double>(), 1e-9) << i;
    }

    // monitor (generate --monitor --metric-layer 2): its online ct_t is that of hf:2
    ASSERT_TRUE(ok(pmtest::run_phasemap({"generate", "-m", M, "-p", kPrompt, "-n", "12", "--layers", "hf:all", "--monitor",
                                         "--metric-layer", "2", "--monitor-json", (d / "mon.json").string(), "-q"})));
    {
        const nlohmann::json mon = read_json(d / "mon.json");
        ASSERT_EQ(mon["ct_first_t"], 2);
        // ct from t = 2 on (the monitor acts after a token, so the last one may be missing)
        ASSERT_GE(mon["ct"].size(), ref_ct.size() - 3);
        ASSERT_LE(mon["ct"].size(), ref_ct.size() - 2);
        for (size_t i = 0; i < mon["ct"].size(); ++i) EXPECT_NEAR(mon["ct"][i].get<double>(), ref_ct[i + 2].get<double>(), 1e-6) << i;
    }

    // control-audit --metric-layer 2: the baseline arm's ratio_norm is hf:2's
    std::ofstream(d / "prompts.txt") << kPrompt << "\n";
    ASSERT_TRUE(ok(pmtest::run_phasemap({"control-audit", "-m", M, "--prompts", (d / "prompts.txt").string(), "--intervene",
                                         "scale:block:2:0.5", "-n", "12", "--layers", "hf:all", "--metric-layer", "2",
                                         "--bootstrap", "10", "-t", "1", "-q", "-o", (d / "ca.json").string()})));
    {
        const nlohmann::json ca = read_json(d / "ca.json");
        EXPECT_EQ(ca["metric_layer"], "hf:2");
        EXPECT_NEAR(ca["per_prompt"][0]["baseline"]["ratio_norm"].get<double>(), ref_ratio, 1e-6 * ref_ratio);
    }
}
