// MoE routing metrics (docs/metrics-moe.md) on hand-made routing sequences whose answers are
// worked out by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "phasemap/metrics/routing.hpp"

using namespace phasemap::metrics;

namespace {

// experts / weights laid out [T, M, k].
struct Seq {
    std::vector<std::int32_t> ex;
    std::vector<float> w;
    std::vector<int> ids;
    std::size_t T, M, k, E;
    RoutingView view() const { return {ex.data(), w.data(), T, M, k, E, ids}; }
};

// E = 4, k = 2, M = 2 (blocks 3 and 7), T = 4.
//   block 3: {0,1} (1,0) {2,3} {2,3}   weights (½, ½)
//   block 7: (1,0) (0,2) (0,1) (2,0)   weights (3, 1) — unnormalised on purpose
Seq hand() {
    Seq s{{}, {}, {3, 7}, 4, 2, 2, 4};
    const int b3[4][2] = {{0, 1}, {1, 0}, {2, 3}, {2, 3}};
    const int b7[4][2] = {{1, 0}, {0, 2}, {0, 1}, {2, 0}};
    for (int t = 0; t < 4; ++t) {
        s.ex.insert(s.ex.end(), {b3[t][0], b3[t][1], b7[t][0], b7[t][1]});
        s.w.insert(s.w.end(), {0.5f, 0.5f, 3.0f, 1.0f});
    }
    return s;
}

}  // namespace

TEST(RoutingEntropy, ByHand) {
    EXPECT_NEAR(routing_entropy(std::vector<float>{0.5f, 0.5f}), std::log(2.0), 1e-15);
    // Normalised first: (3, 1) → (¾, ¼).
    EXPECT_NEAR(routing_entropy(std::vector<float>{3.0f, 1.0f}), -(0.75 * std::log(0.75) + 0.25 * std::log(0.25)), 1e-15);
    // Uniform over all E = 8 experts (k = E): ln E.
    EXPECT_NEAR(routing_entropy(std::vector<float>(8, 0.125f)), std::log(8.0), 1e-15);
    EXPECT_EQ(routing_entropy(std::vector<float>{1.0f}), 0.0);         // k = 1
    EXPECT_EQ(routing_entropy(std::vector<float>{1.0f, 0.0f}), 0.0);    // one weight carries all
    EXPECT_TRUE(std::isnan(routing_entropy(std::vector<float>{0.5f, -0.1f})));
    EXPECT_TRUE(std::isnan(routing_entropy(std::vector<float>{0.0f, 0.0f})));
    EXPECT_TRUE(std::isnan(routing_entropy(std::vector<float>{0.5f, NAN})));
}

TEST(RoutingMetrics, HandMadeSequence) {
    const Seq s = hand();
    const RoutingResult r = routing_metrics(s.view());
    const double h3 = std::log(2.0), h7 = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
    ASSERT_EQ(r.entropy.size(), 4u);
    for (double e : r.entropy) EXPECT_NEAR(e, (h3 + h7) / 2, 1e-12);
    ASSERT_EQ(r.layers.size(), 2u);
    EXPECT_EQ(r.layers[0].block, 3);
    EXPECT_EQ(r.layers[1].block, 7);
    EXPECT_NEAR(r.layers[0].entropy.median.v, h3, 1e-12);
    EXPECT_NEAR(r.layers[1].entropy.median.v, h7, 1e-12);

    // Switches (sets, order ignored): block 3 at t = 2 only → 1/3; block 7 at t = 1, 2, 3 → 1.
    EXPECT_NEAR(r.layers[0].switch_rate.v, 1.0 / 3, 1e-15);
    EXPECT_NEAR(r.layers[1].switch_rate.v, 1.0, 1e-15);
    EXPECT_NEAR(r.switch_rate.v, 4.0 / 6, 1e-15);
    EXPECT_TRUE(std::isnan(r.switch_share[0]));
    EXPECT_EQ(r.switch_share[1], 0.5);
    EXPECT_EQ(r.switch_share[2], 1.0);
    EXPECT_EQ(r.switch_share[3], 0.5);

    // Loads: block 3 selects each expert twice of 8 → ¼ each: entropy 1, imbalance 1.
    // Block 7: expert 0 four times, 1 and 2 twice, 3 never → (½, ¼, ¼, 0):
    //   −Σ p ln p = 1.5 ln 2, / ln 4 = 0.75; imbalance 4 · ½ = 2 (= E/k, the most possible).
    EXPECT_EQ(r.layers[0].load, (std::vector<double>{0.25, 0.25, 0.25, 0.25}));
    EXPECT_EQ(r.layers[1].load, (std::vector<double>{0.5, 0.25, 0.25, 0.0}));
    EXPECT_NEAR(r.layers[0].load_entropy.v, 1.0, 1e-15);
    EXPECT_NEAR(r.layers[1].load_entropy.v, 0.75, 1e-15);
    EXPECT_NEAR(r.layers[0].load_imbalance.v, 1.0, 1e-15);
    EXPECT_NEAR(r.layers[1].load_imbalance.v, 2.0, 1e-15);
    EXPECT_NEAR(r.load_entropy.v, 0.875, 1e-15);
    EXPECT_NEAR(r.load_imbalance.v, 1.5, 1e-15);

    // Top-1 experts: X = (0, 1, 2, 2), Y = (1, 0, 0, 2). H(X) = H(Y) = 1.5 ln 2; the four joint
    // pairs are distinct, H(X,Y) = 2 ln 2, so I = ln 2 and NMI = ln 2 / 1.5 ln 2 = 2/3.
    ASSERT_EQ(r.pairs.size(), 1u);
    EXPECT_EQ(r.pairs[0].block_a, 3);
    EXPECT_EQ(r.pairs[0].block_b, 7);
    EXPECT_NEAR(r.pairs[0].top1_nmi.v, 2.0 / 3, 1e-12);
    EXPECT_NEAR(r.top1_nmi.v, 2.0 / 3, 1e-12);
    // Switch events {2} and {1, 2, 3}: Jaccard 1/3.
    EXPECT_NEAR(r.pairs[0].switch_agreement.v, 1.0 / 3, 1e-15);
    EXPECT_NEAR(r.switch_agreement.v, 1.0 / 3, 1e-15);
}

TEST(RoutingMetrics, SwitchingEveryOtherTokenIsRateOneHalf) {
    // Sets A A B B A (k = 1, E = 2): pairs AA, AB, BB, BA → 2 switches of 4.
    Seq s{{0, 0, 1, 1, 0}, {1, 1, 1, 1, 1}, {}, 5, 1, 1, 2};
    const RoutingResult r = routing_metrics(s.view());
    EXPECT_EQ(r.switch_rate.v, 0.5);
    EXPECT_EQ(r.layers[0].block, 0);  // no block ids: index
    // Loads 3/5, 2/5.
    EXPECT_NEAR(r.layers[0].load[0], 0.6, 1e-15);
    EXPECT_NEAR(r.load_entropy.v, -(0.6 * std::log(0.6) + 0.4 * std::log(0.4)) / std::log(2.0), 1e-12);
    EXPECT_NEAR(r.load_imbalance.v, 1.2, 1e-15);
    for (double e : r.entropy) EXPECT_EQ(e, 0.0);  // k = 1
}

TEST(RoutingMetrics, KEqualsEUniform) {
    // Every token selects all 4 experts with weight ¼: entropy ln 4 = ln E, never a switch,
    // perfectly balanced load; with no switch anywhere the agreement is undefined.
    Seq s{{}, {}, {}, 3, 2, 4, 4};
    const int orders[3][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}};
    for (int t = 0; t < 3; ++t)
        for (int m = 0; m < 2; ++m)
            for (int j = 0; j < 4; ++j) s.ex.push_back(orders[t][j]), s.w.push_back(0.25f);
    const RoutingResult r = routing_metrics(s.view());
    for (double e : r.entropy) EXPECT_NEAR(e, std::log(4.0), 1e-15);
    EXPECT_EQ(r.switch_rate.v, 0.0);
    EXPECT_NEAR(r.load_entropy.v, 1.0, 1e-15);
    EXPECT_NEAR(r.load_imbalance.v, 1.0, 1e-15);
    EXPECT_FALSE(r.switch_agreement.ok());
    EXPECT_NE(r.switch_agreement.missing_reason.find("no expert switch"), std::string::npos);
    // The top-1 expert (router order) still varies and is the same in both blocks: NMI 1.
    EXPECT_NEAR(r.top1_nmi.v, 1.0, 1e-12);
}

TEST(RoutingMetrics, IdenticalLayersUpToRelabellingAgreeFully) {
    // Block 1 uses the ids of block 0 shifted by 1 mod 3: the same routing under other names.
    const int b0[6] = {0, 1, 1, 2, 0, 0};
    Seq s{{}, {}, {}, 6, 2, 1, 3};
    for (int t = 0; t < 6; ++t) {
        s.ex.insert(s.ex.end(), {b0[t], (b0[t] + 1) % 3});
        s.w.insert(s.w.end(), {1.0f, 1.0f});
    }
    const RoutingResult r = routing_metrics(s.view());
    EXPECT_NEAR(r.top1_nmi.v, 1.0, 1e-12);
    EXPECT_EQ(r.switch_agreement.v, 1.0);
    EXPECT_EQ(r.layers[0].switch_rate.v, r.layers[1].switch_rate.v);
}

TEST(RoutingMetrics, IndependentLayersHaveZeroNmi) {
    // X = (0,0,1,1), Y = (0,1,0,1): every joint pair once, I = 0.
    Seq s{{0, 0, 0, 1, 1, 0, 1, 1}, std::vector<float>(8, 1.0f), {}, 4, 2, 1, 2};
    EXPECT_NEAR(routing_metrics(s.view()).top1_nmi.v, 0.0, 1e-15);
}

TEST(RoutingMetrics, OneTokenAndOneLayer) {
    Seq one_token{{2, 0}, {0.7f, 0.3f}, {}, 1, 1, 2, 4};
    const RoutingResult a = routing_metrics(one_token.view());
    EXPECT_NEAR(a.entropy[0], -(0.7 * std::log(0.7) + 0.3 * std::log(0.3)), 1e-6);
    EXPECT_TRUE(std::isnan(a.switch_share[0]));
    EXPECT_FALSE(a.switch_rate.ok());
    EXPECT_EQ(a.switch_rate.missing_reason, "fewer than 2 tokens");
    EXPECT_EQ(a.layers[0].load, (std::vector<double>{0.5, 0.0, 0.5, 0.0}));
    EXPECT_TRUE(a.pairs.empty());
    EXPECT_FALSE(a.top1_nmi.ok());
    EXPECT_NE(a.top1_nmi.missing_reason.find("at least 2 MoE blocks"), std::string::npos);

    Seq two_blocks_one_token{{0, 1}, {1, 1}, {}, 1, 2, 1, 2};
    const RoutingResult b = routing_metrics(two_blocks_one_token.view());
    EXPECT_EQ(b.top1_nmi.missing_reason, "fewer than 2 tokens");
    EXPECT_EQ(b.switch_agreement.missing_reason, "fewer than 2 tokens");

    // A constant top-1 expert: NMI undefined, saying which block.
    Seq constant{{0, 0, 0, 1}, {1, 1, 1, 1}, {4, 9}, 2, 2, 1, 2};
    const RoutingResult c = routing_metrics(constant.view());
    EXPECT_FALSE(c.top1_nmi.ok());
    EXPECT_NE(c.top1_nmi.missing_reason.find("block 4"), std::string::npos) << c.top1_nmi.missing_reason;
    // One expert per block: the normalised load entropy is undefined.
    Seq e1{{0, 0}, {1, 1}, {}, 2, 1, 1, 1};
    EXPECT_FALSE(routing_metrics(e1.view()).load_entropy.ok());
    EXPECT_EQ(routing_metrics(e1.view()).load_imbalance.v, 1.0);
}

TEST(RoutingMetrics, NoTokens) {
    Seq s{{}, {}, {}, 0, 2, 2, 4};
    const RoutingResult r = routing_metrics(s.view());
    EXPECT_TRUE(r.entropy.empty());
    EXPECT_FALSE(r.switch_rate.ok());
    EXPECT_FALSE(r.load_entropy.ok());
}

TEST(RoutingMetrics, InvalidViewsThrow) {
    Seq out_of_range{{0, 4}, {1, 1}, {}, 1, 1, 2, 4};
    EXPECT_THROW(routing_metrics(out_of_range.view()), MetricError);
    Seq negative{{-1, 0}, {1, 1}, {}, 1, 1, 2, 4};
    EXPECT_THROW(routing_metrics(negative.view()), MetricError);
    Seq twice{{1, 1}, {1, 1}, {}, 1, 1, 2, 4};
    EXPECT_THROW(routing_metrics(twice.view()), MetricError);
    Seq k_above_e{{0, 1, 2}, {1, 1, 1}, {}, 1, 1, 3, 2};
    EXPECT_THROW(routing_metrics(k_above_e.view()), MetricError);
    Seq ids{{0, 1}, {1, 1}, {1, 2}, 1, 1, 2, 4};
    EXPECT_THROW(routing_metrics(ids.view()), MetricError);
    try {
        routing_metrics(out_of_range.view());
    } catch (const MetricError& e) {
        EXPECT_NE(std::string(e.what()).find("expert id 4 at token 0"), std::string::npos) << e.what();
    }
}
