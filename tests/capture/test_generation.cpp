// Generation and capture on the trained stories260K model: golden text, emitting position,
// batched = sequential, output shapes.
#include <gtest/gtest.h>

#include <cmath>

#include "phasemap/capture/capture.hpp"
#include "phasemap/metrics/token_stats.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "support/generation.hpp"
#include "support/paths.hpp"

using namespace phasemap::capture;

namespace {

const char* kGolden =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. "
    "She wanted to play with it, but it was too high.";


double rel_diff(std::span<const float> a, std::span<const float> b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

using pmtest::req;
using pmtest::run;

TEST(Generation, StoriesGreedyReproducesGoldenText) {
    NEED_STORIES();
    Engine e(model, EngineOptions{});
    const auto r = run(e, {req("Once upon a time", 200)});
    ASSERT_EQ(r.size(), 1u);
    ASSERT_TRUE(r[0].finished);
    const std::string& text = r[0].end.text;
    ASSERT_GE(text.size(), std::string(kGolden).size()) << text;
    EXPECT_EQ(text.substr(0, std::string(kGolden).size()), kGolden);
    // The prompt got BOS and the 4 story tokens; every generated token has its stats.
    EXPECT_EQ(r[0].start.prompt_ids.front(), model->tokenize("", true).front());
    for (const auto& t : r[0].tokens) {
        EXPECT_GE(t.stats.top1, t.stats.margin);
        EXPECT_GE(t.stats.entropy, 0.0);
        EXPECT_EQ(t.stats.top1_id, t.id);  // greedy picks the arg-max
        EXPECT_NEAR(t.stats.surprisal, -std::log(t.stats.top1), 1e-9);
    }
}

TEST(Generation, CapturedShapesFollowTheLayerSpec) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:all,block:all";
    o.save_logits = true;
    Engine e(model, o);
    const int L = model->info().n_layer, d = model->info().n_embd, V = model->info().n_vocab;
    ASSERT_EQ(L, 5);
    ASSERT_EQ(e.layers().size(), size_t(2 * L + 1));
    const auto r = run(e, {req("Once upon a time", 7)});
    ASSERT_EQ(r[0].tokens.size(), 7u);
    EXPECT_EQ(r[0].end.stop_reason, "length");
    EXPECT_EQ(r[0].states.size(), size_t(7) * size_t(2 * L + 1) * size_t(d));
    EXPECT_EQ(r[0].logits.size(), size_t(7) * size_t(V));
    // hf:i (1 ≤ i < L) and block:i-1 are the same tensor; block:L-1 differs from hf:L (final norm).
    const size_t Lp = size_t(2 * L + 1);
    for (size_t t = 0; t < 7; ++t) {
        const float* row = r[0].states.data() + t * Lp * size_t(d);
        for (int i = 1; i < L; ++i)
            for (int j = 0; j < d; ++j) ASSERT_EQ(row[size_t(i) * size_t(d) + size_t(j)], row[size_t(L + i) * size_t(d) + size_t(j)]);
        EXPECT_GT(rel_diff({row + size_t(L) * size_t(d), size_t(d)}, {row + size_t(2 * L) * size_t(d), size_t(d)}), 1e-3);
    }
}

TEST(Generation, EmittingPositionMatchesSeparatePrefill) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "hf:all,block:4";
    o.save_logits = true;
    Engine e(model, o);
    const auto r = run(e, {req("Once upon a time", 12)});
    const auto& rec = r[0];
    const size_t per = e.layers().size() * size_t(model->info().n_embd);
    std::vector<int32_t> ids = rec.start.prompt_ids;
    double worst = 0;
    for (size_t t = 0; t < rec.tokens.size(); ++t) {
        // State for token t = prefill of prompt + tokens[0..t-1], read at its last position.
        std::vector<float> logits;
        const auto st = e.prefill_states(ids, &logits);
        ASSERT_EQ(st.size(), per);
        const double rd = rel_diff(std::span<const float>(rec.states.data() + t * per, per), st);
        worst = std::max(worst, rd);
        EXPECT_LE(rd, 1e-4) << "token " << t;
        EXPECT_EQ(rec.tokens[t].position, int(ids.size()) - 1);
        ids.push_back(rec.tokens[t].id);
    }
    RecordProperty("max_rel_diff", std::to_string(worst));
}

TEST(Generation, BatchedEqualsSequential) {
    NEED_STORIES();
    const std::vector<Request> reqs{req("Once upon a time", 24), req("The little dog", 24), req("Tom and Sue went to", 24),
                                    req("One day, a big bird", 24)};
    EngineOptions o;
    o.layers = "hf:all";
    Engine seq(model, o);
    o.n_parallel = 4;
    Engine par(model, o);
    const auto a = run(seq, reqs);
    const auto b = run(par, reqs);
    ASSERT_EQ(a.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
        ASSERT_EQ(a[i].tokens.size(), b[i].tokens.size()) << "prompt " << i;
        for (size_t t = 0; t < a[i].tokens.size(); ++t) ASSERT_EQ(a[i].tokens[t].id, b[i].tokens[t].id) << "prompt " << i << " token " << t;
        EXPECT_EQ(a[i].end.text, b[i].end.text);
        EXPECT_LE(rel_diff(b[i].states, a[i].states), 1e-4) << "prompt " << i;
    }
    // The four prompts really differ.
    EXPECT_NE(a[0].end.text, a[1].end.text);
}

TEST(Generation, StepStatisticsOnSeveralThreadsBelongToTheirSequence) {
    // The per-token statistics of a batched step run on the engine's threads; greedy sequences
    // take the arg-max from them. Each token's statistics must be those of its own logits row,
    // and greedy and seeded sampling must pick what they pick on one thread.
    NEED_STORIES();
    std::vector<Request> reqs{req("Once upon a time", 20), req("The little dog", 20), req("Tom and Sue went to", 20),
                              req("One day, a big bird", 20), req("The sun was", 20)};
    reqs[1].sampling.temperature = 0.9f;
    reqs[1].sampling.seed = 11;
    reqs[3].sampling.temperature = 1.2f;
    reqs[3].sampling.top_k = 40;
    reqs[3].sampling.seed = 5;
    EngineOptions o;
    o.layers = "none";
    o.save_logits = true;
    o.n_parallel = 5;
    o.n_threads = 1;
    o.output_stats = OutputStats::host;  // the host path spreads its rows over the threads (graph: test_output_stats)
    Engine one(model, o);
    o.n_threads = 3;
    Engine three(model, o);
    const auto a = run(one, reqs), b = run(three, reqs);
    const size_t V = size_t(model->info().n_vocab);
    for (size_t i = 0; i < reqs.size(); ++i) {
        ASSERT_EQ(a[i].tokens.size(), b[i].tokens.size()) << "request " << i;
        ASSERT_EQ(b[i].logits.size(), b[i].tokens.size() * V);
        for (size_t t = 0; t < b[i].tokens.size(); ++t) {
            const TokenRecord& r = b[i].tokens[t];
            EXPECT_EQ(r.id, a[i].tokens[t].id) << "request " << i << " token " << t;
            const std::span<const float> row(b[i].logits.data() + t * V, V);
            const auto want = phasemap::metrics::token_prob_stats(row, r.id);
            EXPECT_EQ(r.stats.entropy, want.entropy) << "request " << i << " token " << t;
            EXPECT_EQ(r.stats.top1, want.top1);
            EXPECT_EQ(r.stats.margin, want.margin);
            EXPECT_EQ(r.stats.surprisal, want.surprisal);
            if (reqs[i].sampling.temperature == 0.0f) {
                EXPECT_EQ(r.id, want.top1_id) << "greedy picks the arg-max";
            }
        }
    }
    EXPECT_EQ(a[0].end.text, b[0].end.text);
    EXPECT_NE(a[0].end.text, a[1].end.text);
}

TEST(Generation, SampledRunsFollowTheSeed) {
    NEED_STORIES();
    EngineOptions o;
    o.layers = "none";
    Engine e(model, o);
    Request r = req("Once upon a time", 30);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 7;
    const auto a = run(e, {r});
    const auto b = run(e, {r});
    r.sampling.seed = 8;
    const auto c = run(e, {r});
    EXPECT_EQ(a[0].end.text, b[0].end.text);
    EXPECT_NE(a[0].end.text, c[0].end.text);
    EXPECT_TRUE(a[0].states.empty());
}

TEST(Generation, RequestsAreValidatedBeforeDecoding) {
    NEED_STORIES();
    EngineOptions o;
    o.n_ctx = 32;
    Engine e(model, o);
    RecordingSink s;
    auto sink = [&](size_t) -> RunSink& { return s; };
    EXPECT_THROW(e.generate(std::vector<Request>{req("", 4)}, sink), std::runtime_error);
    EXPECT_THROW(e.generate(std::vector<Request>{req("Once", 0)}, sink), std::runtime_error);
    std::string long_prompt;
    for (int i = 0; i < 40; ++i) long_prompt += "Once upon a time ";
    try {
        e.generate(std::vector<Request>{req("Once", 4), req(long_prompt, 4)}, sink);
        FAIL() << "long prompt accepted";
    } catch (const std::runtime_error& ex) {
        EXPECT_NE(std::string(ex.what()).find("prompt 1"), std::string::npos) << ex.what();
    }
    EXPECT_FALSE(s.record.finished);  // nothing ran
    EXPECT_THROW(Engine(model, EngineOptions{.layers = "hf:6"}), std::invalid_argument);
}

TEST(Generation, ContextLimitStopsTheRun) {
    NEED_STORIES();
    EngineOptions o;
    o.n_ctx = 16;
    o.layers = "hf:last";
    Engine e(model, o);
    const auto r = run(e, {req("Once upon a time", 100)});
    EXPECT_EQ(r[0].end.stop_reason, "context");
    // Generation stops once the next input token would sit at position n_ctx.
    EXPECT_EQ(r[0].start.prompt_ids.size() - 1 + r[0].tokens.size(), 16u);
}

TEST(ModelLoad, RecurrentModelGeneratesWithCapture) {
    const auto p = pmtest::shared_model("tiny-rwkv7-834K.gguf");
    if (p.empty()) GTEST_SKIP() << "../shared/models/tiny-rwkv7-834K.gguf is not present";
    auto m = Model::load(p);
    EXPECT_TRUE(m->info().recurrent);
    EXPECT_EQ(m->info().architecture, "rwkv7");
    EngineOptions o;
    o.n_parallel = 2;
    o.layers = "hf:all";
    Engine e(m, o);
    const auto r = run(e, {req("Once upon a time, ", 12), req("\"in", 12)});
    EXPECT_NE(r[1].end.text.find("the the"), std::string::npos) << r[1].end.text;
    EXPECT_EQ(r[0].states.size(), size_t(12) * size_t(m->info().n_layer + 1) * size_t(m->info().n_embd));
    // Batched recurrent decoding equals one-at-a-time.
    o.n_parallel = 1;
    Engine e1(m, o);
    const auto s = run(e1, {req("Once upon a time, ", 12), req("\"in", 12)});
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(r[i].end.text, s[i].end.text);
        EXPECT_LE(rel_diff(r[i].states, s[i].states), 1e-4);
    }
}

}  // namespace
