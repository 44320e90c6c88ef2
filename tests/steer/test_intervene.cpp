// Interventions (capture/intervene.cpp, steer/spec.cpp): exactness of each edit on the captured
// states, persistence through the KV cache, bad input rejected before generation.
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

TEST(Intervene, AddChangesCapturedStateByExactlyVForOneTokenAndSequence) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:2,block:4";
    o.n_parallel = 2;
    Engine e(model, o);
    const auto base = run(e, {req(kA, 8), req(kB, 8)});
    const std::vector<float> v = random_direction(size_t(d), 3.0, 7);
    auto r0 = req(kA, 8);
    r0.interventions = {add_at(2, v, 1.5, 3, 4)};
    const auto got = run(e, {r0, req(kB, 8)});
    const size_t Lp = 2;
    // tokens before t = 3 untouched; at t = 3 block:2 moved by exactly 1.5·v
    for (int t = 0; t < 3; ++t)
        for (int j = 0; j < int(Lp) * d; ++j) ASSERT_EQ(got[0].states[size_t(t) * Lp * d + j], base[0].states[size_t(t) * Lp * d + j]);
    double maxerr = 0;
    for (int j = 0; j < d; ++j) {
        const size_t k = size_t(3) * Lp * d + size_t(j);
        maxerr = std::max(maxerr, std::abs(double(got[0].states[k]) - base[0].states[k] - 1.5 * v[size_t(j)]));
    }
    EXPECT_LE(maxerr, 1e-5);
    // the edit reached later layers at that token
    double moved = 0;
    for (int j = 0; j < d; ++j) moved += std::abs(got[0].states[size_t(3) * Lp * d + d + j] - base[0].states[size_t(3) * Lp * d + d + j]);
    EXPECT_GT(moved, 0.0);
    // the other sequence of the batch is bitwise unchanged (states, tokens, logits-derived stats)
    EXPECT_TRUE(bitwise_equal(got[1].states, base[1].states));
    EXPECT_EQ(got[1].end.text, base[1].end.text);
}

TEST(Intervene, ZeroStrengthIsBitwiseIdentical) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "hf:all";
    o.n_parallel = 2;
    o.save_logits = true;
    Engine e(model, o);
    const auto base = run(e, {req(kA, 10), req(kB, 10)});
    auto r0 = req(kA, 10), r1 = req(kB, 10);
    r0.interventions = {add_at(1, random_direction(size_t(d), 5.0, 1), 0.0, 0, INT_MAX)};
    r0.interventions[0].prefill = true;
    Intervention pz;
    pz.op = InterventionOp::project_out;
    pz.block = 3;
    pz.vec = random_direction(size_t(d), 1.0, 2);
    pz.strength = 0.0;
    r1.interventions = {pz};
    const auto got = run(e, {r0, r1});
    for (int k = 0; k < 2; ++k) {
        EXPECT_TRUE(bitwise_equal(got[size_t(k)].states, base[size_t(k)].states));
        EXPECT_TRUE(bitwise_equal(got[size_t(k)].logits, base[size_t(k)].logits));
        EXPECT_EQ(got[size_t(k)].end.text, base[size_t(k)].end.text);
    }
}

TEST(Intervene, EditsPersistThroughTheKvCache) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:0";
    o.save_logits = true;
    Engine e(model, o);
    const auto base = run(e, {req(kA, 6)});
    auto r = req(kA, 6);
    r.interventions = {add_at(0, random_direction(size_t(d), 4.0, 3), 1.0, 2, 3)};
    const auto got = run(e, {r});
    // token 3 is not edited, its block:0 state depends only on its own input token if that is
    // unchanged — but its logits see the edited position 2 through attention
    ASSERT_EQ(got[0].tokens[3].id == base[0].tokens[3].id, got[0].tokens[2].id == base[0].tokens[2].id);
    double diff = 0;
    for (int j = 0; j < model->info().n_vocab; ++j)
        diff += std::abs(got[0].logits[size_t(3 * model->info().n_vocab + j)] - base[0].logits[size_t(3 * model->info().n_vocab + j)]);
    EXPECT_GT(diff, 0.0);
}

TEST(Intervene, DampAlphaOneAtTheLastBlockFreezesTheState) {
    NEED(model, "stories260K.gguf");
    const int L = model->info().n_layer, d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:last";
    Engine e(model, o);
    auto r = req(kA, 12);
    Intervention iv;
    iv.op = InterventionOp::damp;
    iv.block = L - 1;
    iv.strength = 1.0;
    r.interventions = {iv};
    const auto got = run(e, {r});
    const auto& st = got[0].states;
    for (size_t t = 1; t < got[0].tokens.size(); ++t)
        for (int j = 0; j < d; ++j) ASSERT_EQ(st[t * size_t(d) + size_t(j)], st[size_t(j)]) << "t=" << t;
    const auto ts = metrics::token_series(metrics::RowsView<float>(st.data(), got[0].tokens.size(), size_t(d)));
    ASSERT_FALSE(ts.ct.empty());
    for (double c : ts.ct) EXPECT_EQ(c, 0.0);
}

TEST(Intervene, OtherOpsDoWhatTheySay) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:2";
    Engine e(model, o);
    const auto base = run(e, {req(kA, 3)});
    auto norm = [&](const float* h) {
        double s = 0;
        for (int j = 0; j < d; ++j) s += double(h[j]) * h[j];
        return std::sqrt(s);
    };
    {  // scale at t = 0
        Intervention iv;
        iv.op = InterventionOp::scale;
        iv.block = 2;
        iv.strength = 0.5;
        iv.t_end = 1;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g = run(e, {r});
        for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(g[0].states[size_t(j)], 0.5f * base[0].states[size_t(j)]);
    }
    {  // clamp
        Intervention iv;
        iv.op = InterventionOp::clamp_norm;
        iv.block = 2;
        iv.strength = 0.25 * norm(base[0].states.data());
        iv.t_end = 1;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g = run(e, {r});
        EXPECT_NEAR(norm(g[0].states.data()), iv.strength, 1e-4 * iv.strength);
    }
    {  // project-out: the captured state is orthogonal to u
        Intervention iv;
        iv.op = InterventionOp::project_out;
        iv.block = 2;
        iv.vec = random_direction(size_t(d), 1.0, 11);
        iv.t_end = 1;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g = run(e, {r});
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += double(g[0].states[size_t(j)]) * iv.vec[size_t(j)];
        EXPECT_LE(std::abs(dot), 1e-4 * norm(base[0].states.data()));
    }
    {  // noise: seeded, reproducible, and a different seed differs
        Intervention iv;
        iv.op = InterventionOp::noise;
        iv.block = 2;
        iv.strength = 0.1;
        iv.seed = 5;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g1 = run(e, {r}), g2 = run(e, {r});
        EXPECT_TRUE(bitwise_equal(g1[0].states, g2[0].states));
        r.interventions[0].seed = 6;
        const auto g3 = run(e, {r});
        EXPECT_FALSE(bitwise_equal(g1[0].states, g3[0].states));
    }
    {  // random-direction control: equal norm, another direction
        Intervention iv = add_at(2, random_direction(size_t(d), 2.0, 9), 1.0, 0, 1);
        std::vector<Intervention> v{iv};
        v[0].random_direction = true;
        v[0].seed = 123;
        resolve_interventions(v, model->info().n_layer, d);
        EXPECT_NEAR(norm(v[0].vec.data()), 2.0, 1e-5);
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += double(v[0].vec[size_t(j)]) * iv.vec[size_t(j)];
        EXPECT_LT(std::abs(dot) / 4.0, 0.9);
    }
}

TEST(Intervene, BadInputIsRejectedBeforeGeneration) {
    NEED(model, "stories260K.gguf");
    const int L = model->info().n_layer, d = model->info().n_embd;
    Engine e(model, EngineOptions{});
    struct CountingSink : RecordingSink {
        int begins = 0;
        void begin(const RunStart& s) override { ++begins; RecordingSink::begin(s); }
    } sink;
    auto expect_error = [&](Intervention iv, const std::string& needle) {
        auto r = req(kA, 4);
        r.interventions = {iv};
        try {
            e.generate(std::vector<Request>{r}, [&](size_t) -> RunSink& { return sink; });
            ADD_FAILURE() << "no error for " << needle;
        } catch (const std::runtime_error& ex) {
            EXPECT_NE(std::string(ex.what()).find(needle), std::string::npos) << ex.what();
        }
        EXPECT_EQ(sink.begins, 0);
    };
    expect_error(add_at(1, std::vector<float>(size_t(d) + 1, 0.1f), 1, 0, 1), "n_embd");
    expect_error(add_at(L, std::vector<float>(size_t(d), 0.1f), 1, 0, 1), "out of range");
    Intervention damp;
    damp.op = InterventionOp::damp;
    damp.block = 1;
    damp.strength = 1.5;
    expect_error(damp, "outside [0, 1]");
    EXPECT_THROW(steer::parse_intervention_spec("add:block:9:x.npy", L), std::invalid_argument);
    EXPECT_THROW(steer::parse_intervention_spec("twist:block:1:2", L), std::invalid_argument);
    EXPECT_THROW(steer::parse_intervention_spec("damp:block:1:0.5@t=5-2", L), std::invalid_argument);
    const auto ok = steer::parse_intervention_spec("damp:block:-1:0.5@t=2-4,prefill,prompts=0+2", L);
    EXPECT_EQ(ok.iv.block, L - 1);
    EXPECT_EQ(ok.iv.t_begin, 2);
    EXPECT_EQ(ok.iv.t_end, 5);
    EXPECT_TRUE(ok.iv.prefill);
    EXPECT_EQ(ok.prompts, (std::vector<int>{0, 2}));
}
