// Normalisation modes (METRICS.md §4): clipped_mad and ct_clip on hand-checked cases.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/token_axis.hpp"

using namespace phasemap::metrics;

// T = 5 states, d = 3.
// dim 0: 1 2 3 4 100 → median 3; |dev| = 2 1 0 1 97 → MAD 1 → scale 1.4826 + 1e-12;
//        z = −2/s, −1/s, 0, 1/s, 97/s = 65.4… → clipped to k = 5.
// dim 1: constant 7 → MAD 0 → scale 1e-12, all deviations 0 → z = 0.
// dim 2: −4 −2 0 2 4 → median 0; |dev| 4 2 0 2 4 → MAD 2 → scale 2.9652 + 1e-12;
//        z = −4/s = −1.349…, …
TEST(Normalize, ClippedMadHandChecked) {
    const std::vector<float> h = {1, 7, -4, 2, 7, -2, 3, 7, 0, 4, 7, 2, 100, 7, 4};
    const std::vector<double> z = clipped_mad(RowsView<float>(h.data(), 5, 3));
    ASSERT_EQ(z.size(), 15u);
    const double s0 = 1.4826 + 1e-12, s2 = 2 * 1.4826 + 1e-12;
    const double want0[5] = {-2 / s0, -1 / s0, 0, 1 / s0, 5.0};
    const double want2[5] = {-4 / s2, -2 / s2, 0, 2 / s2, 4 / s2};
    for (std::size_t t = 0; t < 5; ++t) {
        EXPECT_DOUBLE_EQ(z[t * 3 + 0], want0[t]) << t;
        EXPECT_EQ(z[t * 3 + 1], 0.0) << t;
        EXPECT_DOUBLE_EQ(z[t * 3 + 2], want2[t]) << t;
    }
    // k = 1: everything beyond ±1 is clipped (−2/s0 = −1.349 → −1; −4/s2 → −1; 2/s2 = 0.674 stays).
    const std::vector<double> z1 = clipped_mad(RowsView<float>(h.data(), 5, 3), 1.0);
    EXPECT_EQ(z1[0], -1.0);
    EXPECT_EQ(z1[2], -1.0);
    EXPECT_DOUBLE_EQ(z1[3 * 3 + 2], 2 / s2);
    EXPECT_EQ(z1[4 * 3 + 0], 1.0);
}

// Even T: dim values 1 2 3 10 → median 2.5 (numpy); |dev| 1.5 0.5 0.5 7.5 → MAD 1.0.
TEST(Normalize, ClippedMadEvenCountUsesNumpyMedian) {
    const std::vector<float> h = {1, 2, 3, 10};
    const std::vector<double> z = clipped_mad(RowsView<float>(h.data(), 4, 1));
    const double s = 1.4826 + 1e-12;
    EXPECT_DOUBLE_EQ(z[0], -1.5 / s);
    EXPECT_DOUBLE_EQ(z[1], -0.5 / s);
    EXPECT_DOUBLE_EQ(z[2], 0.5 / s);
    EXPECT_DOUBLE_EQ(z[3], 5.0);  // 7.5 / s = 5.06 → clipped
}

// Strided input (one layer inside [T, L', d]) and a dimension count above the 16-column block.
TEST(Normalize, ClippedMadStridedMatchesContiguous) {
    const std::size_t T = 9, L = 2, d = 21;
    std::vector<float> all(T * L * d), one(T * d);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = std::sin(static_cast<float>(i) * 0.37f) * static_cast<float>(i % 11);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < d; ++j) one[t * d + j] = all[(t * L + 1) * d + j];
    EXPECT_EQ(clipped_mad(RowsView<float>(all.data() + d, T, d, L * d)), clipped_mad(RowsView<float>(one.data(), T, d)));
}

TEST(Normalize, ClippedMadBadInput) {
    std::vector<float> h = {1, 2, std::numeric_limits<float>::quiet_NaN(), 4};
    EXPECT_THROW(clipped_mad(RowsView<float>(h.data(), 2, 2)), MetricError);
    h[2] = 3;
    EXPECT_THROW(clipped_mad(RowsView<float>(h.data(), 2, 2), 0.0), MetricError);
    EXPECT_THROW(clipped_mad(RowsView<float>(h.data(), 2, 2), -1.0), MetricError);
    EXPECT_TRUE(clipped_mad(RowsView<float>(h.data(), 0, 2)).empty());
}

// ct = 1 2 3 4 100: median 3, |dev| 2 1 0 1 97 → MAD 1, threshold (k = 5) 3 + 5·1.4826 = 10.413.
// Only 100 is clipped. ratio_norm before: 100 / 22 = 4.5454…; after: 10.413 / (20.413 / 5).
TEST(Normalize, CtClipHandChecked) {
    std::vector<double> ct = {1, 2, 3, 4, 100};
    EXPECT_NEAR(ratio_norm(ct).v, 100.0 / 22.0, 1e-15);
    const CtClipResult r = ct_clip(ct);
    EXPECT_DOUBLE_EQ(r.threshold, 3 + 5 * 1.4826);
    EXPECT_EQ(r.n_clipped, 1u);
    EXPECT_EQ(ct[0], 1.0);
    EXPECT_EQ(ct[3], 4.0);
    EXPECT_DOUBLE_EQ(ct[4], 3 + 5 * 1.4826);
    EXPECT_NEAR(ratio_norm(ct).v, 10.413 / (20.413 / 5), 1e-12);
    // k = 1: threshold 3 + 1.4826 = 4.4826 → still only 100 clipped.
    std::vector<double> c2 = {1, 2, 3, 4, 100};
    EXPECT_EQ(ct_clip(c2, 1.0).n_clipped, 1u);
    EXPECT_DOUBLE_EQ(c2[4], 4.4826);
    // MAD 0 (most values equal): threshold = median, everything above it clipped.
    std::vector<double> c3 = {2, 2, 2, 5, 9};
    const CtClipResult r3 = ct_clip(c3);
    EXPECT_EQ(r3.threshold, 2.0);
    EXPECT_EQ(r3.n_clipped, 2u);
    EXPECT_EQ(c3, (std::vector<double>{2, 2, 2, 2, 2}));
    // No finite value: nothing clipped, NaN threshold; bad k throws.
    std::vector<double> c4 = {std::numeric_limits<double>::quiet_NaN()};
    EXPECT_TRUE(std::isnan(ct_clip(c4).threshold));
    EXPECT_THROW(ct_clip(c2, 0.0), MetricError);
}

// ct_clip through the token axis: it changes ratio_norm only, never the reported ct or late_ct.
TEST(Normalize, CtClipInTokenAxisAffectsRatioOnly) {
    // Circle at constant step with one large jump → one ct outlier.
    const std::size_t T = 30, d = 2;
    std::vector<float> h(T * d);
    double ang = 0;
    for (std::size_t t = 0; t < T; ++t) {
        ang += (t == 15) ? 2.0 : 0.1;
        h[t * d] = static_cast<float>(std::cos(ang));
        h[t * d + 1] = static_cast<float>(std::sin(ang));
    }
    TokenAxisOptions plain, clipped;
    clipped.ct_clip = true;
    const TokenAxisResult a = token_axis(RowsView<float>(h.data(), T, d), plain);
    const TokenAxisResult b = token_axis(RowsView<float>(h.data(), T, d), clipped);
    ASSERT_TRUE(a.ratio_norm.ok() && b.ratio_norm.ok());
    EXPECT_FALSE(a.ct_clip.has_value());
    ASSERT_TRUE(b.ct_clip.has_value());
    EXPECT_GE(b.ct_clip->n_clipped, 1u);
    EXPECT_LT(b.ratio_norm.v, a.ratio_norm.v);
    EXPECT_EQ(a.series.ct, b.series.ct);
    EXPECT_EQ(a.late_ct.v, b.late_ct.v);
    std::vector<double> c = a.series.ct;
    ct_clip(c, clipped.ct_clip_k);
    EXPECT_EQ(b.ratio_norm.v, ratio_norm(c).v);
    EXPECT_EQ(ratio_norm_with_options(a.series.ct, clipped).v, b.ratio_norm.v);
}

// clipped_mad through the token axis equals token_series on the normalised rows.
TEST(Normalize, ClippedMadInTokenAxis) {
    const std::size_t T = 12, d = 5;
    std::vector<float> h(T * d);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = std::cos(static_cast<float>(i) * 1.7f) * (i % 5 == 0 ? 1000.0f : 1.0f);
    TokenAxisOptions o;
    o.norm = NormMode::clipped_mad;
    o.mad_k = 3;
    const TokenAxisResult r = token_axis(RowsView<float>(h.data(), T, d), o);
    const std::vector<double> z = clipped_mad(RowsView<float>(h.data(), T, d), 3);
    const TokenSeries s = token_series(RowsView<double>(z.data(), T, d));
    EXPECT_EQ(r.series.ct, s.ct);
    EXPECT_EQ(parse_norm_mode("clipped_mad"), NormMode::clipped_mad);
    EXPECT_EQ(parse_norm_mode(to_string(NormMode::raw)), NormMode::raw);
    EXPECT_FALSE(parse_norm_mode("mad").has_value());
}
