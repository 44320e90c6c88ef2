// The monitor/guard evaluation driver (steer/audit.cpp run_monitor_eval): the four arms.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/steer/vectors.hpp"
#include "support/steer_fixtures.hpp"

using namespace steertest;

TEST(MonitorEval, FourArmsOnLabelledPrompts) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    pmtest::TempDir dir;
    const int n = 40;
    const auto plain = write_monitor_data(rwkv, n, dir / "qa.csv");
    steer::MonitorEvalOptions o;
    o.data_csv = (dir / "qa.csv").string();
    o.n_predict = n;
    o.monitor.triggers = {steer::parse_trigger("collapse")};
    o.monitor.guard_text = kGuard;
    o.guard_at = 8;
    o.bootstrap = 300;
    const nlohmann::json r = steer::to_json(steer::run_monitor_eval(rwkv, o));
    const std::vector<std::string> arms = {"baseline", "monitor_only", "guard_only", "monitor_guard"};
    ASSERT_EQ(r["arms"], nlohmann::json(arms));
    EXPECT_EQ(r["n"].get<size_t>(), kMonitorPrompts.size());
    ASSERT_EQ(r["per_prompt"].size(), kMonitorPrompts.size());
    for (const auto& a : arms) {
        const auto& s = r["summary"][a];
        for (const char* k : {"accuracy", "trigger_rate", "insertion_rate"}) {
            EXPECT_EQ(s[k]["n"].get<size_t>(), kMonitorPrompts.size()) << a << " " << k;
            const double m = s[k]["mean"].get<double>();
            EXPECT_GE(m, 0.0) << a << " " << k;
            EXPECT_LE(m, 1.0) << a << " " << k;
            EXPECT_TRUE(in_ci(s[k])) << a << " " << k << ": " << s[k].dump();
        }
        EXPECT_EQ(s.contains("delta_accuracy"), a != "baseline") << a;
    }
    // The baseline arm is a plain greedy generation: it answers the first prompt only.
    EXPECT_NEAR(r["summary"]["baseline"]["accuracy"]["mean"].get<double>(), 1.0 / 3.0, 1e-12);
    size_t fired = 0;
    for (size_t i = 0; i < kMonitorPrompts.size(); ++i) {
        const auto& p = r["per_prompt"][i];
        EXPECT_EQ(p["baseline"]["text"], plain[i].end.text) << i;
        EXPECT_EQ(p["baseline"]["correct"], i == 0) << i;
        EXPECT_EQ(p["baseline"]["insertions"], 0) << i;
        EXPECT_FALSE(p["baseline"]["fired"].get<bool>());
        // Logging changes nothing in the generation.
        EXPECT_EQ(p["monitor_only"]["text"], plain[i].end.text) << i;
        EXPECT_EQ(p["monitor_only"]["insertions"], 0) << i;
        // guard-only: the guard text after token guard_at, whatever the dynamics.
        EXPECT_EQ(p["guard_only"]["insertion_after_t"], nlohmann::json({o.guard_at})) << i;
        EXPECT_EQ(p["guard_only"]["insertion_text"], nlohmann::json({kGuard})) << i;
        // monitor+guard: the guard text exactly when the trigger fires (it fires on the same
        // tokens as in the monitor-only arm: the two are identical up to the first firing).
        const bool f = p["monitor_only"]["fired"].get<bool>();
        fired += f;
        EXPECT_EQ(p["monitor_guard"]["fired"].get<bool>(), f) << i;
        EXPECT_EQ(p["monitor_guard"]["insertion_text"], f ? nlohmann::json({kGuard}) : nlohmann::json::array()) << i;
        if (f) {
            EXPECT_NE(p["monitor_guard"]["text"], plain[i].end.text) << i << ": the guard text changed nothing";
            EXPECT_FALSE(p["monitor_only"]["events"].empty()) << i;
        }
    }
    // tiny-rwkv7's greedy text collapses into repetition: the collapse trigger fires.
    EXPECT_GE(fired, 1u);
    EXPECT_NEAR(r["summary"]["monitor_only"]["trigger_rate"]["mean"].get<double>(), double(fired) / 3.0, 1e-12);
    EXPECT_NEAR(r["summary"]["monitor_guard"]["insertion_rate"]["mean"].get<double>(), double(fired) / 3.0, 1e-12);
    EXPECT_EQ(r["summary"]["monitor_only"]["insertion_rate"]["mean"].get<double>(), 0.0);
    EXPECT_EQ(r["summary"]["guard_only"]["insertion_rate"]["mean"].get<double>(), 1.0);
    // The flat table: 3 measures per arm plus Δ accuracy for the three non-baseline arms.
    ASSERT_EQ(r["summary_rows"].size(), 4u * 3u + 3u);
    for (const auto& row : r["summary_rows"]) {
        EXPECT_EQ(phasemap::steer::to_json(phasemap::steer::summary_row_from_json(row)), row);   // typed round trip
        if (row["measure"] == "accuracy") {
            EXPECT_EQ(row["mean"], r["summary"][row["arm"].get<std::string>()]["accuracy"]["mean"]) << row.dump();
        }
    }
}
