// Layer-axis metrics (METRICS.md §3): analytic paths, an independent long-double reference,
// invariances (translation, rotation, scaling) and bad input.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "phasemap/metrics/layer_axis.hpp"

using namespace phasemap::metrics;

namespace {

constexpr double kPi = std::numbers::pi;
double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-300); }

// Independent reference of §3 in long double, naive loops, path written as a list of points.
std::array<long double, kLayerMetricCount> reference(const std::vector<std::vector<double>>& h) {
    const std::size_t L = h.size(), d = h[0].size();
    auto sub = [&](const std::vector<long double>& a, const std::vector<long double>& b) {
        std::vector<long double> r(d);
        for (std::size_t j = 0; j < d; ++j) r[j] = a[j] - b[j];
        return r;
    };
    auto norm = [&](const std::vector<long double>& a) {
        long double s = 0;
        for (long double x : a) s += x * x;
        return std::sqrt(s);
    };
    std::vector<std::vector<long double>> p(L, std::vector<long double>(d));
    for (std::size_t l = 0; l < L; ++l)
        for (std::size_t j = 0; j < d; ++j) p[l][j] = h[l][j];
    std::vector<std::vector<long double>> v;
    for (std::size_t l = 0; l + 1 < L; ++l) v.push_back(sub(p[l + 1], p[l]));
    std::vector<long double> speed;
    for (const auto& x : v) speed.push_back(norm(x));
    long double path = 0;
    for (long double s : speed) path += s;
    const long double disp = norm(sub(p[L - 1], p[0]));
    const long double mean = path / speed.size();
    long double var = 0;
    for (long double s : speed) var += (s - mean) * (s - mean);
    var /= speed.size();
    long double acc = 0, turn = 0;
    for (std::size_t i = 0; i + 1 < v.size(); ++i) {
        acc += norm(sub(v[i + 1], v[i]));
        long double dot = 0;
        for (std::size_t j = 0; j < d; ++j) dot += v[i][j] * v[i + 1][j];
        long double c = (speed[i] == 0 || speed[i + 1] == 0) ? 1.0L : dot / (speed[i] * speed[i + 1]);
        c = std::max(-1.0L, std::min(1.0L, c));
        turn += std::acos(c);
    }
    const long double n2 = v.size() - 1;
    return {path, disp, disp == 0 ? std::numeric_limits<long double>::quiet_NaN() : path / disp, mean,
            mean == 0 ? 0.0L : std::sqrt(var) / mean, acc / n2, turn / n2};
}

std::vector<double> flat(const std::vector<std::vector<double>>& h) {
    std::vector<double> f;
    for (const auto& r : h) f.insert(f.end(), r.begin(), r.end());
    return f;
}
LayerTrajectory metrics_of(const std::vector<std::vector<double>>& h) {
    const auto f = flat(h);
    return layer_trajectory(RowsView<double>(f.data(), h.size(), h[0].size()));
}

}  // namespace

// Equally spaced points on a straight line: tortuosity 1, no turning, no acceleration, constant speed.
TEST(LayerAxis, StraightLine) {
    const std::size_t L = 9, d = 4;
    const double a[4] = {1, -2, 0.5, 3}, b[4] = {0.25, 0.5, -1, 2};
    std::vector<float> h(L * d);
    for (std::size_t l = 0; l < L; ++l)
        for (std::size_t j = 0; j < d; ++j) h[l * d + j] = static_cast<float>(a[j] + static_cast<double>(l) * b[j]);
    const LayerTrajectory m = layer_trajectory(RowsView<float>(h.data(), L, d));
    const double step = std::sqrt(0.0625 + 0.25 + 1 + 4);
    EXPECT_NEAR(m.path_length, 8 * step, 1e-12);
    EXPECT_NEAR(m.displacement, 8 * step, 1e-12);
    EXPECT_NEAR(m.tortuosity, 1.0, 1e-12);
    EXPECT_NEAR(m.mean_speed, step, 1e-12);
    EXPECT_NEAR(m.speed_cv, 0.0, 1e-12);
    EXPECT_NEAR(m.mean_acceleration, 0.0, 1e-12);
    EXPECT_NEAR(m.mean_turning_angle_rad, 0.0, 1e-6);  // acos near 1 amplifies last-bit noise
}

// A single right-angle kink in the plane: (0,0) → (1,0) → (2,0) → (2,1) → (2,2).
// speeds 1,1,1,1: path 4, cv 0; displacement ‖(2,2)‖ = √8, tortuosity 4/√8 = √2;
// accelerations ‖v_{l+1} − v_l‖ = 0, √2, 0 → mean √2/3; turning angles 0, π/2, 0 → mean π/6.
TEST(LayerAxis, SingleKinkHandChecked) {
    const std::vector<float> h = {0, 0, 1, 0, 2, 0, 2, 1, 2, 2};
    const LayerTrajectory m = layer_trajectory(RowsView<float>(h.data(), 5, 2));
    EXPECT_DOUBLE_EQ(m.path_length, 4.0);
    EXPECT_DOUBLE_EQ(m.displacement, std::sqrt(8.0));
    EXPECT_NEAR(m.tortuosity, std::sqrt(2.0), 1e-15);
    EXPECT_DOUBLE_EQ(m.mean_speed, 1.0);
    EXPECT_DOUBLE_EQ(m.speed_cv, 0.0);
    EXPECT_NEAR(m.mean_acceleration, std::sqrt(2.0) / 3, 1e-15);
    EXPECT_NEAR(m.mean_turning_angle_rad, kPi / 6, 1e-15);
}

// Speeds 1 and 3 alternate: mean 2, population std 1 → speed_cv 0.5; a closed loop has
// displacement 0 → tortuosity NaN (dropped by the summary).
TEST(LayerAxis, SpeedCvAndClosedLoop) {
    const std::vector<float> h = {0, 0, 1, 0, 1, 3};  // speeds 1, 3
    const LayerTrajectory m = layer_trajectory(RowsView<float>(h.data(), 3, 2));
    EXPECT_DOUBLE_EQ(m.speed_cv, 0.5);
    EXPECT_NEAR(m.mean_turning_angle_rad, kPi / 2, 1e-15);
    const std::vector<float> loop = {0, 0, 1, 0, 1, 1, 0, 0};
    const LayerTrajectory c = layer_trajectory(RowsView<float>(loop.data(), 4, 2));
    EXPECT_EQ(c.displacement, 0.0);
    EXPECT_TRUE(std::isnan(c.tortuosity));
    // Zero displacement steps: cos taken as 1 → turning 0; mean speed 0 → speed_cv 0.
    const std::vector<float> still = {1, 2, 1, 2, 1, 2};
    const LayerTrajectory s = layer_trajectory(RowsView<float>(still.data(), 3, 2));
    EXPECT_EQ(s.mean_speed, 0.0);
    EXPECT_EQ(s.speed_cv, 0.0);
    EXPECT_EQ(s.mean_turning_angle_rad, 0.0);
    EXPECT_TRUE(std::isnan(s.tortuosity));
}

// Random walks (fixed seed) against the long-double reference, float32 and float64 entry points.
TEST(LayerAxis, RandomWalkMatchesIndependentReference) {
    std::mt19937_64 rng(77);
    std::normal_distribution<double> nd;
    for (std::size_t d : {1u, 5u, 16u, 33u, 200u}) {
        for (std::size_t L : {3u, 4u, 23u}) {
            std::vector<std::vector<double>> h(L, std::vector<double>(d));
            for (std::size_t j = 0; j < d; ++j) h[0][j] = static_cast<float>(nd(rng));
            for (std::size_t l = 1; l < L; ++l)
                for (std::size_t j = 0; j < d; ++j) h[l][j] = static_cast<float>(h[l - 1][j] + nd(rng));
            const auto ref = reference(h);
            const auto hd = flat(h);
            std::vector<float> hf(hd.begin(), hd.end());
            for (const LayerTrajectory& m : {layer_trajectory(RowsView<float>(hf.data(), L, d)),
                                             layer_trajectory(RowsView<double>(hd.data(), L, d))}) {
                for (std::size_t k = 0; k < kLayerMetricCount; ++k) {
                    const double got = get(m, static_cast<LayerMetric>(k));
                    const double want = static_cast<double>(ref[k]);
                    if (d == 1 && k == static_cast<std::size_t>(LayerMetric::mean_turning_angle_rad)) {
                        EXPECT_NEAR(got, want, 1e-12);  // angles are exactly 0 or π in 1-D
                        continue;
                    }
                    EXPECT_LE(rel(got, want), 1e-12) << kLayerMetricNames[k] << " d=" << d << " L=" << L;
                }
            }
        }
    }
}

// Invariances of §3: tortuosity, turning angle and speed_cv unchanged by translation, rotation
// (random orthogonal matrix from Eigen's QR) and uniform scaling; lengths, speeds and
// accelerations scale linearly with the scale factor. Computed on float64 states so that the
// transformed states are not re-rounded to float32.
TEST(LayerAxis, InvariancesUnderTranslationRotationScaling) {
    std::mt19937_64 rng(4242);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> scale(0.05, 20.0);
    for (int trial = 0; trial < 60; ++trial) {
        const std::size_t L = 3 + static_cast<std::size_t>(trial % 20), d = 2 + static_cast<std::size_t>(trial % 17);
        std::vector<std::vector<double>> h(L, std::vector<double>(d));
        for (auto& r : h)
            for (double& x : r) x = nd(rng) * 3;
        Eigen::MatrixXd A(d, d);
        for (Eigen::Index i = 0; i < A.size(); ++i) A.data()[i] = nd(rng);
        const Eigen::MatrixXd Q = Eigen::HouseholderQR<Eigen::MatrixXd>(A).householderQ();
        ASSERT_LT((Q.transpose() * Q - Eigen::MatrixXd::Identity(d, d)).norm(), 1e-12);
        Eigen::VectorXd b(d);
        for (Eigen::Index j = 0; j < b.size(); ++j) b[j] = nd(rng) * 10;
        const double c = scale(rng);

        auto transform = [&](int which) {
            std::vector<std::vector<double>> o = h;
            for (std::size_t l = 0; l < L; ++l) {
                Eigen::VectorXd x = Eigen::Map<const Eigen::VectorXd>(h[l].data(), static_cast<Eigen::Index>(d));
                if (which == 0) x = x + b;
                if (which == 1) x = Q * x;
                if (which == 2) x = c * x;
                if (which == 3) x = c * (Q * x) + b;
                for (std::size_t j = 0; j < d; ++j) o[l][j] = x[static_cast<Eigen::Index>(j)];
            }
            return o;
        };
        const LayerTrajectory m0 = metrics_of(h);
        for (int which = 0; which < 4; ++which) {
            const LayerTrajectory m = metrics_of(transform(which));
            const double f = (which >= 2) ? c : 1.0;
            EXPECT_LE(rel(m.tortuosity, m0.tortuosity), 1e-9) << which;
            EXPECT_LE(std::fabs(m.mean_turning_angle_rad - m0.mean_turning_angle_rad), 1e-9 * std::max(1.0, m0.mean_turning_angle_rad)) << which;
            EXPECT_LE(rel(m.speed_cv, m0.speed_cv), 1e-9) << which;
            EXPECT_LE(rel(m.path_length, f * m0.path_length), 1e-9) << which;
            EXPECT_LE(rel(m.displacement, f * m0.displacement), 1e-9) << which;
            EXPECT_LE(rel(m.mean_speed, f * m0.mean_speed), 1e-9) << which;
            EXPECT_LE(rel(m.mean_acceleration, f * m0.mean_acceleration), 1e-9) << which;
        }
    }
}

TEST(LayerAxis, TooFewLayersIsAClearError) {
    const std::vector<float> h = {0, 0, 1, 1};
    try {
        layer_trajectory(RowsView<float>(h.data(), 2, 2));
        FAIL() << "expected MetricError";
    } catch (const MetricError& e) {
        EXPECT_NE(std::string(e.what()).find("at least 3 layers"), std::string::npos) << e.what();
    }
    EXPECT_THROW(layer_trajectory(RowsView<float>(h.data(), 0, 2)), MetricError);
    // Whole-run axis: missing with a reason, no exception.
    StatesView sv{h.data(), 1, 2, 2};
    const LayerAxisResult r = layer_axis(sv);
    EXPECT_NE(r.missing_reason.find("at least 3 captured layers"), std::string::npos);
    for (const auto& s : r.summary) EXPECT_EQ(s.n, 0u);
}

TEST(LayerAxis, NonFiniteIsAClearErrorPerTokenAndDroppedFromSummary) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        std::vector<float> h = {0, 0, 1, 0, 2, 1, bad, 3};
        EXPECT_THROW(layer_trajectory(RowsView<float>(h.data(), 4, 2)), MetricError);
        // Run of 3 tokens × 4 layers × 2 dims, token 1 broken (its last layer).
        std::vector<float> run;
        const std::vector<float> good = {0, 0, 1, 0, 2, 1, 2, 3};
        run.insert(run.end(), good.begin(), good.end());
        run.insert(run.end(), h.begin(), h.end());
        run.insert(run.end(), good.begin(), good.end());
        const LayerAxisResult r = layer_axis(StatesView{run.data(), 3, 4, 2});
        EXPECT_TRUE(r.missing_reason.empty());
        ASSERT_EQ(r.token_errors.size(), 1u);
        EXPECT_EQ(r.token_errors[0].first, 1u);
        EXPECT_NE(r.token_errors[0].second.find("token 1"), std::string::npos);
        for (std::size_t k = 0; k < kLayerMetricCount; ++k) {
            EXPECT_TRUE(std::isnan(r.values[k][1]));
            EXPECT_EQ(r.summary[k].n, 2u) << kLayerMetricNames[k];
            EXPECT_EQ(r.values[k][0], r.values[k][2]);
        }
    }
}

// layer_axis over a run equals layer_trajectory token by token, and its summaries are the
// numpy-style quantiles of those values.
TEST(LayerAxis, RunAxisMatchesPerTokenAndSummaries) {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> nd;
    const std::size_t T = 11, L = 6, d = 19;
    std::vector<float> h(T * L * d);
    for (float& x : h) x = nd(rng);
    const StatesView sv{h.data(), T, L, d};
    const LayerAxisResult r = layer_axis(sv);
    for (std::size_t t = 0; t < T; ++t) {
        const LayerTrajectory m = layer_trajectory(sv.token(t));
        for (std::size_t k = 0; k < kLayerMetricCount; ++k)
            EXPECT_EQ(r.values[k][t], get(m, static_cast<LayerMetric>(k)));
    }
    for (std::size_t k = 0; k < kLayerMetricCount; ++k) {
        std::vector<double> s = r.values[k];
        std::sort(s.begin(), s.end());
        EXPECT_EQ(r.summary[k].n, T);
        EXPECT_EQ(r.summary[k].median.v, s[5]);  // n = 11: median is the 6th value
        EXPECT_EQ(r.summary[k].q1.v, quantile_sorted(s, 0.25));
        EXPECT_EQ(r.summary[k].q3.v, quantile_sorted(s, 0.75));
    }
}

TEST(LayerAxis, LayerStepsResolveSpeedAndTurningPerLayer) {
    // Hand-checked path in the plane: (0,0) → (3,4) → (3,4) → (3,10) → (0,10).
    const std::vector<float> h{0, 0, 3, 4, 3, 4, 3, 10, 0, 10};
    const LayerSteps s = layer_steps({h.data(), 5, 2});
    ASSERT_EQ(s.speed.size(), 5u);
    EXPECT_TRUE(std::isnan(s.speed[0]));
    EXPECT_DOUBLE_EQ(s.speed[1], 5.0);
    EXPECT_DOUBLE_EQ(s.speed[2], 0.0);
    EXPECT_DOUBLE_EQ(s.speed[3], 6.0);
    EXPECT_DOUBLE_EQ(s.speed[4], 3.0);
    EXPECT_TRUE(std::isnan(s.turning_angle[0]));
    EXPECT_DOUBLE_EQ(s.turning_angle[1], 0.0);  // zero-length step: cos taken as 1
    EXPECT_DOUBLE_EQ(s.turning_angle[2], 0.0);
    EXPECT_NEAR(s.turning_angle[3], M_PI / 2, 1e-12);  // up, then left
    EXPECT_TRUE(std::isnan(s.turning_angle[4]));

    // On random trajectories the per-layer profile sums / averages to the §3 token metrics.
    std::mt19937_64 g(5);
    std::normal_distribution<float> nd;
    for (size_t L : {3u, 7u, 25u}) {
        std::vector<float> r(L * 16);
        for (auto& x : r) x = nd(g);
        const LayerSteps p = layer_steps({r.data(), L, 16});
        const LayerTrajectory t = layer_trajectory(RowsView<float>{r.data(), L, 16});
        double path = 0, turn = 0;
        for (size_t l = 1; l < L; ++l) path += p.speed[l];
        for (size_t l = 1; l + 1 < L; ++l) turn += p.turning_angle[l];
        EXPECT_NEAR(path, t.path_length, 1e-9 * t.path_length) << L;
        EXPECT_NEAR(turn / double(L - 2), t.mean_turning_angle_rad, 1e-9) << L;
    }
    // A non-finite state blanks the steps that touch it, not the others.
    std::vector<float> bad{0, 0, 1, 0, NAN, 0, 1, 1, 2, 1, 3, 2};
    const LayerSteps b = layer_steps({bad.data(), 6, 2});
    EXPECT_DOUBLE_EQ(b.speed[1], 1.0);
    EXPECT_TRUE(std::isnan(b.speed[2]) && std::isnan(b.speed[3]));
    EXPECT_DOUBLE_EQ(b.speed[4], 1.0);
    EXPECT_DOUBLE_EQ(b.speed[5], std::sqrt(2.0));
    EXPECT_TRUE(std::isnan(b.turning_angle[1]) && std::isnan(b.turning_angle[2]) && std::isnan(b.turning_angle[3]));
    EXPECT_NEAR(b.turning_angle[4], M_PI / 4, 1e-12);
}
