// The control audit driver (steer/audit.cpp): arms, random-direction controls, forked twins.
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

TEST(ControlAudit, EndToEndWithRandomDirectionControls) {
    for (const char* file : {"stories260K.gguf", "tiny-rwkv7-834K.gguf"}) {
        auto model = load_shared(file);
        if (!model) GTEST_SKIP() << file << " is not present";
        const int d = model->info().n_embd;
        steer::AuditOptions ao;
        ao.prompts = {"Once upon a time", "Lily and Tom went to the park", "The little dog was sad"};
        ao.interventions = {add_at(2, random_direction(size_t(d), 4.0, 42), 1.0, 0, INT_MAX)};
        ao.n_predict = 16;
        ao.bootstrap = 200;
        const auto truth = pmtest::shared_models_dir().parent_path() / "datasets" / "geometry-of-truth" / "cities.csv";
        if (std::filesystem::exists(truth)) {
            ao.truth_csv = truth.string();
            ao.truth_limit = 6;
        }
        const steer::ControlAuditResult r = steer::run_control_audit(model, ao);
        ASSERT_EQ(r.arms, (std::vector<std::string>{"baseline", "intervened", "random", "zero"})) << file;
        EXPECT_EQ(r.per_prompt.size(), 3u);
        for (const auto& p : r.per_prompt) {
            EXPECT_EQ(p.arms.at("baseline").token_match_rate, 1.0);
            EXPECT_EQ(p.arms.at("zero").token_match_rate, 1.0) << file << ": zero-strength twin differs";
            EXPECT_EQ(p.arms.at("zero").text, p.arms.at("baseline").text);
        }
        EXPECT_TRUE(r.summary.at("random").count("delta_mean_ct"));
        EXPECT_TRUE(std::isfinite(r.summary.at("intervened").at("delta_ratio_norm").lo));
        // twins on different rows of one batch agree to float rounding (the unified KV cache sums
        // attention over differently placed cells), not bitwise: the zero arm shows that floor
        EXPECT_LE(std::abs(r.summary.at("zero").at("delta_mean_ct").mean), 1e-6);
        if (!ao.truth_csv.empty()) {
            ASSERT_TRUE(r.truth);
            EXPECT_EQ(r.truth->n, 6u);
            EXPECT_EQ(r.truth->arms.at("random").count("delta_accuracy"), 1u);
        }
        EXPECT_FALSE(r.headline.empty());
        // The document (with its truth section) reads back into the same result.
        const nlohmann::json doc = steer::to_json(r);
        EXPECT_EQ(steer::to_json(steer::control_audit_from_json(doc)), doc) << file;
        EXPECT_EQ(doc["summary_rows"].size(), steer::summary_rows(r).size());
    }
}

TEST(ControlAudit, ForkedTwinsEqualSeparatePrefill) {
    NEED(model, "stories260K.gguf");
    EngineOptions o;
    o.layers = "hf:last";
    o.n_parallel = 3;
    o.share_prompt_prefix = true;
    Engine forked(model, o);
    const auto a = run(forked, {req(kA, 12), req(kA, 12), req(kB, 12)});
    EngineOptions s;
    s.layers = "hf:last";
    Engine single(model, s);
    const auto b = run(single, {req(kA, 12)});
    EXPECT_EQ(a[0].end.text, b[0].end.text);
    EXPECT_EQ(a[1].end.text, b[0].end.text);
    ASSERT_EQ(a[0].states.size(), b[0].states.size());
    double maxd = 0, maxv = 0;
    for (size_t i = 0; i < a[0].states.size(); ++i) {
        maxd = std::max({maxd, double(std::abs(a[0].states[i] - b[0].states[i])), double(std::abs(a[1].states[i] - b[0].states[i]))});
        maxv = std::max(maxv, double(std::abs(b[0].states[i])));
    }
    EXPECT_LE(maxd, 1e-5 * maxv);
}
