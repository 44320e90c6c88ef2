// `phasemap control-audit` (src/cli/cmd_control_audit.cpp): JSON and the results DB.
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <set>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/steer/vectors.hpp"
#include "phasemap/plan/results.hpp"
#include "phasemap/store/store.hpp"
#include "support/steer_fixtures.hpp"

using namespace steertest;

TEST(ControlAudit, CliWritesTheResultsDbOnStoriesAndRwkv) {
    pmtest::TempDir dir;
    write_text(dir / "prompts.txt", std::string(kA) + "\n" + kB + "\nThe little dog was sad\n");
    const std::string db = (dir / "r.duckdb").string();
    size_t done = 0;
    const std::vector<std::pair<std::string, std::string>> models = {{"stories260K.gguf", "stories"}, {"tiny-rwkv7-834K.gguf", "rwkv7"}};
    for (const auto& [file, name] : models) {
        auto model = load_shared(file);
        if (!model) GTEST_SKIP() << file << " is not present";
        std::ostringstream v;
        for (float x : random_direction(size_t(model->info().n_embd), 4.0, 42)) v << x << "\n";
        write_text(dir / "v.txt", v.str());
        const auto res = pmtest::run_phasemap({"control-audit", "-m", pmtest::shared_model(file).string(), "--prompts",
                                               (dir / "prompts.txt").string(), "--intervene", "add:block:2:" + (dir / "v.txt").string() + ":1.0",
                                               "-n", "16", "--bootstrap", "200", "--db", db, "--name", name, "-o",
                                               (dir / (name + ".json")).string()});
        ASSERT_EQ(res.exit_code, 0) << file << ": " << res.err;
        EXPECT_NE(res.out.find("stored control_audit '" + name + "'"), std::string::npos) << res.out;
        ++done;
    }
    ASSERT_EQ(done, 2u);
    {
        const auto st = store::Store::open(db, {.read_only = true});
        const auto es = st->audits(plan::kControlAuditKind);
        ASSERT_EQ(es.size(), 2u);
        for (const auto& e : es) {
            SCOPED_TRACE(e.name);
            EXPECT_TRUE(e.name == "stories" || e.name == "rwkv7");
            EXPECT_EQ(e.data, read_json_file(dir / (e.name + ".json")));
            EXPECT_EQ(e.data["arms"], nlohmann::json({"baseline", "intervened", "random", "zero"}));
            EXPECT_EQ(e.source, (dir / "prompts.txt").string());
            EXPECT_EQ(e.options["prompts"], 3);
            EXPECT_EQ(e.options["interventions"].size(), 1u);
            const std::string t = "control_" + e.name;
            const std::set<std::string> tables(e.tables.begin(), e.tables.end());
            ASSERT_TRUE(tables.count(t + "_per_prompt")) << ::testing::PrintToString(e.tables);
            ASSERT_TRUE(tables.count(t + "_summary_rows")) << ::testing::PrintToString(e.tables);
            EXPECT_EQ(st->rows("SELECT count(*) FROM " + t + "_per_prompt"), std::vector<std::string>{"3"});
            EXPECT_EQ(st->rows("SELECT count(*) FROM " + t + "_summary_rows"), std::vector<std::string>{std::to_string(e.data["summary_rows"].size())});
            // The zero-strength control moves nothing (float rounding of twins on other batch rows).
            const auto z = st->rows("SELECT mean FROM " + t + "_summary_rows WHERE arm = 'zero' AND measure = 'delta_mean_ct'");
            ASSERT_EQ(z.size(), 1u);
            EXPECT_LE(std::abs(std::stod(z[0])), 1e-6);
            const auto m = st->rows("SELECT mean FROM " + t + "_summary_rows WHERE arm = 'zero' AND measure = 'token_match_rate'");
            ASSERT_EQ(m.size(), 1u);
            EXPECT_DOUBLE_EQ(std::stod(m[0]), 1.0);
        }
    }
    // A file that is not a results DB is refused before generating.
    const auto res = pmtest::run_phasemap({"control-audit", "-m", pmtest::shared_model("stories260K.gguf").string(), "--prompts",
                                           (dir / "prompts.txt").string(), "--intervene", "scale:block:2:0.5", "--db",
                                           (dir / "prompts.txt").string()});
    EXPECT_EQ(res.exit_code, 1);
    EXPECT_NE(res.err.find("phasemap: error:"), std::string::npos) << res.err;
    EXPECT_EQ(res.out.find("control audit:"), std::string::npos) << res.out;
}

// Issue 12: `--control-vector cv.gguf:1.5x` ran the audit at scale 1.5. Every malformed scale is
// now one error naming the option, before the model loads or a file is written.
TEST(ControlAuditCli, ControlVectorScaleIsParsedStrictly) {
    NEED(stories, "stories260K.gguf");
    pmtest::TempDir dir;
    write_text(dir / "prompts.txt", std::string(kA) + "\n");
    const std::string cv = (dir / "cv.gguf").string();
    write_test_control_vector(stories->info(), cv);
    auto bad = kBadScales;
    bad.push_back({"", ""});  // file part only: fine
    for (const auto& [suffix, msg] : bad) {
        SCOPED_TRACE(suffix);
        const std::string out = (dir / "a.json").string();
        std::filesystem::remove(out);
        const auto res = pmtest::run_phasemap({"control-audit", "-m", pmtest::shared_model("stories260K.gguf").string(), "--prompts",
                                               (dir / "prompts.txt").string(), "--control-vector", cv + suffix, "-n", "3",
                                               "--bootstrap", "10", "-o", out, "-q"});
        if (msg.empty()) {
            EXPECT_EQ(res.exit_code, 0) << res.err;
            continue;
        }
        EXPECT_EQ(res.exit_code, 1) << res.err;
        EXPECT_EQ(res.err.rfind("phasemap: error: --control-vector '" + cv + suffix + "': " + msg, 0), 0u) << res.err;
        EXPECT_EQ(std::count(res.err.begin(), res.err.end(), '\n'), 1) << res.err;
        EXPECT_FALSE(std::filesystem::exists(out));
    }
    const auto res = pmtest::run_phasemap({"control-audit", "-m", pmtest::shared_model("stories260K.gguf").string(), "--prompts",
                                           (dir / "prompts.txt").string(), "--control-vector", ":1.5"});
    EXPECT_EQ(res.exit_code, 1);
    EXPECT_EQ(res.err, "phasemap: error: --control-vector ':1.5': the file name is empty (FILE[:SCALE])\n");
}
