// `phasemap monitor-eval` (src/cli/cmd_monitor_eval.cpp): JSON and the results DB.
#include <gtest/gtest.h>

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

TEST(MonitorEval, CliWritesJsonAndTheResultsDb) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    pmtest::TempDir dir;
    write_monitor_data(rwkv, 40, dir / "qa.csv");
    const std::string model = pmtest::shared_model("tiny-rwkv7-834K.gguf").string();
    const std::string db = (dir / "r.duckdb").string();
    const std::vector<std::string> args = {"monitor-eval", "-m", model, "--data", (dir / "qa.csv").string(), "-n", "40", "--trigger",
                                           "collapse", "--guard-text", kGuard, "--bootstrap", "200", "--db", db, "-o",
                                           (dir / "m.json").string()};
    auto a = args;
    a.insert(a.end(), {"--name", "rwkv-monitor"});
    auto res = pmtest::run_phasemap(a);
    ASSERT_EQ(res.exit_code, 0) << res.err;
    EXPECT_NE(res.out.find("stored monitor_eval 'rwkv-monitor'"), std::string::npos) << res.out;
    const nlohmann::json file = read_json_file(dir / "m.json");
    // Again under the default name, and once more: that one replaces the stored one.
    for (int k = 0; k < 2; ++k) {
        res = pmtest::run_phasemap(args);
        ASSERT_EQ(res.exit_code, 0) << res.err;
    }
    const auto st = store::Store::open(db, {.read_only = true});
    const auto es = st->audits(plan::kMonitorEvalKind);
    ASSERT_EQ(es.size(), 2u);
    EXPECT_TRUE(st->audits(plan::kControlAuditKind).empty());
    const auto& e = es[0].name == "rwkv-monitor" ? es[0] : es[1];
    EXPECT_EQ(es[0].name == "rwkv-monitor" ? es[1].name : es[0].name, "monitor");
    EXPECT_EQ(e.kind, "monitor_eval");
    EXPECT_TRUE(e.ok);
    EXPECT_EQ(e.source, (dir / "qa.csv").string());
    EXPECT_EQ(e.options["guard_text"], kGuard);
    EXPECT_EQ(e.options["n_predict"], 40);
    EXPECT_EQ(e.data["summary"], file["summary"]);
    EXPECT_EQ(e.data["per_prompt"], file["per_prompt"]);
    // Relational tables: one row per prompt, one per arm × measure.
    const std::set<std::string> tables(e.tables.begin(), e.tables.end());
    ASSERT_TRUE(tables.count("monitor_rwkv_monitor_per_prompt")) << ::testing::PrintToString(e.tables);
    ASSERT_TRUE(tables.count("monitor_rwkv_monitor_summary_rows")) << ::testing::PrintToString(e.tables);
    EXPECT_EQ(st->rows("SELECT count(*) FROM monitor_rwkv_monitor_per_prompt"), std::vector<std::string>{"3"});
    EXPECT_EQ(st->rows("SELECT count(*) FROM monitor_rwkv_monitor_summary_rows"), std::vector<std::string>{"15"});
    const auto acc = st->rows("SELECT mean FROM monitor_rwkv_monitor_summary_rows WHERE arm = 'guard_only' AND measure = 'insertion_rate'");
    ASSERT_EQ(acc.size(), 1u);
    EXPECT_DOUBLE_EQ(std::stod(acc[0]), 1.0);
}
