// `phasemap monitor-eval` (src/cli/cmd_monitor_eval.cpp): JSON and the results DB.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
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

// --metric-layer picks the monitor's layer by the one integer rule (N = hf:N; layer_id.hpp), as in
// generate --monitor: on stories260K the spike trigger fires on hf:2 at the token where generate's
// monitor fires on hf:2, and not on the last captured layer (the default, hf:5).
TEST(MonitorEval, MetricLayerIsTheMonitorsLayer) {
    const std::filesystem::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir dir;
    const std::string prompt = "Once upon a time there was a little cat named Tom.";
    std::ofstream(dir / "one.csv") << "Question,Best Answer\n" << prompt << ",the\n";
    const std::vector<std::string> common = {"-m", model.string(), "-n", "40", "--trigger", "spike:k=2:min=4", "--layers", "hf:all"};
    auto eval = [&](const std::string& layer) {
        std::vector<std::string> a = {"monitor-eval", "--data", (dir / "one.csv").string(), "--bootstrap", "10", "-t", "1", "-q",
                                      "-o", (dir / "m.json").string()};
        a.insert(a.end(), common.begin(), common.end());
        if (!layer.empty()) a.insert(a.end(), {"--metric-layer", layer});
        const auto r = pmtest::run_phasemap(a);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return read_json_file(dir / "m.json");
    };
    std::vector<std::string> g = {"generate", "-p", prompt, "--monitor", "--metric-layer", "2", "--monitor-json",
                                  (dir / "g.json").string(), "-q", "-o", (dir / "g.npz").string()};
    g.insert(g.end(), common.begin(), common.end());
    const auto gr = pmtest::run_phasemap(g);
    ASSERT_EQ(gr.exit_code, 0) << gr.err;
    const nlohmann::json gen = read_json_file(dir / "g.json")["events"];
    ASSERT_EQ(gen.size(), 1u) << gen.dump();

    const nlohmann::json on2 = eval("2");
    EXPECT_EQ(on2["metric_layer"], "hf:2");
    EXPECT_EQ(on2["layers"], "hf:all");
    const nlohmann::json ev = on2["per_prompt"][0]["monitor_only"]["events"];
    ASSERT_EQ(ev.size(), 1u) << ev.dump();
    EXPECT_EQ(ev[0].get<std::string>().rfind(fmt::format("t={}: spike trigger", gen[0]["t"].get<int>()), 0), 0u) << ev.dump();
    const nlohmann::json last = eval("");
    EXPECT_FALSE(last.contains("metric_layer"));
    EXPECT_TRUE(last["per_prompt"][0]["monitor_only"]["events"].empty()) << last.dump();
    EXPECT_EQ(eval("-1")["metric_layer"], "hf:5");
    // A layer not captured is one error naming it.
    std::vector<std::string> bad = {"monitor-eval", "--data", (dir / "one.csv").string(), "--metric-layer", "block:1", "-q"};
    bad.insert(bad.end(), common.begin(), common.end());
    const auto br = pmtest::run_phasemap(bad);
    EXPECT_EQ(br.exit_code, 1);
    EXPECT_NE(br.err.find("block:1"), std::string::npos) << br.err;
}
