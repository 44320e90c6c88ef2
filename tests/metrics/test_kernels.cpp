// The row kernels (kernels.hpp) on every instruction set this CPU has (base always; x86-64-v3 and
// v4 where present): their divisions are the rounded quotients bit for bit, and their sums are the
// 16-lane sums in the documented order for every length (vector body and scalar tail).
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
#include "phasemap/metrics/layer_axis.hpp"
#include "phasemap/metrics/token_axis.hpp"

using namespace phasemap::metrics;
using phasemap::metrics::testing::for_each_isa;

namespace {

bool same_bits(double a, double b) { return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b); }

// A double from random significand bits and an exponent in [lo, hi].
double random_double(std::mt19937_64& g, int lo, int hi) {
    const std::uint64_t mant = g() & 0x000FFFFFFFFFFFFFull;
    const std::uint64_t e = static_cast<std::uint64_t>(1023 + lo + static_cast<int>(g() % (hi - lo + 1)));
    return std::bit_cast<double>(mant | e << 52);
}

// A float from random bits with an exponent in [lo, hi] (biased 1 … 254) or a subnormal.
float random_float(std::mt19937_64& g) {
    const std::uint32_t sign = static_cast<std::uint32_t>(g() & 1) << 31, mant = static_cast<std::uint32_t>(g()) & 0x7FFFFF;
    const std::uint32_t e = g() % 16 == 0 ? 0u : static_cast<std::uint32_t>(1 + g() % 254);
    return std::bit_cast<float>(sign | e << 23 | mant);
}

// Significands next to the ends of the binade (all ones, all zeros), where division rounds hardest.
double edge_double(std::mt19937_64& g, int e) {
    const std::uint64_t k = g() % 512;
    const std::uint64_t mant = g() & 1 ? 0x000FFFFFFFFFFFFFull - k : k;
    return std::bit_cast<double>(mant | static_cast<std::uint64_t>(1023 + e) << 52);
}

double lane_sum_reference(const std::vector<double>& terms) {
    double acc[16] = {};
    for (std::size_t j = 0; j < terms.size(); ++j) acc[j % 16] += terms[j];
    for (std::size_t w = 8; w > 0; w /= 2)
        for (std::size_t k = 0; k < w; ++k) acc[k] += acc[k + w];
    return acc[0];
}

}  // namespace

TEST(Kernels, ScaleClampDividesExactlyAsDivision) {
    for_each_isa([&] {
        std::mt19937_64 g(11);
        const std::size_t n = 1003;  // a tail of 11 after the vector body
        std::vector<float> h(n);
        std::vector<double> c(n), s(n), inv(n), out(n);
        std::size_t checked = 0;
        for (int round = 0; round < 600; ++round) {
            for (std::size_t j = 0; j < n; ++j) {
                switch ((round + j) % 4) {
                    case 0:  // states and medians of ordinary size
                        h[j] = random_float(g);
                        c[j] = static_cast<double>(random_float(g)) * 0.5;
                        s[j] = 1.4826 * std::fabs(random_double(g, -40, 40)) + 1e-12;
                        break;
                    case 1:  // divisors with significands at the binade's ends
                        h[j] = random_float(g);
                        c[j] = 0;
                        s[j] = edge_double(g, static_cast<int>(g() % 80) - 40);
                        break;
                    case 2:  // dividends at the binade's ends (h = 0: a = −c exactly)
                        h[j] = 0.0f;
                        c[j] = -edge_double(g, static_cast<int>(g() % 80) - 40);
                        s[j] = random_double(g, -40, 40);
                        break;
                    default:  // the smallest scale and subnormal differences
                        h[j] = std::bit_cast<float>(static_cast<std::uint32_t>(g() % 4096));
                        c[j] = std::ldexp(static_cast<double>(g() % 4096), -150);
                        s[j] = 1e-12;
                        break;
                }
                inv[j] = 1.0 / s[j];
            }
            const double k = std::numeric_limits<double>::max();  // no clamping: the quotients themselves
            const double sum = kernels::scale_clamp_sumsq(h.data(), c.data(), s.data(), inv.data(), k, out.data(), n);
            std::vector<double> sq(n);
            for (std::size_t j = 0; j < n; ++j) {
                const double want = (static_cast<double>(h[j]) - c[j]) / s[j];
                ASSERT_TRUE(same_bits(out[j], want)) << "h " << h[j] << " c " << c[j] << " s " << s[j] << ": " << out[j]
                                                     << " vs " << want;
                sq[j] = out[j] * out[j];
                ++checked;
            }
            EXPECT_TRUE(same_bits(sum, lane_sum_reference(sq)));
        }
        EXPECT_EQ(checked, 600u * n);
    });
}

TEST(Kernels, ScaleClampKeepsTheSignOfZeroAndClampsAtK) {
    for_each_isa([&] {
        const std::vector<float> h = {-0.0f, 0.0f, 3.0f, -3.0f, 1.0f};
        const std::vector<double> c = {0.0, 0.0, 0.0, 0.0, 1.0}, s(5, 0.5), inv(5, 2.0);
        std::vector<double> out(5);
        const double sum = kernels::scale_clamp_sumsq(h.data(), c.data(), s.data(), inv.data(), 5.0, out.data(), 5);
        EXPECT_TRUE(std::signbit(out[0]));  // (−0 − 0) / 0.5 = −0, as division gives it
        EXPECT_FALSE(std::signbit(out[1]));
        EXPECT_EQ(out[2], 5.0);  // 6 clamped to k
        EXPECT_EQ(out[3], -5.0);
        EXPECT_FALSE(std::signbit(out[4]));
        EXPECT_EQ(sum, 50.0);
        // Non-finite states as division gives them: ±inf clamps to ±k, NaN stays NaN.
        const float inf = std::numeric_limits<float>::infinity();
        const std::vector<float> bad = {inf, -inf, std::numeric_limits<float>::quiet_NaN()};
        std::vector<double> o3(3);
        (void)kernels::scale_clamp_sumsq(bad.data(), c.data(), s.data(), inv.data(), 5.0, o3.data(), 3);
        EXPECT_EQ(o3[0], 5.0);
        EXPECT_EQ(o3[1], -5.0);
        EXPECT_TRUE(std::isnan(o3[2]));
    });
}

TEST(Kernels, TokenStepNormalisesExactlyAsDivision) {
    for_each_isa([&] {
        std::mt19937_64 g(5);
        for (const std::size_t n : {1u, 15u, 16u, 17u, 901u}) {
            std::vector<float> h(n);
            std::vector<double> xp(n), vp(n);
            const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
            for (const double norm : {0.0, 1e-300, 1e-13, 1e-12, 0.3, 1.0, 7.7, 1e20, 3e40, inf, nan}) {
                for (auto& x : h) x = random_float(g);
                if (!std::isfinite(norm)) h[n / 2] = static_cast<float>(norm);  // the state a non-finite norm comes from
                (void)kernels::token_step(h.data(), norm, xp.data(), vp.data(), n, 0);
                const double s = std::max(norm, 1e-12);
                for (std::size_t j = 0; j < n; ++j)
                    ASSERT_TRUE(same_bits(xp[j], static_cast<double>(h[j]) / s)) << "n " << n << " norm " << norm;
            }
        }
    });
}

TEST(Kernels, UseIsaRejectsUnknownSets) {
    EXPECT_FALSE(kernels::use_isa("avx9"));
    EXPECT_TRUE(kernels::use_isa("base"));
    EXPECT_EQ(kernels::isa(), "base");
    EXPECT_TRUE(kernels::use_isa("widest"));
}

TEST(Kernels, SumsAreSixteenLaneSumsForEveryLength) {
    for_each_isa([&] {
        std::mt19937_64 g(3);
        std::normal_distribution<double> nd;
        for (std::size_t n = 0; n <= 70; ++n) {
            std::vector<float> a(n), b(n);
            std::vector<double> ad(n);
            for (std::size_t j = 0; j < n; ++j) a[j] = static_cast<float>(nd(g)), b[j] = static_cast<float>(nd(g)),
                                                ad[j] = nd(g);
            std::vector<double> t(n);
            for (std::size_t j = 0; j < n; ++j) t[j] = static_cast<double>(a[j]) * a[j];
            EXPECT_TRUE(same_bits(kernels::sumsq(a.data(), n), lane_sum_reference(t))) << n;
            for (std::size_t j = 0; j < n; ++j) t[j] = ad[j] * ad[j];
            EXPECT_TRUE(same_bits(kernels::sumsq(ad.data(), n), lane_sum_reference(t))) << n;
            for (std::size_t j = 0; j < n; ++j) {
                const double v = static_cast<double>(a[j]) - static_cast<double>(b[j]);
                t[j] = v * v;
            }
            EXPECT_TRUE(same_bits(kernels::diff_sumsq(a.data(), b.data(), n), lane_sum_reference(t))) << n;

            // A layer step and a token step against the same element formulas, term by term.
            std::vector<double> vp(n), vp0(n);
            for (std::size_t j = 0; j < n; ++j) vp0[j] = vp[j] = nd(g);
            const kernels::StepSums ls = kernels::layer_step(a.data(), b.data(), vp.data(), n, false);
            std::vector<double> vv(n), dp(n), ww(n);
            for (std::size_t j = 0; j < n; ++j) {
                const double v = static_cast<double>(b[j]) - static_cast<double>(a[j]), p = vp0[j], w = v - p;
                vv[j] = v * v, dp[j] = v * p, ww[j] = w * w;
                EXPECT_TRUE(same_bits(vp[j], v));
            }
            EXPECT_TRUE(same_bits(ls.vv, lane_sum_reference(vv))) << n;
            EXPECT_TRUE(same_bits(ls.vp, lane_sum_reference(dp))) << n;
            EXPECT_TRUE(same_bits(ls.ww, lane_sum_reference(ww))) << n;

            std::vector<double> xp(n), xp0(n);
            for (std::size_t j = 0; j < n; ++j) xp0[j] = xp[j] = nd(g), vp0[j] = vp[j] = nd(g);
            const double norm = 2.5;
            const kernels::StepSums ts = kernels::token_step(a.data(), norm, xp.data(), vp.data(), n, 2);
            for (std::size_t j = 0; j < n; ++j) {
                const double x = static_cast<double>(a[j]) / norm, v = x - xp0[j], p = vp0[j], w = v - p;
                vv[j] = v * v, dp[j] = v * p, ww[j] = w * w;
                EXPECT_TRUE(same_bits(xp[j], x) && same_bits(vp[j], v)) << n;
            }
            EXPECT_TRUE(same_bits(ts.vv, lane_sum_reference(vv))) << n;
            EXPECT_TRUE(same_bits(ts.vp, lane_sum_reference(dp))) << n;
            EXPECT_TRUE(same_bits(ts.ww, lane_sum_reference(ww))) << n;
        }
    });
}

// The whole token and layer axes (raw and clipped_mad) give the same bits on every set.
TEST(Kernels, TokenAndLayerAxesAreIdenticalOnEverySet) {
    const std::size_t T = 150, L = 3, d = 77;
    std::vector<float> h(T * L * d);
    std::mt19937 g(9);
    std::normal_distribution<float> nd;
    for (auto& x : h) x = nd(g);
    StatesView sv;
    sv.data = h.data(), sv.tokens = T, sv.layers = L, sv.dim = d;
    TokenAxisOptions mad;
    mad.norm = NormMode::clipped_mad;
    std::vector<std::vector<double>> got;
    for_each_isa([&] {
        const TokenAxisResult raw = token_axis(sv.layer(L - 1)), z = token_axis(sv.layer(L - 1), mad);
        const LayerAxisResult la = layer_axis(sv);
        std::vector<double> all = raw.series.ct;
        all.insert(all.end(), z.series.ct.begin(), z.series.ct.end());
        all.insert(all.end(), z.series.delta.begin(), z.series.delta.end());
        for (const auto& m : la.values) all.insert(all.end(), m.begin(), m.end());
        got.push_back(all);
    });
    for (std::size_t i = 1; i < got.size(); ++i) {
        ASSERT_EQ(got[i].size(), got[0].size());
        for (std::size_t j = 0; j < got[0].size(); ++j) EXPECT_TRUE(same_bits(got[i][j], got[0][j])) << i << " " << j;
    }
}

// clipped_mad's selection passes against their contract written as plain loops, for widths on
// both sides of a 16-lane chunk and of a 64-column chunk, windows that hold ties, values on their
// ends, empty windows (+inf, as normalize.cpp sets them), and more values than the cap.
TEST(Kernels, SelectPassesFollowTheirContractOnEverySet) {
    std::mt19937_64 g(11);
    for (const std::size_t d : {1u, 15u, 16u, 17u, 64u, 70u, 130u}) {
        const std::size_t T = 300, cap = 40, bins = 32, stride = bins + 3;
        std::vector<float> rows(T * d);
        for (auto& x : rows) x = static_cast<float>(static_cast<int>(g() % 41) - 20) * 0.25f;  // many ties
        std::vector<float> a(d), b(d), p1(d), p0(d), q0(d), q1(d), lo(d), sc(d);
        for (std::size_t j = 0; j < d; ++j) {
            a[j] = -1.0f, b[j] = 0.5f + static_cast<float>(j % 3) * 0.25f;
            p1[j] = -4.0f, p0[j] = -3.0f, q0[j] = 3.0f, q1[j] = 4.25f;
            if (j % 5 == 4) a[j] = p1[j] = p0[j] = q0[j] = q1[j] = std::numeric_limits<float>::infinity(),
                            b[j] = -std::numeric_limits<float>::infinity();
            lo[j] = -5.0f + static_cast<float>(j % 4), sc[j] = 3.1f;
        }
        // The contract, element by element.
        std::vector<std::uint32_t> below(d), inner(d), n_med(d), n_mad(d), hist(d * stride);
        std::vector<float> kmed(d * cap), kmad(d * cap), mn(d, 1e9f), mx(d, -1e9f), nz(d), nzh(d);
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t j = 0; j < d; ++j) {
                const float x = rows[t * d + j];
                if (t % 7 == 0) mn[j] = std::min(mn[j], x), mx[j] = std::max(mx[j], x);
                below[j] += x < a[j];
                inner[j] += p0[j] < x && x < q0[j];
                if (a[j] <= x && x <= b[j] && n_med[j]++ < cap) kmed[j * cap + n_med[j] - 1] = x;
                if (((p1[j] <= x && x <= p0[j]) || (q0[j] <= x && x <= q1[j])) && n_mad[j]++ < cap)
                    kmad[j * cap + n_mad[j] - 1] = x;
                const float v = std::clamp((x - lo[j]) * sc[j], 0.0f, static_cast<float>(bins - 1));
                ++hist[j * stride + static_cast<std::size_t>(v)];
            }
        for_each_isa([&] {
            SCOPED_TRACE("d " + std::to_string(d));
            std::vector<float> gmn(d, 1e9f), gmx(d, -1e9f), gnz(d), gnzh(d);
            kernels::select_range(rows.data(), T, d, 7, gmn.data(), gmx.data(), gnz.data());
            EXPECT_EQ(gmn, mn);
            EXPECT_EQ(gmx, mx);
            EXPECT_EQ(gnz, nz);
            std::vector<std::uint32_t> gh(d * stride);
            kernels::select_histogram(rows.data(), T, d, lo.data(), sc.data(), bins, gh.data(), stride, gnzh.data());
            EXPECT_EQ(gh, hist);
            EXPECT_EQ(gnzh, nzh);
            std::vector<std::uint32_t> gb(d, 1), gi(d, 2), gm(d), ga(d);  // the counts are added to
            std::vector<float> gkm(d * cap, -99.0f), gka(d * cap, -99.0f);
            const kernels::SelectWindows w{a.data(),  b.data(),  p1.data(), p0.data(), q0.data(), q1.data(), gb.data(),
                                           gi.data(), gm.data(), ga.data(), gkm.data(), gka.data(), cap};
            kernels::select_windows(rows.data(), T, d, w);
            for (std::size_t j = 0; j < d; ++j) {
                ASSERT_EQ(gb[j], below[j] + 1) << j;
                ASSERT_EQ(gi[j], inner[j] + 2) << j;
                ASSERT_EQ(gm[j], n_med[j]) << j;
                ASSERT_EQ(ga[j], n_mad[j]) << j;
                for (std::size_t i = 0; i < std::min<std::size_t>(n_med[j], cap); ++i) ASSERT_EQ(gkm[j * cap + i], kmed[j * cap + i]);
                for (std::size_t i = 0; i < std::min<std::size_t>(n_mad[j], cap); ++i) ASSERT_EQ(gka[j * cap + i], kmad[j * cap + i]);
                for (std::size_t i = std::min<std::size_t>(n_med[j], cap); i < cap; ++i) ASSERT_EQ(gkm[j * cap + i], -99.0f);
            }
            // Some dimensions have more window values than the cap, some none.
            EXPECT_GT(*std::max_element(gm.begin(), gm.end()), cap);
            EXPECT_EQ(gm[std::min<std::size_t>(4, d - 1)] == 0, d > 4);
        });
    }
    // A non-finite value turns nz non-zero in both the range and the histogram passes.
    std::vector<float> r = {1.0f, std::numeric_limits<float>::infinity(), 2.0f, std::nanf("")};
    for_each_isa([&] {
        float mn[2] = {1, 1}, mx[2] = {1, 1}, nz[2] = {0, 0}, nzh[2] = {0, 0}, lo[2] = {0, 0}, sc[2] = {1, 1};
        std::uint32_t h[8] = {};
        kernels::select_range(r.data(), 2, 2, 1, mn, mx, nz);
        kernels::select_histogram(r.data(), 2, 2, lo, sc, 4, h, 4, nzh);
        EXPECT_EQ(nz[0], 0.0f);
        EXPECT_TRUE(std::isnan(nz[1]));
        EXPECT_EQ(nzh[0], 0.0f);
        EXPECT_TRUE(std::isnan(nzh[1]));
    });
}

// The softmax kernel's exponential, seen through a one-element row (z = e^−d, w = e^−d · d):
// within 2 ulp of e^−d in long double over [0, 700], exactly 1 at 0, 0 above 700 and at +inf,
// NaN for NaN; the same bits on every set.
TEST(Kernels, SoftmaxExponentialIsWithinTwoUlpOnEverySet) {
    std::mt19937_64 g(11);
    std::vector<double> ds = {0.0, 1e-300, 1e-17, 1e-9, 0.3465735902799726, 0.34657359027997264, std::log(2.0), 1.0, 20.0,
                              87.5, 699.9999999999999, 700.0};
    for (int i = 0; i < 100000; ++i) ds.push_back(random_double(g, -30, 9) * (g() % 2 ? 1.0 : 0.5));
    for (int k = 1; k < 1010; ++k) ds.push_back(double(k) * std::log(2.0)), ds.push_back(double(k) * std::log(2.0) * 0.5);
    std::erase_if(ds, [](double d) { return !(d <= 700.0); });
    float zero = 0.0f;
    std::vector<double> ref_bits;
    for (double d : ds) ref_bits.push_back(kernels::softmax_sums(&zero, d, 1).z);
    for_each_isa([&] {
        for (std::size_t i = 0; i < ds.size(); ++i) {
            const double d = ds[i];
            const kernels::SoftmaxSums s = kernels::softmax_sums(&zero, d, 1);
            const long double want = std::exp(-static_cast<long double>(d));
            const double ulp = std::nextafter(static_cast<double>(want), INFINITY) - static_cast<double>(want);
            ASSERT_LE(std::fabs(static_cast<long double>(s.z) - want), 2.0L * ulp) << "d = " << d;
            ASSERT_TRUE(same_bits(s.z, ref_bits[i])) << "d = " << d;
            ASSERT_TRUE(same_bits(s.w, s.z * d)) << "d = " << d;
        }
        EXPECT_EQ(kernels::softmax_sums(&zero, 0.0, 1).z, 1.0);
        for (double d : {700.0000000000001, 745.2, 1e30, double(INFINITY)}) {
            EXPECT_EQ(kernels::softmax_sums(&zero, d, 1).z, 0.0) << d;
        }
        EXPECT_TRUE(std::isnan(kernels::softmax_sums(&zero, std::nan(""), 1).z));
        const float nan_logit = std::nanf("");
        EXPECT_TRUE(std::isnan(kernels::softmax_sums(&nan_logit, 1.0, 1).z));
        // An empty row sums to 0.
        EXPECT_EQ(kernels::softmax_sums(&zero, 1.0, 0).z, 0.0);
    });
}

// The softmax sums over rows of every length are sixteen-lane sums of the exponentials (each one
// the one-element result), identical on every set, and near the long double sums.
TEST(Kernels, SoftmaxSumsAreSixteenLaneSumsOnEverySet) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    for (std::size_t n : {1u, 2u, 15u, 16u, 17u, 31u, 33u, 1000u, 151936u}) {
        std::vector<float> l(n);
        for (auto& x : l) x = nd(rng);
        const double mx = *std::max_element(l.begin(), l.end());
        std::vector<double> e(n), ed(n);
        long double zl = 0, wl = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double dv = mx - static_cast<double>(l[i]);
            const float zero = 0.0f;
            e[i] = kernels::softmax_sums(&zero, dv, 1).z;
            ed[i] = e[i] * dv;
            zl += std::exp(-static_cast<long double>(dv));
            wl += std::exp(-static_cast<long double>(dv)) * dv;
        }
        const double z = lane_sum_reference(e), w = lane_sum_reference(ed);
        for_each_isa([&] {
            const kernels::SoftmaxSums s = kernels::softmax_sums(l.data(), mx, n);
            SCOPED_TRACE(n);
            EXPECT_TRUE(same_bits(s.z, z));
            EXPECT_TRUE(same_bits(s.w, w));
            EXPECT_NEAR(s.z, static_cast<double>(zl), 1e-14 * static_cast<double>(zl));
            EXPECT_NEAR(s.w, static_cast<double>(wl), 1e-13 * static_cast<double>(wl) + 1e-300);
        });
    }
}

// top_two against the sequential scan (v > first: second ← first, first ← v, index ← i; else
// v > second: second ← v) on random rows, ties, maxima in the tail, NaN, −inf, empty rows.
TEST(Kernels, TopTwoIsTheSequentialScanOnEverySet) {
    const auto scan = [](const std::vector<float>& x) {
        kernels::TopTwo t{-INFINITY, -INFINITY, 0};
        for (std::size_t i = 0; i < x.size(); ++i) {
            if (x[i] > t.first) t.second = t.first, t.first = x[i], t.index = i;
            else if (x[i] > t.second) t.second = x[i];
        }
        return t;
    };
    std::mt19937_64 g(3);
    std::vector<std::vector<float>> rows;
    for (std::size_t n : {0u, 1u, 2u, 15u, 16u, 17u, 32u, 33u, 47u, 64u, 100u, 4097u}) {
        std::vector<float> r(n);
        for (auto& x : r) x = float(int(g() % 9)) - 4.0f;  // many ties
        rows.push_back(r);
        for (auto& x : r) x = random_float(g);
        rows.push_back(r);
        if (n > 0) {
            std::vector<float> t(n, 1.0f);
            t[n - 1] = 2.0f;  // the maximum in the tail
            rows.push_back(t);
            t.assign(n, -INFINITY);
            rows.push_back(t);
            t.assign(n, std::nanf(""));
            rows.push_back(t);
            for (std::size_t i = 0; i < n; ++i) t[i] = i % 3 ? -INFINITY : std::nanf("");
            rows.push_back(t);
            for (std::size_t i = 0; i < n; ++i) t[i] = g() % 4 ? float(int(g() % 5)) : std::nanf("");
            rows.push_back(t);
            t.assign(n, 3.0f);  // all equal: the first index, second = first
            rows.push_back(t);
        }
    }
    for_each_isa([&] {
        for (const auto& r : rows) {
            const kernels::TopTwo want = scan(r), got = kernels::top_two(r.data(), r.size());
            SCOPED_TRACE(r.size());
            ASSERT_EQ(got.first, want.first);  // as values: a +0 and a −0 maximum may come from either
            ASSERT_EQ(got.second, want.second);
            ASSERT_EQ(got.index, want.index);
        }
    });
}
