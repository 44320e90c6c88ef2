// The online monitor and guard (steer/monitor.cpp): triggers, guard text, stop / intervene actions.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/steer/vectors.hpp"
#include "support/steer_fixtures.hpp"

using namespace steertest;

TEST(Monitor, CollapseFiresOnRwkvGreedyNotOnStories) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    NEED(stories, "stories260K.gguf");
    steer::MonitorOptions mo;
    mo.triggers = {steer::parse_trigger("collapse")};
    std::vector<std::unique_ptr<steer::Monitor>> keep;
    {
        EngineOptions o;
        o.layers = "hf:last";
        Engine e(rwkv, o);
        auto r = req("Once upon a time, ", 48);
        r.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
        const auto g = run(e, {r});
        EXPECT_TRUE(keep.back()->fired()) << g[0].end.text;
        EXPECT_FALSE(g[0].end.events.empty());
    }
    for (const char* p : {"Once upon a time", "Lily and Tom went to the park", "The little dog was sad", "One day, a girl named Sue"}) {
        EngineOptions o;
        o.layers = "hf:last";
        Engine e(stories, o);
        auto r = req(p, 64);
        r.controller = add_monitor(keep, mo, e, stories->info().n_embd);
        const auto g = run(e, {r});
        EXPECT_FALSE(keep.back()->fired()) << p << ": " << g[0].end.text;
    }
}

TEST(Monitor, GuardTextIsDecodedIntoTheContextAndMarked) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    steer::MonitorOptions mo;
    mo.triggers = {steer::parse_trigger("collapse")};
    mo.action = steer::ActionKind::guard;
    mo.guard_text = " Lily saw a cat.";
    EngineOptions o;
    o.layers = "hf:last";
    Engine e(rwkv, o);
    std::vector<std::unique_ptr<steer::Monitor>> keep;
    auto r = req("Once upon a time, ", 40);
    r.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
    const auto g = run(e, {r});
    ASSERT_EQ(g[0].end.insertions.size(), 1u);
    const Insertion& in = g[0].end.insertions[0];
    EXPECT_EQ(in.text, mo.guard_text);
    // positions jump over the inserted tokens; token records stay one per generated token
    ASSERT_EQ(int(g[0].tokens.size()), 40);
    const auto& tk = g[0].tokens;
    EXPECT_EQ(tk[size_t(in.after_t) + 1].position, tk[size_t(in.after_t)].position + 1 + int(in.ids.size()));
    // CLI marks it
    const auto res = pmtest::run_phasemap({"generate", "-m", pmtest::shared_model("tiny-rwkv7-834K.gguf").string(), "-p", "Once upon a time, ",
                                           "-n", "40", "--monitor", "--trigger", "collapse", "--on", "guard", "--guard-text", " Lily saw a cat."});
    EXPECT_EQ(res.exit_code, 0) << res.err;
    EXPECT_NE(res.out.find("⟦guard:  Lily saw a cat.⟧"), std::string::npos) << res.out;
    EXPECT_NE(res.out.find("collapse trigger"), std::string::npos) << res.out;
    // The run file records the insertion (where, which tokens, what text) and the monitor's log.
    pmtest::TempDir dir;
    const auto npz = dir / "guard.npz";
    const auto saved = pmtest::run_phasemap({"generate", "-m", pmtest::shared_model("tiny-rwkv7-834K.gguf").string(), "-p",
                                             "Once upon a time, ", "-n", "40", "--layers", "hf:last", "--monitor", "--trigger",
                                             "collapse", "--on", "guard", "--guard-text", " Lily saw a cat.", "-o", npz.string()});
    ASSERT_EQ(saved.exit_code, 0) << saved.err;
    const auto rf = phasemap::io::load_run_npz(npz);
    ASSERT_TRUE(rf.metadata.contains("insertions")) << rf.metadata.dump();
    const auto& ji = rf.metadata["insertions"];
    ASSERT_EQ(ji.size(), 1u);
    EXPECT_EQ(ji[0]["text"], mo.guard_text);
    EXPECT_EQ(ji[0]["after_t"], in.after_t);
    EXPECT_EQ(ji[0]["token_ids"].get<std::vector<int32_t>>(), in.ids);
    EXPECT_EQ(ji[0]["position"], in.position);
    ASSERT_TRUE(rf.metadata.contains("monitor_events"));
    EXPECT_GE(rf.metadata["monitor_events"].size(), 1u);
}

TEST(Monitor, StopAndInterveneActions) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    EngineOptions o;
    o.layers = "hf:last";
    Engine e(rwkv, o);
    std::vector<std::unique_ptr<steer::Monitor>> keep;
    steer::MonitorOptions mo;
    mo.triggers = {steer::parse_trigger("collapse")};
    mo.action = steer::ActionKind::stop;
    auto r = req("Once upon a time, ", 48);
    r.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
    auto g = run(e, {r});
    EXPECT_EQ(g[0].end.stop_reason, "monitor:collapse");
    EXPECT_LT(g[0].end.n_generated, 48);
    mo.action = steer::ActionKind::intervene;
    mo.intervention.op = InterventionOp::noise;
    mo.intervention.block = 5;
    mo.intervention.strength = 2.0;
    mo.for_tokens = 6;
    auto r2 = req("Once upon a time, ", 40);
    r2.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
    const auto base = run(e, {req("Once upon a time, ", 40)});
    g = run(e, {r2});
    ASSERT_TRUE(keep.back()->fired());
    const int t_fire = keep.back()->events().front().t;
    for (int t = 0; t <= t_fire; ++t) EXPECT_EQ(g[0].tokens[size_t(t)].id, base[0].tokens[size_t(t)].id);
    EXPECT_NE(g[0].end.text, base[0].end.text);
}
