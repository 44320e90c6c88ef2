// Row kernels of the token axis (§2) and layer axis (§3): fused passes over one or two rows,
// float64 arithmetic, kLanes independent accumulators combined in a fixed pairwise order.
//
// Determinism: every clone below performs the same float64 operations in the same order (the
// lanes make the summation order explicit, and contraction into FMA is switched off below),
// so the AVX-512, AVX2 and baseline builds return identical bits.
#include "phasemap/metrics/kernels.hpp"

// No a·b + c → fma contraction here: the AVX2/AVX-512 clones must round exactly like the baseline.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cstddef>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    defined(__has_attribute)
#if __has_attribute(target_clones)
#define PM_KERNEL __attribute__((target_clones("default", "avx2", "avx512f")))
#endif
#endif
#ifndef PM_KERNEL
#define PM_KERNEL
#endif

#define PM_INLINE [[gnu::always_inline]] inline

namespace phasemap::metrics::kernels {
namespace {

constexpr std::size_t kLanes = 16;

PM_INLINE double reduce(double* acc) {
    for (std::size_t w = kLanes / 2; w > 0; w /= 2)
        for (std::size_t k = 0; k < w; ++k) acc[k] += acc[k + w];
    return acc[0];
}

template <class T>
PM_INLINE double sumsq_impl(const T* __restrict x, std::size_t n) {
    double acc[kLanes] = {};
    std::size_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (std::size_t k = 0; k < kLanes; ++k) {
            const double v = static_cast<double>(x[j + k]);
            acc[k] += v * v;
        }
    for (std::size_t k = 0; j < n; ++j, ++k) {
        const double v = static_cast<double>(x[j]);
        acc[k] += v * v;
    }
    return reduce(acc);
}

template <class T>
PM_INLINE double diff_sumsq_impl(const T* __restrict a, const T* __restrict b, std::size_t n) {
    double acc[kLanes] = {};
    std::size_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (std::size_t k = 0; k < kLanes; ++k) {
            const double v = static_cast<double>(a[j + k]) - static_cast<double>(b[j + k]);
            acc[k] += v * v;
        }
    for (std::size_t k = 0; j < n; ++j, ++k) {
        const double v = static_cast<double>(a[j]) - static_cast<double>(b[j]);
        acc[k] += v * v;
    }
    return reduce(acc);
}

// One element of a "full" step: v against the previous displacement p.
PM_INLINE void full_lane(double v, double* __restrict vp, std::size_t j, double& vv, double& dp, double& ww) {
    const double p = vp[j];
    vv += v * v;
    dp += v * p;
    const double w = v - p;
    ww += w * w;
    vp[j] = v;
}

template <class T>
PM_INLINE StepSums token_step_impl(const T* __restrict h, double norm, double* __restrict xp, double* __restrict vp,
                                   std::size_t n, int stage) {
    const double s = std::max(norm, 1e-12);  // §2.1 x_t = h_t / max(‖h_t‖, 1e-12)
    StepSums out;
    if (stage <= 0) {
        for (std::size_t j = 0; j < n; ++j) xp[j] = static_cast<double>(h[j]) / s;
        return out;
    }
    double vv[kLanes] = {};
    std::size_t j = 0;
    if (stage == 1) {
        for (; j + kLanes <= n; j += kLanes)
            for (std::size_t k = 0; k < kLanes; ++k) {
                const double x = static_cast<double>(h[j + k]) / s;
                const double v = x - xp[j + k];
                vv[k] += v * v;
                xp[j + k] = x;
                vp[j + k] = v;
            }
        for (std::size_t k = 0; j < n; ++j, ++k) {
            const double x = static_cast<double>(h[j]) / s;
            const double v = x - xp[j];
            vv[k] += v * v;
            xp[j] = x;
            vp[j] = v;
        }
        out.vv = reduce(vv);
        return out;
    }
    double dp[kLanes] = {}, ww[kLanes] = {};
    for (; j + kLanes <= n; j += kLanes)
        for (std::size_t k = 0; k < kLanes; ++k) {
            const double x = static_cast<double>(h[j + k]) / s;
            const double v = x - xp[j + k];
            xp[j + k] = x;
            full_lane(v, vp, j + k, vv[k], dp[k], ww[k]);
        }
    for (std::size_t k = 0; j < n; ++j, ++k) {
        const double x = static_cast<double>(h[j]) / s;
        const double v = x - xp[j];
        xp[j] = x;
        full_lane(v, vp, j, vv[k], dp[k], ww[k]);
    }
    out.vv = reduce(vv);
    out.vp = reduce(dp);
    out.ww = reduce(ww);
    return out;
}

template <class T>
PM_INLINE StepSums layer_step_impl(const T* __restrict h0, const T* __restrict h1, double* __restrict vp,
                                   std::size_t n, bool first) {
    StepSums out;
    double vv[kLanes] = {};
    std::size_t j = 0;
    if (first) {
        for (; j + kLanes <= n; j += kLanes)
            for (std::size_t k = 0; k < kLanes; ++k) {
                const double v = static_cast<double>(h1[j + k]) - static_cast<double>(h0[j + k]);
                vv[k] += v * v;
                vp[j + k] = v;
            }
        for (std::size_t k = 0; j < n; ++j, ++k) {
            const double v = static_cast<double>(h1[j]) - static_cast<double>(h0[j]);
            vv[k] += v * v;
            vp[j] = v;
        }
        out.vv = reduce(vv);
        return out;
    }
    double dp[kLanes] = {}, ww[kLanes] = {};
    for (; j + kLanes <= n; j += kLanes)
        for (std::size_t k = 0; k < kLanes; ++k) {
            const double v = static_cast<double>(h1[j + k]) - static_cast<double>(h0[j + k]);
            full_lane(v, vp, j + k, vv[k], dp[k], ww[k]);
        }
    for (std::size_t k = 0; j < n; ++j, ++k) {
        const double v = static_cast<double>(h1[j]) - static_cast<double>(h0[j]);
        full_lane(v, vp, j, vv[k], dp[k], ww[k]);
    }
    out.vv = reduce(vv);
    out.vp = reduce(dp);
    out.ww = reduce(ww);
    return out;
}

}  // namespace

PM_KERNEL double sumsq(const float* x, std::size_t n) { return sumsq_impl(x, n); }
PM_KERNEL double sumsq(const double* x, std::size_t n) { return sumsq_impl(x, n); }
PM_KERNEL double diff_sumsq(const float* a, const float* b, std::size_t n) { return diff_sumsq_impl(a, b, n); }
PM_KERNEL double diff_sumsq(const double* a, const double* b, std::size_t n) { return diff_sumsq_impl(a, b, n); }

PM_KERNEL StepSums token_step(const float* h, double norm, double* xprev, double* vprev, std::size_t n, int stage) {
    return token_step_impl(h, norm, xprev, vprev, n, stage);
}
PM_KERNEL StepSums token_step(const double* h, double norm, double* xprev, double* vprev, std::size_t n, int stage) {
    return token_step_impl(h, norm, xprev, vprev, n, stage);
}
PM_KERNEL StepSums layer_step(const float* h0, const float* h1, double* vprev, std::size_t n, bool first) {
    return layer_step_impl(h0, h1, vprev, n, first);
}
PM_KERNEL StepSums layer_step(const double* h0, const double* h1, double* vprev, std::size_t n, bool first) {
    return layer_step_impl(h0, h1, vprev, n, first);
}

}  // namespace phasemap::metrics::kernels
