// Internal to src/metrics: the row kernels of kernels.hpp, included once per instruction set by
// kernels_base.cpp, kernels_v3.cpp and kernels_v4.cpp, each defining PM_KERNELS_NS (the namespace
// of its table) and compiled with its own -march (CMakeLists.txt).
//
// Determinism: every version performs the same float64 operations in the same order (the lanes
// make the summation order explicit, and contraction into FMA is switched off), and every division
// is the correctly rounded quotient whether it divides or uses lanes::div_rn, so the AVX-512, AVX2
// and baseline versions return identical bits.
//
// Each kernel's element step is written once, generic in V: V = f64x8 for eight consecutive
// elements (lanes k … k + 7 of the sixteen) and V = double for one element of the tail, which goes
// to lane 0, 1, … in order.
#include "kernels_table.hpp"
#include "lanes.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

#ifndef PM_KERNELS_NS
#error "define PM_KERNELS_NS before including kernels_impl.hpp"
#endif

namespace phasemap::metrics::kernels {
namespace {

using lanes::f64x8;
using lanes::load;
using lanes::store;

constexpr std::size_t kLanes = 16;

PM_INLINE double reduce(double* acc) {
    for (std::size_t w = kLanes / 2; w > 0; w /= 2)
        for (std::size_t k = 0; k < w; ++k) acc[k] += acc[k + w];
    return acc[0];
}

// step(j, sums) for every element block of [0, n): sums[i] += the element's contribution to sum i
// (kSums ≤ 3). Returns the kSums sums, each reduced pairwise over its sixteen lanes.
template <int kSums, class Step>
PM_INLINE StepSums over_lanes(std::size_t n, Step&& step) {
    f64x8 lo[3] = {}, hi[3] = {};  // lanes 0–7 and 8–15
    std::size_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
        step.template operator()<f64x8>(j, lo);
        step.template operator()<f64x8>(j + 8, hi);
    }
    double acc[3][kLanes] = {};
    for (int i = 0; i < kSums; ++i) store(acc[i], lo[i]), store(acc[i] + 8, hi[i]);
    for (std::size_t k = 0; j < n; ++j, ++k) {
        double s[3] = {acc[0][k], acc[1][k], acc[2][k]};
        step.template operator()<double>(j, s);
        for (int i = 0; i < kSums; ++i) acc[i][k] = s[i];
    }
    StepSums out;
    double* dst[3] = {&out.vv, &out.vp, &out.ww};
    for (int i = 0; i < kSums; ++i) *dst[i] = reduce(acc[i]);
    return out;
}

template <class T>
PM_INLINE double sumsq_impl(const T* __restrict x, std::size_t n) {
    return over_lanes<1>(n, [&]<class V>(std::size_t j, V* s) {
               const V v = load<V>(x + j);
               s[0] += v * v;
           }).vv;
}

template <class T>
PM_INLINE double diff_sumsq_impl(const T* __restrict a, const T* __restrict b, std::size_t n) {
    return over_lanes<1>(n, [&]<class V>(std::size_t j, V* s) {
               const V v = load<V>(a + j) - load<V>(b + j);
               s[0] += v * v;
           }).vv;
}

// The sums of displacement v at element j against the previous displacement vp[j], then vp[j] ← v.
template <class V>
PM_INLINE void full_step(V v, double* __restrict vp, std::size_t j, V* s) {
    const V p = load<V>(vp + j);
    s[0] += v * v;
    s[1] += v * p;
    const V w = v - p;
    s[2] += w * w;
    store(vp + j, v);
}

// kFinite: s, and with it every h_j (s is their norm), is finite, so the division needs no guard
// for infinite or NaN dividends; otherwise it divides.
template <bool kFinite, class T>
PM_INLINE StepSums token_step_rows(const T* __restrict h, double s, double* __restrict xp, double* __restrict vp,
                                   std::size_t n, int stage) {
    const double y = 1.0 / s;
    const auto x_at = [&]<class V>(std::size_t j) {
        if constexpr (kFinite) return lanes::div_rn<true>(load<V>(h + j), lanes::splat<V>(s), lanes::splat<V>(y));
        else return load<V>(h + j) / lanes::splat<V>(s);
    };
    if (stage <= 0)
        return over_lanes<0>(n, [&]<class V>(std::size_t j, V*) { store(xp + j, x_at.template operator()<V>(j)); });
    if (stage == 1)
        return over_lanes<1>(n, [&]<class V>(std::size_t j, V* sums) {
            const V x = x_at.template operator()<V>(j);
            const V v = x - load<V>(xp + j);
            sums[0] += v * v;
            store(xp + j, x);
            store(vp + j, v);
        });
    return over_lanes<3>(n, [&]<class V>(std::size_t j, V* sums) {
        const V x = x_at.template operator()<V>(j);
        const V v = x - load<V>(xp + j);
        store(xp + j, x);
        full_step(v, vp, j, sums);
    });
}

template <class T>
PM_INLINE StepSums token_step_impl(const T* __restrict h, double norm, double* __restrict xp, double* __restrict vp,
                                   std::size_t n, int stage) {
    const double s = std::max(norm, 1e-12);  // §2.1 x_t = h_t / max(‖h_t‖, 1e-12)
    return std::isfinite(s) ? token_step_rows<true>(h, s, xp, vp, n, stage) : token_step_rows<false>(h, s, xp, vp, n, stage);
}

PM_INLINE double scale_clamp_sumsq_impl(const float* __restrict h, const double* __restrict c,
                                        const double* __restrict sc, const double* __restrict inv_sc, double k,
                                        double* __restrict out, std::size_t n) {
    return over_lanes<1>(n, [&]<class V>(std::size_t j, V* sums) {
               const V z = lanes::div_rn(load<V>(h + j) - load<V>(c + j), load<V>(sc + j), load<V>(inv_sc + j));
               const V zc = lanes::clamp(z, lanes::splat<V>(-k), lanes::splat<V>(k));
               store(out + j, zc);
               sums[0] += zc * zc;
           }).vv;
}

template <class T>
PM_INLINE StepSums layer_step_impl(const T* __restrict h0, const T* __restrict h1, double* __restrict vp,
                                   std::size_t n, bool first) {
    if (first)
        return over_lanes<1>(n, [&]<class V>(std::size_t j, V* sums) {
            const V v = load<V>(h1 + j) - load<V>(h0 + j);
            sums[0] += v * v;
            store(vp + j, v);
        });
    return over_lanes<3>(n, [&]<class V>(std::size_t j, V* sums) {
        full_step(load<V>(h1 + j) - load<V>(h0 + j), vp, j, sums);
    });
}

}  // namespace

namespace PM_KERNELS_NS {
extern const Table table;
const Table table = {
    [](const float* x, std::size_t n) { return sumsq_impl(x, n); },
    [](const double* x, std::size_t n) { return sumsq_impl(x, n); },
    [](const float* a, const float* b, std::size_t n) { return diff_sumsq_impl(a, b, n); },
    [](const double* a, const double* b, std::size_t n) { return diff_sumsq_impl(a, b, n); },
    [](const float* h, double norm, double* xp, double* vp, std::size_t n, int stage) {
        return token_step_impl(h, norm, xp, vp, n, stage);
    },
    [](const double* h, double norm, double* xp, double* vp, std::size_t n, int stage) {
        return token_step_impl(h, norm, xp, vp, n, stage);
    },
    [](const float* h, const double* c, const double* s, const double* is, double k, double* out, std::size_t n) {
        return scale_clamp_sumsq_impl(h, c, s, is, k, out, n);
    },
    [](const float* h0, const float* h1, double* vp, std::size_t n, bool first) {
        return layer_step_impl(h0, h1, vp, n, first);
    },
    [](const double* h0, const double* h1, double* vp, std::size_t n, bool first) {
        return layer_step_impl(h0, h1, vp, n, first);
    },
};
}  // namespace PM_KERNELS_NS

}  // namespace phasemap::metrics::kernels
