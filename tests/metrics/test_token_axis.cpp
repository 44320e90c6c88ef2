// Token-axis metrics (METRICS.md §2): analytic trajectories, an independent long-double reference,
// properties over random inputs, late_ct / collapse / regimes, and bad input.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "phasemap/metrics/token_axis.hpp"

using namespace phasemap::metrics;

namespace {

constexpr double kPi = std::numbers::pi;

// Relative difference, with an absolute floor for values near 0.
double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-300); }

// Independent reference of §2.1–2.4, written naively in long double with full matrices.
struct RefSeries {
    std::vector<long double> delta, curvature, ct;
};
RefSeries reference_series(const std::vector<std::vector<double>>& h, Curvature c) {
    const std::size_t T = h.size(), d = T ? h[0].size() : 0;
    std::vector<std::vector<long double>> x(T, std::vector<long double>(d)), v;
    for (std::size_t t = 0; t < T; ++t) {
        long double n = 0;
        for (std::size_t j = 0; j < d; ++j) n += (long double)h[t][j] * (long double)h[t][j];
        n = std::sqrt(n);
        if (n < 1e-12L) n = 1e-12L;
        for (std::size_t j = 0; j < d; ++j) x[t][j] = (long double)h[t][j] / n;
    }
    RefSeries r;
    for (std::size_t t = 1; t < T; ++t) {
        std::vector<long double> vt(d);
        long double s = 0;
        for (std::size_t j = 0; j < d; ++j) {
            vt[j] = x[t][j] - x[t - 1][j];
            s += vt[j] * vt[j];
        }
        v.push_back(vt);
        r.delta.push_back(std::sqrt(s));
    }
    for (std::size_t i = 1; i < v.size(); ++i) {
        const auto& a = v[i - 1];
        const auto& b = v[i];
        long double dot = 0, na = 0, nb = 0, dd = 0;
        for (std::size_t j = 0; j < d; ++j) {
            dot += a[j] * b[j];
            na += a[j] * a[j];
            nb += b[j] * b[j];
            dd += (b[j] - a[j]) * (b[j] - a[j]);
        }
        long double cs = (na == 0 || nb == 0) ? 1.0L : dot / std::sqrt(na * nb);
        cs = std::max(-1.0L, std::min(1.0L, cs));
        long double k = 0;
        if (c == Curvature::one_minus_cos) k = 1 - cs;
        if (c == Curvature::angle) k = std::acos(cs);
        if (c == Curvature::second_diff) k = std::sqrt(dd);
        r.curvature.push_back(k);
        r.ct.push_back(r.delta[i] * k);
    }
    return r;
}

std::vector<float> flatten_f(const std::vector<std::vector<double>>& h) {
    std::vector<float> f;
    for (const auto& row : h)
        for (double v : row) f.push_back(static_cast<float>(v));
    return f;
}
std::vector<double> flatten_d(const std::vector<std::vector<double>>& h) {
    std::vector<double> f;
    for (const auto& row : h) f.insert(f.end(), row.begin(), row.end());
    return f;
}
// Values that are exactly float32 (so float and double paths see the same numbers).
std::vector<std::vector<double>> as_float_values(std::vector<std::vector<double>> h) {
    for (auto& row : h)
        for (double& v : row) v = static_cast<float>(v);
    return h;
}

std::vector<std::vector<double>> random_walk(std::mt19937_64& rng, std::size_t T, std::size_t d, double step) {
    std::normal_distribution<double> nd;
    std::vector<std::vector<double>> h(T, std::vector<double>(d));
    for (std::size_t j = 0; j < d; ++j) h[0][j] = nd(rng);
    for (std::size_t t = 1; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) h[t][j] = h[t - 1][j] + step * nd(rng);
    return h;
}

TokenSeries series_of(const std::vector<std::vector<double>>& h, Curvature c) {
    const auto f = flatten_d(h);
    return token_series(RowsView<double>(f.data(), h.size(), h.empty() ? 0 : h[0].size()), c);
}

}  // namespace

// A "straight line" on the token axis: every state on the same ray from the origin, h_t = (t+1)·u.
// The unit vectors are identical, so every delta_t = 0, cos is taken as 1 (zero displacement),
// curvature 0, ct 0, and ratio_norm is missing because the mean ct is 0.
TEST(TokenAxis, StraightRayHasZeroCurvatureAndMissingRatio) {
    const std::size_t T = 12, d = 5;
    std::vector<float> h(T * d);
    const float u[5] = {0.5f, -1.0f, 2.0f, 0.25f, 3.0f};
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) h[t * d + j] = static_cast<float>(t + 1) * u[j];
    for (Curvature c : {Curvature::one_minus_cos, Curvature::angle, Curvature::second_diff}) {
        const TokenSeries s = token_series(RowsView<float>(h.data(), T, d), c);
        ASSERT_EQ(s.delta.size(), T - 1);
        ASSERT_EQ(s.ct.size(), T - 2);
        for (double v : s.delta) EXPECT_LT(v, 1e-7);  // float rounding of t·u only
        for (double v : s.ct) EXPECT_LT(v, 1e-12);
    }
    // Exactly collinear in float64: exact zeros, ratio_norm missing with the reason.
    std::vector<double> hd(T * d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) hd[t * d + j] = std::ldexp(1.0, static_cast<int>(t)) * u[j];
    const TokenSeries s = token_series(RowsView<double>(hd.data(), T, d));
    for (double v : s.delta) EXPECT_EQ(v, 0.0);
    for (double v : s.curvature) EXPECT_EQ(v, 0.0);
    for (double v : s.ct) EXPECT_EQ(v, 0.0);
    const Value r = ratio_norm(s.ct);
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.missing_reason.find("mean ct is 0"), std::string::npos) << r.missing_reason;
}

// States on a planar circle around the origin at a constant angle step θ (radius varying per
// token, which the unit normalisation removes): consecutive chords have length 2 sin(θ/2) and
// meet at angle θ, so ct_t is the same for every t and ratio_norm = 1.
TEST(TokenAxis, PlanarCircleGivesConstantCtAndRatioOne) {
    const std::size_t T = 40, d = 6;
    const double theta = 0.3;
    std::vector<double> h(T * d, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
        const double R = 1.0 + 0.1 * static_cast<double>(t % 3);
        h[t * d + 1] = R * std::cos(theta * static_cast<double>(t));
        h[t * d + 4] = R * std::sin(theta * static_cast<double>(t));
    }
    const RowsView<double> v(h.data(), T, d);
    const double chord = 2 * std::sin(theta / 2);
    struct Case {
        Curvature c;
        double curvature;
    };
    for (const Case& k : {Case{Curvature::one_minus_cos, 1 - std::cos(theta)}, Case{Curvature::angle, theta},
                          Case{Curvature::second_diff, 4 * std::sin(theta / 2) * std::sin(theta / 2)}}) {
        const TokenSeries s = token_series(v, k.c);
        for (double x : s.delta) EXPECT_NEAR(x, chord, 1e-12);
        for (double x : s.curvature) EXPECT_LE(rel(x, k.curvature), 1e-9) << to_string(k.c);
        const Value r = ratio_norm(s.ct);
        ASSERT_TRUE(r.ok());
        EXPECT_NEAR(r.v, 1.0, 1e-12) << to_string(k.c);
    }
}

// A single kink on the unit sphere (θ = 60°): x_0, x_1, x_2 walk along the equator in steps of θ
// (longitudes −2θ, −θ, 0), then x_3, x_4 climb the meridian through x_2 = e1 in steps of θ.
// Chords along one great circle: delta = 2 sin(θ/2) = 1 and they meet at angle θ, so
// ct_regular = 1 · (1 − cos 60°) = 1/2 (ct_2 and ct_4).
// At the kink: v_2 = x_2 − x_1 = (1 − cos θ, sin θ, 0), v_3 = x_3 − x_2 = (cos θ − 1, 0, sin θ);
// v_2·v_3 = −(1 − cos θ)² and ‖v‖² = 2(1 − cos θ), so cos = −(1 − cos θ)/2 = −1/4 and
// ct_3 = 1 · (1 + 1/4) = 5/4. ratio_norm = max/mean = (5/4) / ((1/2 + 5/4 + 1/2)/3) = 5/3.
// States are scaled per token (norms 1 … 5) to exercise the unit normalisation.
TEST(TokenAxis, SingleKinkRatioDerivedByHand) {
    const double th = kPi / 3;
    const std::vector<std::array<double, 3>> x = {
        {std::cos(-2 * th), std::sin(-2 * th), 0}, {std::cos(-th), std::sin(-th), 0}, {1, 0, 0},
        {std::cos(th), 0, std::sin(th)}, {std::cos(2 * th), 0, std::sin(2 * th)}};
    std::vector<double> h;
    for (std::size_t t = 0; t < x.size(); ++t)
        for (double v : x[t]) h.push_back(v * static_cast<double>(t + 1));
    const TokenSeries s = token_series(RowsView<double>(h.data(), 5, 3));
    ASSERT_EQ(s.ct.size(), 3u);
    EXPECT_NEAR(s.ct[0], 0.5, 1e-12);
    EXPECT_NEAR(s.ct[1], 1.25, 1e-12);
    EXPECT_NEAR(s.ct[2], 0.5, 1e-12);
    const Value r = ratio_norm(s.ct);
    ASSERT_TRUE(r.ok());
    EXPECT_NEAR(r.v, 5.0 / 3.0, 1e-12);
}

// Random walk (fixed seed) against the long-double reference, for all three curvature variants,
// through both the float32 and the float64 entry points; dims chosen to exercise kernel tails.
TEST(TokenAxis, RandomWalkMatchesIndependentReference) {
    std::mt19937_64 rng(2024);
    for (std::size_t d : {1u, 7u, 16u, 37u, 130u}) {
        const auto h = as_float_values(random_walk(rng, 50, d, 0.7));
        const auto hf = flatten_f(h);
        const auto hd = flatten_d(h);
        for (Curvature c : {Curvature::one_minus_cos, Curvature::angle, Curvature::second_diff}) {
            const RefSeries ref = reference_series(h, c);
            for (const TokenSeries& s : {token_series(RowsView<float>(hf.data(), 50, d), c),
                                         token_series(RowsView<double>(hd.data(), 50, d), c)}) {
                ASSERT_EQ(s.delta.size(), ref.delta.size());
                ASSERT_EQ(s.ct.size(), ref.ct.size());
                for (std::size_t i = 0; i < s.delta.size(); ++i)
                    EXPECT_LE(rel(s.delta[i], (double)ref.delta[i]), 1e-12) << "d=" << d << " i=" << i;
                for (std::size_t i = 0; i < s.ct.size(); ++i) {
                    if (d == 1) {  // on the 1-sphere {−1, 1} displacements are collinear: curvature 0 or 2
                        EXPECT_NEAR(s.curvature[i], (double)ref.curvature[i], 1e-12);
                        continue;
                    }
                    EXPECT_LE(rel(s.curvature[i], (double)ref.curvature[i]), 1e-12)
                        << to_string(c) << " d=" << d << " i=" << i;
                    EXPECT_LE(rel(s.ct[i], (double)ref.ct[i]), 1e-12) << to_string(c) << " d=" << d << " i=" << i;
                }
                // ratio_norm against the reference's max/mean.
                if (d > 1) {
                    long double mx = 0, sum = 0;
                    for (long double v : ref.ct) {
                        mx = std::max(mx, v);
                        sum += v;
                    }
                    const Value r = ratio_norm(s.ct);
                    ASSERT_TRUE(r.ok());
                    EXPECT_LE(rel(r.v, (double)(mx / (sum / ref.ct.size()))), 1e-12);
                }
            }
        }
    }
}

// Property: 1 ≤ ratio_norm ≤ number of ct values, over many random inputs of varied shape and
// distribution (Gaussian, heavy-tailed, sparse with repeated states).
TEST(TokenAxis, RatioNormBoundsOverRandomInputs) {
    std::mt19937_64 rng(99);
    std::uniform_int_distribution<int> Tn(5, 60), dn(1, 40), kind(0, 2);
    std::normal_distribution<double> nd;
    std::cauchy_distribution<double> cd;
    int checked = 0;
    for (int trial = 0; trial < 400; ++trial) {
        const std::size_t T = static_cast<std::size_t>(Tn(rng)), d = static_cast<std::size_t>(dn(rng));
        const int k = kind(rng);
        std::vector<float> h(T * d);
        for (std::size_t i = 0; i < h.size(); ++i) {
            double v = k == 1 ? cd(rng) : nd(rng);
            if (k == 2 && (i / d) % 3 == 1) v = h[i - d];  // repeat the previous state: zero displacement
            h[i] = static_cast<float>(v);
        }
        for (Curvature c : {Curvature::one_minus_cos, Curvature::angle, Curvature::second_diff}) {
            const TokenSeries s = token_series(RowsView<float>(h.data(), T, d), c);
            const Value r = ratio_norm(s.ct);
            if (!r.ok()) continue;
            EXPECT_GE(r.v, 1.0);
            EXPECT_LE(r.v, static_cast<double>(s.ct.size()));
            ++checked;
        }
    }
    EXPECT_GT(checked, 1000);
}

// Properties: ratio_norm (and every ct) unchanged by positive uniform scaling and by rotation of
// all states (unit vectors only rotate), ≤ 1e-9.
TEST(TokenAxis, RatioNormInvariantUnderScalingAndRotation) {
    std::mt19937_64 rng(5);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> scale(0.01, 100.0);
    for (int trial = 0; trial < 50; ++trial) {
        const std::size_t T = 30, d = 12;
        const auto h = random_walk(rng, T, d, 0.5);
        Eigen::MatrixXd A(d, d);
        for (Eigen::Index i = 0; i < A.size(); ++i) A.data()[i] = nd(rng);
        const Eigen::MatrixXd Q = Eigen::HouseholderQR<Eigen::MatrixXd>(A).householderQ();
        const double c = scale(rng);
        std::vector<std::vector<double>> hs = h, hr = h;
        for (std::size_t t = 0; t < T; ++t) {
            Eigen::VectorXd x = Eigen::Map<const Eigen::VectorXd>(h[t].data(), static_cast<Eigen::Index>(d));
            const Eigen::VectorXd y = Q * x;
            for (std::size_t j = 0; j < d; ++j) {
                hs[t][j] = c * h[t][j];
                hr[t][j] = y[static_cast<Eigen::Index>(j)];
            }
        }
        for (Curvature cv : {Curvature::one_minus_cos, Curvature::angle, Curvature::second_diff}) {
            const TokenSeries s0 = series_of(h, cv), s1 = series_of(hs, cv), s2 = series_of(hr, cv);
            const Value r0 = ratio_norm(s0.ct), r1 = ratio_norm(s1.ct), r2 = ratio_norm(s2.ct);
            ASSERT_TRUE(r0.ok() && r1.ok() && r2.ok());
            EXPECT_LE(rel(r1.v, r0.v), 1e-9);
            EXPECT_LE(rel(r2.v, r0.v), 1e-9);
            for (std::size_t i = 0; i < s0.ct.size(); ++i) {
                EXPECT_LE(rel(s1.ct[i], s0.ct[i]), 1e-9);
                EXPECT_LE(rel(s2.ct[i], s0.ct[i]), 1e-9);
            }
        }
    }
}

TEST(TokenAxis, RatioNormMissingReasons) {
    EXPECT_FALSE(ratio_norm(std::vector<double>{}).ok());
    const Value two = ratio_norm(std::vector<double>{1.0, 2.0});
    EXPECT_FALSE(two.ok());
    EXPECT_NE(two.missing_reason.find("fewer than 3"), std::string::npos);
    const Value zero = ratio_norm(std::vector<double>{0, 0, 0, 0});
    EXPECT_FALSE(zero.ok());
    EXPECT_NE(zero.missing_reason.find("mean ct is 0"), std::string::npos);
    EXPECT_FALSE(ratio_norm(std::vector<double>{1, std::numeric_limits<double>::quiet_NaN(), 2}).ok());
    // Hand-checked: ct = 1, 2, 3, 6 → mean 3, max 6 → 2.
    const Value r = ratio_norm(std::vector<double>{1, 2, 3, 6});
    ASSERT_TRUE(r.ok());
    EXPECT_DOUBLE_EQ(r.v, 2.0);
}

TEST(TokenAxis, LateCtWindowAndCollapse) {
    // n = 8, fraction 1/4 → ⌈2⌉ = 2 last values; n = 9 → ⌈2.25⌉ = 3; n = 1 → 1.
    EXPECT_EQ(late_window_size(8, 0.25), 2u);
    EXPECT_EQ(late_window_size(9, 0.25), 3u);
    EXPECT_EQ(late_window_size(1, 0.25), 1u);
    EXPECT_EQ(late_window_size(0, 0.25), 0u);
    EXPECT_EQ(late_window_size(30, 0.1), 3u);  // 30 · 0.1 = 3.0000000000000004 in float64
    EXPECT_EQ(late_window_size(31, 0.1), 4u);
    EXPECT_EQ(late_window_size(10, 1.0), 10u);
    const std::vector<double> ct = {5, 5, 5, 5, 5, 5, 0.0004, 0.0008, 0.0003};
    const Value l = late_ct(ct);  // last 3: (0.0004 + 0.0008 + 0.0003) / 3 = 0.0005
    ASSERT_TRUE(l.ok());
    EXPECT_NEAR(l.v, 0.0005, 1e-15);
    EXPECT_NEAR(late_ct(ct, 0.5).v, (5 + 5 + 0.0004 + 0.0008 + 0.0003) / 5.0, 1e-15);  // ⌈4.5⌉ = 5
    EXPECT_FALSE(late_ct(std::vector<double>{}).ok());

    // Through token_axis: a straight ray has late_ct 0 → collapse under the default 0.001.
    const std::size_t T = 10, d = 3;
    std::vector<float> h(T * d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) h[t * d + j] = static_cast<float>(j + 1);
    const TokenAxisResult r = token_axis(RowsView<float>(h.data(), T, d));
    ASSERT_TRUE(r.late_ct.ok());
    EXPECT_EQ(r.late_ct.v, 0.0);
    ASSERT_TRUE(r.collapse.has_value());
    EXPECT_TRUE(*r.collapse);
    EXPECT_FALSE(r.ratio_norm.ok());
    EXPECT_FALSE(r.regime.has_value());
    TokenAxisOptions o;
    o.collapse_threshold = 0.0;  // late_ct < 0 is impossible
    EXPECT_FALSE(*token_axis(RowsView<float>(h.data(), T, d), o).collapse);
}

TEST(TokenAxis, RegimeCutPoints) {
    const RegimeCuts c;
    EXPECT_EQ(classify_regime(1.55, c), Regime::UNDERACTIVE);
    EXPECT_EQ(classify_regime(1.985, c), Regime::ADAPTIVE);  // cut-points belong to the upper regime
    EXPECT_EQ(classify_regime(2.384, c), Regime::ADAPTIVE);
    EXPECT_EQ(classify_regime(2.97, c), Regime::TRANSITION);
    EXPECT_EQ(classify_regime(3.695, c), Regime::CHAOTIC);
    EXPECT_EQ(classify_regime(35.55, c), Regime::CHAOTIC);
    const RegimeCuts p = parse_regime_cuts("1.5, 2.5,3.5");
    EXPECT_EQ(p.underactive_below, 1.5);
    EXPECT_EQ(p.adaptive_below, 2.5);
    EXPECT_EQ(p.transition_below, 3.5);
    EXPECT_EQ(classify_regime(3.0, p), Regime::TRANSITION);
    EXPECT_THROW(parse_regime_cuts("3,2,1"), MetricError);
    EXPECT_THROW(parse_regime_cuts("1,1,2"), MetricError);
    EXPECT_THROW(parse_regime_cuts("1,2"), MetricError);
    EXPECT_THROW(parse_regime_cuts("1,2,3,4"), MetricError);
    EXPECT_THROW(parse_regime_cuts("1,x,3"), MetricError);
    EXPECT_THROW(parse_regime_cuts("1,2,inf"), MetricError);
    TokenAxisOptions o;
    o.regime_cuts = {2.0, 1.0, 3.0};
    EXPECT_THROW(o.validate(), MetricError);
}

TEST(TokenAxis, ParsersRoundTrip) {
    for (Curvature c : {Curvature::one_minus_cos, Curvature::angle, Curvature::second_diff})
        EXPECT_EQ(parse_curvature(to_string(c)), c);
    EXPECT_FALSE(parse_curvature("cosine").has_value());
    for (Regime r : {Regime::UNDERACTIVE, Regime::ADAPTIVE, Regime::TRANSITION, Regime::CHAOTIC})
        EXPECT_FALSE(to_string(r).empty());
}

TEST(TokenAxis, TooFewTokensGiveMissingValuesNotErrors) {
    for (std::size_t T : {0u, 1u, 2u, 3u, 4u}) {
        std::vector<float> h(T * 4 + 1, 1.0f);
        for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i % 5) - 2.0f;
        const TokenAxisResult r = token_axis(RowsView<float>(h.data(), T, 4));
        EXPECT_TRUE(r.missing_reason.empty());
        EXPECT_EQ(r.series.delta.size(), T >= 2 ? T - 1 : 0);
        EXPECT_EQ(r.series.ct.size(), T >= 3 ? T - 2 : 0);
        EXPECT_FALSE(r.ratio_norm.ok()) << "T=" << T;
        EXPECT_FALSE(r.ratio_norm.missing_reason.empty());
        EXPECT_EQ(r.late_ct.ok(), T >= 3);
    }
}

TEST(TokenAxis, NonFiniteStatesAreReportedNotCrashing) {
    const std::size_t T = 8, d = 4;
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
        std::vector<float> h(T * d);
        for (std::size_t i = 0; i < h.size(); ++i) h[i] = std::sin(static_cast<float>(i));
        h[5 * d + 2] = bad;
        EXPECT_THROW(token_series(RowsView<float>(h.data(), T, d)), MetricError);
        for (NormMode m : {NormMode::raw, NormMode::clipped_mad}) {
            TokenAxisOptions o;
            o.norm = m;
            const TokenAxisResult r = token_axis(RowsView<float>(h.data(), T, d), o);
            EXPECT_FALSE(r.missing_reason.empty());
            EXPECT_NE(r.missing_reason.find("token 5"), std::string::npos) << r.missing_reason;
            EXPECT_FALSE(r.ratio_norm.ok());
            EXPECT_EQ(r.ratio_norm.missing_reason, r.missing_reason);
            EXPECT_FALSE(r.late_ct.ok());
            EXPECT_FALSE(r.collapse.has_value());
        }
    }
}

TEST(TokenAxis, ZeroStateIsAllowed) {
    // A zero state has unit vector 0 (norm floor 1e-12): finite values throughout.
    const std::size_t T = 6, d = 3;
    std::vector<float> h = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1};
    const TokenSeries s = token_series(RowsView<float>(h.data(), T, d));
    for (double v : s.ct) EXPECT_TRUE(std::isfinite(v));
    EXPECT_NEAR(s.delta[1], 1.0, 1e-15);  // ‖0 − e2‖
}

TEST(TokenAxis, StridedViewEqualsContiguous) {
    // One layer inside a [T, L', d] tensor is a strided view; it must give the same bits.
    std::mt19937_64 rng(3);
    std::normal_distribution<float> nd;
    const std::size_t T = 20, L = 3, d = 9;
    std::vector<float> all(T * L * d);
    for (float& v : all) v = nd(rng);
    std::vector<float> layer1(T * d);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) layer1[t * d + j] = all[(t * L + 1) * d + j];
    const TokenSeries a = token_series(RowsView<float>(all.data() + d, T, d, L * d));
    const TokenSeries b = token_series(RowsView<float>(layer1.data(), T, d));
    EXPECT_EQ(a.ct, b.ct);
    EXPECT_EQ(a.delta, b.delta);
}
