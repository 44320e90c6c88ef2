// Vector building and the small statistics of steer (steer/vectors.cpp, steer/stats.cpp).
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

TEST(Steer, VectorsAndStatistics) {
    // mean-diff and PCA on a rank-one difference recover the direction
    const size_t n = 5, d = 4;
    std::vector<float> pos(n * d), neg(n * d, 0.0f);
    const float u[4] = {1, 2, -1, 0.5f};
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < d; ++j) pos[i * d + j] = float(i + 1) * u[j];
    const auto md = steer::build_direction(pos, neg, n, d, steer::VectorMethod::mean_diff);
    const auto pc = steer::build_direction(pos, neg, n, d, steer::VectorMethod::pca);
    for (size_t j = 0; j < d; ++j) {
        EXPECT_NEAR(md[j], 3.0f * u[j], 1e-5);
        EXPECT_NEAR(pc[j], md[j], 1e-4);
    }
    const std::vector<double> xs = {1, 2, 3, 4, 5};
    const auto ci = steer::bootstrap_mean(xs, 1000, 1);
    EXPECT_DOUBLE_EQ(ci.mean, 3.0);
    EXPECT_LT(ci.lo, 3.0);
    EXPECT_GT(ci.hi, 3.0);
    const auto g = steer::token_agreement(std::vector<int32_t>{1, 2, 3, 4}, std::vector<int32_t>{1, 2, 9, 4, 5});
    EXPECT_EQ(g.first_divergence, 2);
    EXPECT_DOUBLE_EQ(g.match_rate, 3.0 / 5.0);
    EXPECT_TRUE(steer::exact_match("  Paris.\nmore", "paris"));
    EXPECT_FALSE(steer::exact_match("Parisian", "Paris"));
}
