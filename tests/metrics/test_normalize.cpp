// Normalisation modes (METRICS.md §4): clipped_mad and ct_clip on hand-checked cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "for_each_isa.hpp"
#include "phasemap/metrics/kernels.hpp"
#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/mad_scaling.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/stats/descriptive.hpp"

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

// ---- The histogram selection in clipped_mad against the previous algorithm ----
// The reference is the algorithm clipped_mad used before the selection rewrite (a full
// nth_element-based median and MAD per dimension); kept here verbatim in logic.
namespace {

std::vector<double> clipped_mad_reference(const RowsView<float>& states, double k = 5.0) {
    const std::size_t T = states.rows, d = states.cols;
    std::vector<double> out(T * d);
    std::vector<double> col(T), dev(T);
    for (std::size_t j = 0; j < d; ++j) {
        for (std::size_t t = 0; t < T; ++t) {
            const double x = states.row(t)[j];
            if (!std::isfinite(x)) throw MetricError("non-finite");
            col[t] = x;
        }
        std::copy(col.begin(), col.end(), dev.begin());
        const double med = phasemap::stats::median_inplace(dev);
        for (std::size_t t = 0; t < T; ++t) dev[t] = std::fabs(col[t] - med);
        const double mad = phasemap::stats::median_inplace(dev);
        const double scale = kMadScale * mad + kMadEpsilon;
        for (std::size_t t = 0; t < T; ++t) out[t * d + j] = std::clamp((col[t] - med) / scale, -k, k);
    }
    return out;
}

// Bit for bit, except that a zero z may differ in sign: the reference's nth_element returns an
// unspecified one of −0 / +0 as a zero median, and −0 − (±0) keeps that choice in z's sign.
// On every instruction set this CPU runs (the selection passes are built per set).
void expect_same_as_reference(const std::vector<float>& h, std::size_t T, std::size_t d, double k = 5.0) {
    const RowsView<float> v(h.data(), T, d);
    const std::vector<double> want = clipped_mad_reference(v, k);
    phasemap::metrics::testing::for_each_isa([&] {
        const std::vector<double> got = clipped_mad(v, k);
        ASSERT_EQ(got.size(), want.size());
        std::size_t bad = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            const bool same = std::bit_cast<std::uint64_t>(got[i]) == std::bit_cast<std::uint64_t>(want[i]) ||
                              (got[i] == 0 && want[i] == 0);
            if (!same && bad++ < 5)
                ADD_FAILURE() << kernels::isa() << " T=" << T << " d=" << d << " token " << i / d << " dim " << i % d
                              << ": " << got[i] << " vs reference " << want[i];
        }
        EXPECT_EQ(bad, 0u) << kernels::isa() << " T=" << T << " d=" << d;
    });
}

}  // namespace

TEST(Normalize, ClippedMadSelectionMatchesReferenceSmallT) {
    // Every T from 1 to 9 (odd and even), ties, all-equal dimensions, ±0, subnormals.
    const float vals[] = {0.0f, -0.0f, 1.0f, -1.0f, 1.0f, 2.5f, 1e-40f, -1e-45f, 3.0f, 1.0f};
    for (std::size_t T = 1; T <= 9; ++T) {
        const std::size_t d = 7;
        std::vector<float> h(T * d);
        for (std::size_t t = 0; t < T; ++t) {
            h[t * d + 0] = vals[t];                                // mixed
            h[t * d + 1] = 4.0f;                                   // all equal
            h[t * d + 2] = t % 2 ? 0.0f : -0.0f;                   // zeros of both signs
            h[t * d + 3] = static_cast<float>(t % 3);              // ties
            h[t * d + 4] = vals[(t * 7) % 10] * 1e-39f;            // subnormal / zero
            h[t * d + 5] = static_cast<float>(T - t);              // descending
            h[t * d + 6] = t == 0 ? 3e38f : -static_cast<float>(t); // huge outlier
        }
        expect_same_as_reference(h, T, d);
        expect_same_as_reference(h, T, d, 0.5);
    }
}

TEST(Normalize, ClippedMadSelectionMatchesReferenceAdversarial) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    for (const std::size_t T : {2048u, 2049u, 4096u, 4097u, 5000u}) {
        const std::size_t d = 9;
        std::vector<float> h(T * d);
        for (std::size_t t = 0; t < T; ++t) {
            float* r = &h[t * d];
            r[0] = nd(rng);                                                   // smooth
            r[1] = t ? h[(t - 1) * d + 1] + nd(rng) : 0.0f;                   // random walk
            r[2] = static_cast<float>(static_cast<int>(nd(rng) * 2));         // heavy ties around 0
            r[3] = (t % 97 == 0) ? 1e30f * nd(rng) : 1e-30f * nd(rng);        // huge dynamic range
            r[4] = 1.0f + static_cast<float>(t % 3) * 1.1920929e-7f;          // range of two ulps
            r[5] = (t % 2) ? 0.0f : -0.0f;                                    // zeros only
            r[6] = (t < T / 2) ? -1.0f : 1.0f;                                // two values, median at the split
            r[7] = std::ldexp(1.0f, static_cast<int>(t % 200) - 140);         // subnormals up to 2^59
            r[8] = (t == T / 3) ? -3.4e38f : (t == T / 2 ? 3.4e38f : nd(rng)); // extreme outliers
        }
        expect_same_as_reference(h, T, d);
        expect_same_as_reference(h, T, d, 2.0);
        // Shuffled rows: selection must not depend on order.
        std::vector<std::size_t> p(T);
        for (std::size_t i = 0; i < T; ++i) p[i] = i;
        std::shuffle(p.begin(), p.end(), rng);
        std::vector<float> s(T * d);
        for (std::size_t t = 0; t < T; ++t) std::copy_n(&h[p[t] * d], d, &s[t * d]);
        expect_same_as_reference(s, T, d);
    }
}

TEST(Normalize, ClippedMadRejectsNonFiniteWhereverItIs) {
    const std::size_t T = 40, d = 20;  // a second, partial block of dimensions
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()})
        for (const std::size_t at : {std::size_t{0}, std::size_t{17 * d + 3}, T * d - 1}) {
            std::vector<float> h(T * d, 1.0f);
            h[at] = bad;
            try {
                (void)clipped_mad(RowsView<float>(h.data(), T, d));
                ADD_FAILURE() << "no error for a non-finite value at " << at;
            } catch (const MetricError& e) {
                EXPECT_EQ(std::string(e.what()), "clipped_mad: non-finite value in the state of token " +
                                                     std::to_string(at / d) + ", dimension " + std::to_string(at % d));
            }
        }
}

// ---- The blocked window selection (mad_scaling): T ≥ 64 rows go through histogram windows, in
// blocks of 64 dimensions; a dimension whose windows miss falls back to nth_element. Both paths
// must give the reference's bits.
namespace {

// [T, d] with d spanning three blocks (64 + 64 + a partial one), each dimension of another kind.
std::vector<float> mixed_columns(std::size_t T, std::size_t d, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<float> h(T * d);
    for (std::size_t j = 0; j < d; ++j) {
        float walk = 4 * nd(rng);
        for (std::size_t t = 0; t < T; ++t) {
            float& x = h[t * d + j];
            switch (j % 8) {
                case 0: x = walk += 0.5f * nd(rng); break;                                  // random walk
                case 1: x = nd(rng); break;                                                 // smooth
                case 2: x = static_cast<float>(static_cast<int>(nd(rng) * 1.5f)); break;    // heavy ties
                case 3: x = (t % 3 == 0) ? 0.0f : ((t % 3 == 1) ? -0.0f : nd(rng)); break;  // zeros of both signs at the median
                case 4: x = (t % 61 == 0) ? 3e38f * (nd(rng) > 0 ? 1 : -1) : nd(rng); break; // extreme outliers
                case 5: x = std::ldexp(1.0f, static_cast<int>(t % 40) - 149); break;        // subnormals and tiny normals
                case 6: x = t % 2 ? 1.0f : 1.0f + 1.1920929e-7f; break;                     // two adjacent floats
                default: x = (t < T / 2 ? -1.0f : 1.0f) * (1.0f + 0.01f * nd(rng)); break;  // two clusters, median in the gap
            }
        }
    }
    return h;
}

}  // namespace

TEST(Normalize, ClippedMadBlocksMatchReferenceAroundTheRowThreshold) {
    for (const std::size_t T : {63u, 64u, 65u, 66u, 127u, 128u, 257u, 1000u, 1001u})
        for (const std::uint32_t seed : {1u, 2u}) {
            const std::size_t d = 130;
            const std::vector<float> h = mixed_columns(T, d, seed);
            expect_same_as_reference(h, T, d);
            expect_same_as_reference(h, T, d, 1.5);
        }
}

// Windows that hold more values than are kept (a median or MAD shared by hundreds of rows) and
// windows that miss (most mass far from the bins' centres) go to the exact fallback.
TEST(Normalize, ClippedMadFallbackDimensionsMatchReference) {
    const std::size_t T = 6000, d = 6;
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    std::vector<float> h(T * d);
    for (std::size_t t = 0; t < T; ++t) {
        float* r = &h[t * d];
        r[0] = t < 2500 ? 7.0f : 7.0f + nd(rng);                    // > 1024 rows equal to the median
        r[1] = (t % 2 ? 2.0f : -2.0f) + (t % 5 == 0 ? nd(rng) : 0); // > 1024 rows at med ± MAD
        r[2] = t == 0 ? 1e30f : 1e-3f * nd(rng);                    // one huge value: all others in one bin
        r[3] = static_cast<float>(t % 7);                           // seven values, ranks on ties
        r[4] = std::sqrt(static_cast<float>(t));                    // a sorted column
        r[5] = static_cast<float>(T - t) * 1e-38f;                  // descending, subnormal steps
    }
    expect_same_as_reference(h, T, d);
    expect_same_as_reference(h, T - 1, d);  // odd count
}

// The scaling applied row by row equals clipped_mad's rows; strided input over several blocks.
TEST(Normalize, MadScalingApplyEqualsClippedMadStrided) {
    const std::size_t T = 300, L = 3, d = 150;
    const std::vector<float> all = mixed_columns(T, L * d, 5);
    const RowsView<float> layer(all.data() + d, T, d, L * d);
    std::vector<float> one(T * d);
    for (std::size_t t = 0; t < T; ++t) std::copy_n(layer.row(t), d, &one[t * d]);
    const std::vector<double> z = clipped_mad(layer, 2.0);
    EXPECT_EQ(z, clipped_mad(RowsView<float>(one.data(), T, d), 2.0));
    const MadScaling m = mad_scaling(layer, 2.0);
    ASSERT_EQ(m.center.size(), d);
    std::vector<double> row(d);
    for (std::size_t t = 0; t < T; ++t) {
        m.apply(layer.row(t), row.data());
        ASSERT_TRUE(std::equal(row.begin(), row.end(), z.begin() + static_cast<std::ptrdiff_t>(t * d))) << "token " << t;
    }
    expect_same_as_reference(one, T, d, 2.0);
}

// The token axis normalises one row at a time; its series equal token_series over clipped_mad's rows.
TEST(Normalize, ClippedMadTokenAxisStreamsTheSameRows) {
    const std::size_t T = 200, d = 70;
    const std::vector<float> h = mixed_columns(T, d, 9);
    TokenAxisOptions o;
    o.norm = NormMode::clipped_mad;
    for (const Curvature c : {Curvature::one_minus_cos, Curvature::second_diff}) {
        o.curvature = c;
        const TokenAxisResult r = token_axis(RowsView<float>(h.data(), T, d), o);
        const std::vector<double> z = clipped_mad(RowsView<float>(h.data(), T, d), o.mad_k);
        const TokenSeries s = token_series(RowsView<double>(z.data(), T, d), c);
        EXPECT_EQ(r.series.ct, s.ct);
        EXPECT_EQ(r.series.delta, s.delta);
    }
}

// A non-finite value in a later block is named; with several, the first of the lowest block.
TEST(Normalize, ClippedMadNamesNonFiniteAcrossBlocks) {
    const std::size_t T = 100, d = 150;
    std::vector<float> h = mixed_columns(T, d, 4);
    h[70 * d + 140] = std::numeric_limits<float>::infinity();
    try {
        (void)mad_scaling(RowsView<float>(h.data(), T, d));
        ADD_FAILURE() << "no error";
    } catch (const MetricError& e) {
        EXPECT_EQ(std::string(e.what()), "clipped_mad: non-finite value in the state of token 70, dimension 140");
    }
    h[90 * d + 10] = std::numeric_limits<float>::quiet_NaN();  // block 0, a later token
    try {
        (void)clipped_mad(RowsView<float>(h.data(), T, d));
        ADD_FAILURE() << "no error";
    } catch (const MetricError& e) {
        EXPECT_EQ(std::string(e.what()), "clipped_mad: non-finite value in the state of token 90, dimension 10");
    }
}

// The histogram's range comes from a sample of rows: dimensions constant over the sample but not
// over all rows, and values far outside the sampled range, must not change the result.
TEST(Normalize, ClippedMadValuesOutsideTheSampledRange) {
    const std::size_t T = 4096, d = 4;  // rows 0, 64, 128, … are the sample
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    std::vector<float> h(T * d);
    for (std::size_t t = 0; t < T; ++t) {
        float* r = &h[t * d];
        const bool sampled = t % 64 == 0;
        r[0] = sampled ? 3.0f : 3.0f + nd(rng);              // constant over the sample only
        r[1] = sampled ? nd(rng) : 100.0f * nd(rng);         // most values outside the sampled range
        r[2] = sampled ? 0.0f : (t % 2 ? 1.0f : -1.0f);      // sampled zeros, the rest ±1
        r[3] = sampled ? nd(rng) : nd(rng) + 1e6f;           // everything else above the sampled range
    }
    expect_same_as_reference(h, T, d);
    expect_same_as_reference(h, T - 3, d);
}
