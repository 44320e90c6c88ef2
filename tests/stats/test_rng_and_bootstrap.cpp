// src/stats: known answers at the edges (n = 0, 1, 2, 3, ties, identical values) of the order
// statistics and the bootstrap, and the portability of the seeded generator. The expected
// sequences come from the algorithms' published reference values (the C++ standard's
// mt19937_64 check value, Vigna's splitmix64 outputs for seed 0) and from an independent Python
// reimplementation of mt19937_64 (the standard's parameters), rejection sampling and numpy's
// quantile — never from this code.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "phasemap/stats/stats.hpp"

using namespace phasemap::stats;

namespace {

// ------------------------------------------------------------------ RNG portability
TEST(StatsRng, Mt19937_64MatchesTheStandardsCheckValue) {
    Rng r;  // default seed 5489
    EXPECT_EQ(r(), 14514284786278117030ULL);
    EXPECT_EQ(r(), 4620546740167642908ULL);
    EXPECT_EQ(r(), 13109570281517897720ULL);
    Rng c;
    c.discard(9999);
    EXPECT_EQ(c(), 9981545732273789042ULL);  // [rand.predef]
}

TEST(StatsRng, DeriveSeedIsSplitmix64) {
    // splitmix64.c seeded with 0: the first three outputs (published reference values).
    EXPECT_EQ(derive_seed(0, 0), 0xE220A8397B1DCDAFULL);
    EXPECT_EQ(derive_seed(0, 1), 0x6E789E6AA1B965F4ULL);
    EXPECT_EQ(derive_seed(0, 2), 0x06C45D188009454FULL);
}

TEST(StatsRng, UniformIndexAndShuffleSequences) {
    Rng r(42);
    std::vector<std::uint64_t> got;
    for (int i = 0; i < 6; ++i) got.push_back(uniform_index(r, 5));
    EXPECT_EQ(got, (std::vector<std::uint64_t>{0, 2, 4, 0, 5, 2}));
    Rng z(1);
    EXPECT_EQ(uniform_index(z, 0), 0u);
    EXPECT_EQ(z(), Rng(1)()) << "bound 0 draws nothing";
    Rng s(3);
    std::vector<std::uint32_t> order(6);
    std::iota(order.begin(), order.end(), 0u);
    shuffle_in_place(order, s);
    EXPECT_EQ(order, (std::vector<std::uint32_t>{0, 4, 1, 3, 2, 5}));
}

// ------------------------------------------------------------------ order statistics at the edges
TEST(StatsQuantile, SmallSamplesTiesAndIdenticalValues) {
    EXPECT_TRUE(std::isnan(median(std::vector<double>{})));
    EXPECT_TRUE(std::isnan(quantile_sorted(std::vector<double>{}, 0.5)));
    EXPECT_EQ(median(std::vector<double>{7.5}), 7.5);
    EXPECT_EQ(quantile_sorted(std::vector<double>{7.5}, 0.975), 7.5);
    EXPECT_EQ(median(std::vector<double>{1, 4}), 2.5);
    EXPECT_EQ(quantile_sorted(std::vector<double>{1, 4}, 0.25), 1.75);   // numpy: 1 + 3·0.25
    EXPECT_EQ(median(std::vector<double>{3, 1, 2}), 2.0);
    EXPECT_EQ(quantile_sorted(std::vector<double>{1, 2, 3}, 0.75), 2.5);
    EXPECT_EQ(median(std::vector<double>{2, 2, 2, 2}), 2.0);
    std::vector<double> ties{5, 1, 5, 1};
    EXPECT_EQ(median_inplace(ties), 3.0);
    EXPECT_EQ(finite_sorted(std::vector<double>{NAN, 3, INFINITY, 1}), (std::vector<double>{1, 3}));
    EXPECT_EQ(average_ranks(std::vector<double>{10, 20, 10}), (std::vector<double>{1.5, 3, 1.5}));
    EXPECT_TRUE(std::isnan(variance(std::vector<double>{1.0})));
    EXPECT_EQ(variance(std::vector<double>{1.0, 3.0}), 2.0);
}

// ------------------------------------------------------------------ bootstrap
TEST(StatsBootstrap, EdgesEmptyOneAndIdentical) {
    Rng r(1);
    const BootstrapCi empty = percentile_bootstrap(std::vector<double>{}, 100, Statistic::median, r);
    EXPECT_EQ(empty.n, 0u);
    EXPECT_TRUE(std::isnan(empty.estimate));
    EXPECT_FALSE(empty.ci.ok());
    const BootstrapCi one = percentile_bootstrap(std::vector<double>{2.5, NAN}, 100, Statistic::median, r);
    EXPECT_EQ(one.n, 1u);
    EXPECT_EQ(one.estimate, 2.5);
    EXPECT_FALSE(one.ci.ok());
    EXPECT_EQ(r(), Rng(1)()) << "no draws below 2 values";
    const BootstrapCi same = percentile_bootstrap(std::vector<double>{4, 4, 4}, 50, Statistic::mean, r);
    EXPECT_EQ(same.ci.lo, 4.0);
    EXPECT_EQ(same.ci.hi, 4.0);
    EXPECT_TRUE(bootstrap_draws(std::vector<double>{}, 10, Statistic::mean, r).empty());
    EXPECT_FALSE(percentile_interval(std::vector<double>{1.0}).ok());
}

TEST(StatsBootstrap, PortableIntervalsMatchAnIndependentReference) {
    const std::vector<double> xs{0.5, 1.25, 2.0, 3.5, 0.75, 4.0, 2.5, 9.0};
    Rng a(11);
    const BootstrapCi med = percentile_bootstrap(xs, 1000, Statistic::median, a);
    EXPECT_EQ(med.estimate, 2.25);
    EXPECT_DOUBLE_EQ(med.ci.lo, 0.75);
    EXPECT_DOUBLE_EQ(med.ci.hi, 4.0);
    Rng b(11);
    const BootstrapCi mean_ci = percentile_bootstrap(xs, 1000, Statistic::mean, b);
    EXPECT_DOUBLE_EQ(mean_ci.ci.lo, 1.40625);
    EXPECT_DOUBLE_EQ(mean_ci.ci.hi, 4.938281249999999);
    const std::vector<double> six{0.5, 1.25, 2.0, 3.5, 0.75, 4.0};
    Rng c(11);
    const Interval i = percentile_interval(bootstrap_draws(six, 1000, Statistic::mean, c));
    EXPECT_DOUBLE_EQ(i.lo, 1.0822916666666667);
    EXPECT_DOUBLE_EQ(i.hi, 3.0833333333333335);
}

TEST(StatsBootstrap, PermutationP) {
    EXPECT_TRUE(std::isnan(permutation_p(NAN, std::vector<double>{1, 2})));
    EXPECT_EQ(permutation_p(5, std::vector<double>{}), 1.0);
    EXPECT_EQ(permutation_p(5, std::vector<double>{1, 5, 6, NAN}), 0.75);   // (1 + 2) / (1 + 3)
}

TEST(StatsCluster, NonSquareAndBadCutsThrow) {
    EXPECT_THROW(average_linkage(Eigen::MatrixXd(2, 3)), std::invalid_argument);
    const Eigen::MatrixXd d = (Eigen::MatrixXd(3, 3) << 0, 1, 4, 1, 0, 4, 4, 4, 0).finished();
    const auto m = average_linkage(d);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0].a, 0);
    EXPECT_EQ(m[0].b, 1);
    EXPECT_EQ(m[0].height, 1.0);
    EXPECT_EQ(m[1].height, 4.0);
    EXPECT_THROW(cut_tree(m, 3, 0), std::invalid_argument);
    EXPECT_EQ(cut_tree(m, 3, 2), (std::vector<int>{0, 0, 1}));
}

}  // namespace

namespace {
TEST(StatsBootstrap, LevelOutsideTheUnitIntervalIsAnError) {
    const std::vector<double> d{1, 2, 3};
    EXPECT_THROW(percentile_interval(d, 1.0), std::invalid_argument);
    EXPECT_THROW(percentile_interval(d, 0.0), std::invalid_argument);
    EXPECT_THROW(percentile_interval(d, NAN), std::invalid_argument);
}
}  // namespace
