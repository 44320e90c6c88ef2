// Per-token output statistics (METRICS.md, baseline.*): hand-computed softmax cases and a
// long-double reference over a vocabulary-sized vector.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "phasemap/metrics/token_stats.hpp"

using namespace phasemap::metrics;

TEST(TokenProbStats, TwoTokensByHand) {
    // p = (1/4, 3/4)
    const std::vector<float> logits = {0.0f, float(std::log(3.0))};
    const double l3 = double(float(std::log(3.0)));  // the logit as stored
    const double z = 1.0 + std::exp(l3);
    const double p0 = 1.0 / z, p1 = std::exp(l3) / z;
    const auto s = token_prob_stats(logits, 0);
    EXPECT_EQ(s.top1_id, 1);
    EXPECT_NEAR(s.top1, p1, 1e-15);
    EXPECT_NEAR(s.margin, p1 - p0, 1e-15);
    EXPECT_NEAR(s.entropy, -(p0 * std::log(p0) + p1 * std::log(p1)), 1e-15);
    EXPECT_NEAR(s.surprisal, -std::log(p0), 1e-14);
    EXPECT_NEAR(token_prob_stats(logits, 1).surprisal, -std::log(p1), 1e-14);
    // Greedy: the chosen token is the arg-max.
    const auto g = token_prob_stats(logits, kChosenIsTop1);
    EXPECT_EQ(g.top1_id, 1);
    EXPECT_NEAR(g.surprisal, -std::log(p1), 1e-14);
    EXPECT_EQ(g.entropy, s.entropy);
}

TEST(TokenProbStats, TiesOutOfRangeAndEmpty) {
    const std::vector<float> tie = {0.5f, 2.0f, 2.0f, -1.0f};
    const auto s = token_prob_stats(tie, kChosenIsTop1);
    EXPECT_EQ(s.top1_id, 1) << "the first of equal largest logits, as llama.cpp's greedy sampler";
    EXPECT_EQ(s.margin, 0.0);
    EXPECT_NEAR(s.surprisal, -std::log(s.top1), 1e-14);
    EXPECT_TRUE(std::isnan(token_prob_stats(tie, 4).surprisal));
    EXPECT_TRUE(std::isnan(token_prob_stats(tie, -1).surprisal));
    const auto e = token_prob_stats(std::vector<float>{}, 0);
    EXPECT_TRUE(std::isnan(e.entropy) && std::isnan(e.top1) && std::isnan(e.margin) && std::isnan(e.surprisal));
    // One token: certainty.
    const auto one = token_prob_stats(std::vector<float>{3.0f}, kChosenIsTop1);
    EXPECT_EQ(one.top1, 1.0);
    EXPECT_EQ(one.entropy, 0.0);
    EXPECT_EQ(one.margin, 1.0);
    EXPECT_EQ(one.surprisal, 0.0);
}

TEST(TokenProbStats, VocabularySizedAgainstLongDouble) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    std::vector<float> logits(151936);
    for (auto& x : logits) x = nd(rng);
    long double mx = -INFINITY;
    size_t arg = 0;
    for (size_t i = 0; i < logits.size(); ++i)
        if (logits[i] > mx) { mx = logits[i]; arg = i; }
    long double z = 0, h = 0;
    for (float x : logits) z += std::exp((long double)x - mx);
    for (float x : logits) {
        const long double p = std::exp((long double)x - mx) / z;
        if (p > 0) h -= p * std::log(p);
    }
    const int32_t chosen = 12345;
    const auto s = token_prob_stats(logits, chosen);
    EXPECT_EQ(size_t(s.top1_id), arg);
    EXPECT_NEAR(s.entropy, double(h), 1e-12 * double(h));
    EXPECT_NEAR(s.top1, double(1.0L / z), 1e-12);
    EXPECT_NEAR(s.surprisal, double(std::log(z) + mx - (long double)logits[chosen]), 1e-11);
}
