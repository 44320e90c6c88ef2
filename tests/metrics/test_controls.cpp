// Shuffled-order controls (METRICS.md §6): determinism, p-value range, detection of structure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "phasemap/metrics/controls.hpp"

using namespace phasemap::metrics;

namespace {

// Two great-circle arcs with a right-angle turn between them (as in the hand-checked kink),
// in 8 dimensions with a small step: ct is tiny everywhere except at the kink, so ratio_norm is
// large; shuffling the token order destroys the smooth arcs.
std::vector<float> kinked_arcs(std::size_t T, std::size_t d) {
    std::vector<float> h(T * d, 0.0f);
    const double th = 0.05;
    const std::size_t half = T / 2;
    for (std::size_t t = 0; t < T; ++t) {
        float* x = &h[t * d];
        if (t <= half) {  // equator, longitude from −half·θ to 0
            const double a = -th * static_cast<double>(half - t);
            x[0] = static_cast<float>(std::cos(a));
            x[1] = static_cast<float>(std::sin(a));
        } else {  // meridian through e1
            const double a = th * static_cast<double>(t - half);
            x[0] = static_cast<float>(std::cos(a));
            x[2] = static_cast<float>(std::sin(a));
        }
    }
    return h;
}

// Every token's layer trajectory is a straight line (tortuosity 1): any other layer order is longer.
std::vector<float> straight_layers(std::size_t T, std::size_t L, std::size_t d) {
    std::vector<float> h(T * L * d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t l = 0; l < L; ++l)
            for (std::size_t j = 0; j < d; ++j)
                h[(t * L + l) * d + j] = static_cast<float>((static_cast<double>(j) + 1.0 + 0.1 * static_cast<double>(t)) *
                                                             static_cast<double>(l) +
                                                         std::sin(static_cast<double>(t + j)));
    return h;
}

void expect_same(const ControlResult& a, const ControlResult& b) {
    EXPECT_EQ(a.n_valid, b.n_valid);
    EXPECT_EQ(a.real.v, b.real.v);
    EXPECT_EQ(a.mean.v, b.mean.v);
    EXPECT_EQ(a.sd.v, b.sd.v);
    EXPECT_EQ(a.q50.v, b.q50.v);
    EXPECT_EQ(a.p_value.v, b.p_value.v);
}

}  // namespace

TEST(Controls, UniformIndexAndShuffleAreUnbiasedAndPortable) {
    std::mt19937_64 rng(1);
    std::vector<int> counts(7, 0);
    for (int i = 0; i < 70000; ++i) ++counts[uniform_index(rng, 6)];
    for (int c : counts) EXPECT_NEAR(c, 10000, 500);
    EXPECT_EQ(uniform_index(rng, 0), 0u);
    // A shuffle is a permutation, and the same seed gives the same permutation.
    std::vector<std::uint32_t> a(50), b(50);
    std::iota(a.begin(), a.end(), 0u);
    std::iota(b.begin(), b.end(), 0u);
    std::mt19937_64 r1(9), r2(9);
    shuffle_in_place(a, r1);
    shuffle_in_place(b, r2);
    EXPECT_EQ(a, b);
    std::vector<std::uint32_t> s = a;
    std::sort(s.begin(), s.end());
    for (std::uint32_t i = 0; i < 50; ++i) EXPECT_EQ(s[i], i);
    EXPECT_NE(a, s);
    // Every permutation of 3 elements appears about equally often.
    std::map<std::vector<std::uint32_t>, int> perms;
    std::mt19937_64 r3(3);
    for (int i = 0; i < 6000; ++i) {
        std::vector<std::uint32_t> p = {0, 1, 2};
        shuffle_in_place(p, r3);
        ++perms[p];
    }
    EXPECT_EQ(perms.size(), 6u);
    for (const auto& [p, c] : perms) EXPECT_NEAR(c, 1000, 150);
}

TEST(Controls, CompareWithShufflesHandChecked) {
    // real 5; shuffled 1 2 5 7 (the NaN is dropped) → #≥ = 2 → p_greater = 3/5; #≤ = 3 →
    // p_less = 4/5; two-sided min(1, 2·3/5) = 1. mean 3.75; Σ(x − 3.75)² = 7.5625 + 3.0625 + 1.5625 +
    // 10.5625 = 22.75 → population sd √(22.75/4) = √5.6875; median (numpy) 3.5.
    const std::vector<double> sh = {7, 1, 5, 2, std::nan("")};
    const ControlResult g = compare_with_shuffles("m", Value::of(5), sh, 5, Tail::greater);
    EXPECT_EQ(g.n_valid, 4u);
    EXPECT_EQ(g.shuffles, 5u);
    EXPECT_DOUBLE_EQ(g.p_greater.v, 3.0 / 5.0);
    EXPECT_DOUBLE_EQ(g.p_less.v, 4.0 / 5.0);
    EXPECT_DOUBLE_EQ(g.p_value.v, 3.0 / 5.0);
    EXPECT_DOUBLE_EQ(g.mean.v, 3.75);
    EXPECT_DOUBLE_EQ(g.sd.v, std::sqrt(5.6875));
    EXPECT_DOUBLE_EQ(g.q50.v, 3.5);
    EXPECT_DOUBLE_EQ(compare_with_shuffles("m", Value::of(5), sh, 5, Tail::less).p_value.v, 0.8);
    EXPECT_DOUBLE_EQ(compare_with_shuffles("m", Value::of(5), sh, 5, Tail::two_sided).p_value.v, 1.0);
    // Real value missing → p-values missing with the reason.
    const ControlResult m = compare_with_shuffles("m", Value::missing("why"), sh, 5, Tail::greater);
    EXPECT_FALSE(m.p_value.ok());
    EXPECT_NE(m.p_value.missing_reason.find("why"), std::string::npos);
    EXPECT_FALSE(compare_with_shuffles("m", Value::of(1), std::vector<double>{}, 0, Tail::greater).p_value.ok());
    for (Tail t : {Tail::greater, Tail::less, Tail::two_sided}) EXPECT_EQ(parse_tail(to_string(t)), t);
}

TEST(Controls, TokenOrderDeterministicAndDetectsStructure) {
    const std::size_t T = 61, d = 8;
    const std::vector<float> h = kinked_arcs(T, d);
    const RowsView<float> v(h.data(), T, d);
    const TokenAxisOptions opt;
    const ControlResult a = token_order_control(v, opt, 199, 42);
    const ControlResult b = token_order_control(v, opt, 199, 42);
    expect_same(a, b);
    const ControlResult c = token_order_control(v, opt, 199, 43);
    EXPECT_NE(a.mean.v, c.mean.v);
    ASSERT_TRUE(a.real.ok());
    EXPECT_EQ(a.real.v, token_axis(v, opt).ratio_norm.v);
    EXPECT_EQ(a.metric, "ratio_norm");
    EXPECT_EQ(a.n_valid, 199u);
    ASSERT_TRUE(a.p_value.ok());
    EXPECT_GT(a.p_value.v, 0.0);
    EXPECT_LE(a.p_value.v, 1.0);
    EXPECT_LE(a.p_value.v, 0.01) << "real " << a.real.v << " shuffled median " << a.q50.v;
    EXPECT_GT(a.real.v, a.q975.v);
    // With clipped_mad + ct_clip the control still runs and stays deterministic.
    TokenAxisOptions o2;
    o2.norm = NormMode::clipped_mad;
    o2.ct_clip = true;
    expect_same(token_order_control(v, o2, 20, 7), token_order_control(v, o2, 20, 7));
}

TEST(Controls, TokenOrderOnUnstructuredDataIsNotSignificant) {
    // i.i.d. Gaussian states: order carries no information, so the p-values of the repeats spread
    // over (0, 1]; the mean p-value over independent datasets is near 1/2.
    std::mt19937_64 rng(11);
    std::normal_distribution<float> nd;
    double sum = 0;
    const int reps = 30;
    for (int r = 0; r < reps; ++r) {
        std::vector<float> h(40 * 10);
        for (float& x : h) x = nd(rng);
        const ControlResult c = token_order_control(RowsView<float>(h.data(), 40, 10), {}, 99, 1000 + r);
        ASSERT_TRUE(c.p_value.ok());
        EXPECT_GT(c.p_value.v, 0.0);
        EXPECT_LE(c.p_value.v, 1.0);
        sum += c.p_value.v;
    }
    EXPECT_GT(sum / reps, 0.3);
    EXPECT_LT(sum / reps, 0.7);
}

TEST(Controls, LayerOrderDeterministicAndDetectsStraightPaths) {
    const std::size_t T = 7, L = 10, d = 6;
    const std::vector<float> h = straight_layers(T, L, d);
    const StatesView sv{h.data(), T, L, d};
    const auto a = layer_order_control(sv, 99, 5);
    const auto b = layer_order_control(sv, 99, 5);
    for (std::size_t k = 0; k < kLayerMetricCount; ++k) {
        expect_same(a[k], b[k]);
        EXPECT_EQ(a[k].metric, kLayerMetricNames[k]);
        ASSERT_TRUE(a[k].p_value.ok());
        EXPECT_GT(a[k].p_value.v, 0.0);
        EXPECT_LE(a[k].p_value.v, 1.0);
    }
    const auto& tort = a[static_cast<std::size_t>(LayerMetric::tortuosity)];
    EXPECT_NEAR(tort.real.v, 1.0, 1e-6);
    EXPECT_DOUBLE_EQ(tort.p_value.v, 1.0 / 100.0);  // every shuffle is longer than the straight path
    const auto& path = a[static_cast<std::size_t>(LayerMetric::path_length)];
    EXPECT_LE(path.p_value.v, 0.02);
    // Displacement and speed statistics of a permuted path differ; p-values exist and lie in (0, 1].
    EXPECT_THROW(layer_order_control(StatesView{h.data(), T, 2, d}, 5, 1), MetricError);
}
