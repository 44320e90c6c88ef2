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
#include <cstdint>
#include <cstring>
#include <limits>

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

// ---- clipped_mad's selection passes (normalize.cpp). Comparisons and one float32 product only, so
// every set gives the same counts and keeps the same values; columns go in chunks of kSelCols.
constexpr std::size_t kSelCols = 64;

PM_INLINE void range_row(const float* __restrict h, float* __restrict mn, float* __restrict mx,
                         float* __restrict nz, std::size_t d) {
    for (std::size_t j = 0; j < d; ++j) {
        const float x = h[j];
        nz[j] += x * 0.0f;  // stays 0 while x is finite (±inf · 0 and NaN are NaN)
        mn[j] = x < mn[j] ? x : mn[j];
        mx[j] = mx[j] < x ? x : mx[j];
    }
}

void select_range_impl(const float* rows, std::size_t T, std::size_t d, std::size_t step, float* mn, float* mx,
                       float* nz) {
    step = std::max<std::size_t>(step, 1);
    for (std::size_t t = 0; t < T; t += step) range_row(rows + t * d, mn, mx, nz, d);
}

PM_INLINE void bins_row(const float* __restrict h, const float* __restrict lo, const float* __restrict sc, float top,
                        std::int32_t* __restrict bin, float* __restrict nz, std::size_t d) {
    for (std::size_t j = 0; j < d; ++j) {
        nz[j] += h[j] * 0.0f;  // stays 0 while the values are finite (±inf · 0 and NaN are NaN)
        float v = (h[j] - lo[j]) * sc[j];  // monotone in h (±inf at the ends clamps)
        v = v < top ? v : top;
        v = v > 0 ? v : 0;
        bin[j] = static_cast<std::int32_t>(v);
    }
}

void select_histogram_impl(const float* rows, std::size_t T, std::size_t d, const float* lo, const float* sc,
                           std::size_t bins, std::uint32_t* hist, std::size_t stride, float* nz) {
    if (bins == 0) return;
    const float top = static_cast<float>(bins - 1);
    alignas(64) std::int32_t bin[kSelCols];
    for (std::size_t c0 = 0; c0 < d; c0 += kSelCols) {
        const std::size_t w = std::min(kSelCols, d - c0);
        std::uint32_t* h = hist + c0 * stride;
        for (std::size_t t = 0; t < T; ++t) {
            bins_row(rows + t * d + c0, lo + c0, sc + c0, top, bin, nz + c0, w);
            for (std::size_t j = 0; j < w; ++j) ++h[j * stride + static_cast<std::size_t>(bin[j])];
        }
    }
}

PM_INLINE void keep(std::uint32_t* n, float* kept, std::size_t cap, std::size_t j, float x) {
    const std::uint32_t m = n[j]++;
    if (m < cap) kept[j * cap + m] = x;
}

#if defined(__AVX512F__)
// Sixteen dimensions per compare: the flags of a row are bit masks, and a row without any (most
// rows) costs no branch beyond one test.
void select_windows_impl(const float* rows, std::size_t T, std::size_t d, const SelectWindows& w) {
    for (std::size_t c0 = 0; c0 < d; c0 += kSelCols) {
        const std::size_t width = std::min(kSelCols, d - c0);
        constexpr std::size_t kChunks = kSelCols / 16;
        __mmask16 live[kChunks];
        __m512 a[kChunks], b[kChunks], p1[kChunks], p0[kChunks], q0[kChunks], q1[kChunks];
        __m512i below[kChunks], inner[kChunks];
        const __m512i one = _mm512_set1_epi32(1);
        for (std::size_t c = 0; c < kChunks; ++c) {
            const std::size_t lo = c * 16;
            live[c] = lo >= width ? 0 : width - lo >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (width - lo)) - 1);
            const std::size_t o = c0 + lo;
            a[c] = _mm512_maskz_loadu_ps(live[c], w.a + o);
            b[c] = _mm512_maskz_loadu_ps(live[c], w.b + o);
            p1[c] = _mm512_maskz_loadu_ps(live[c], w.p1 + o);
            p0[c] = _mm512_maskz_loadu_ps(live[c], w.p0 + o);
            q0[c] = _mm512_maskz_loadu_ps(live[c], w.q0 + o);
            q1[c] = _mm512_maskz_loadu_ps(live[c], w.q1 + o);
            below[c] = inner[c] = _mm512_setzero_si512();
        }
        for (std::size_t t = 0; t < T; ++t) {
            const float* x = rows + t * d + c0;
            std::uint64_t med = 0, mad = 0;
            for (std::size_t c = 0; c < kChunks; ++c) {
                const __m512 v = _mm512_maskz_loadu_ps(live[c], x + c * 16);
                const __mmask16 lt = _mm512_mask_cmp_ps_mask(live[c], v, a[c], _CMP_LT_OQ);
                below[c] = _mm512_mask_add_epi32(below[c], lt, below[c], one);
                const __mmask16 in =
                    _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(live[c], p0[c], v, _CMP_LT_OQ), v, q0[c], _CMP_LT_OQ);
                inner[c] = _mm512_mask_add_epi32(inner[c], in, inner[c], one);
                const __mmask16 m =
                    _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(live[c], a[c], v, _CMP_LE_OQ), v, b[c], _CMP_LE_OQ);
                const __mmask16 l =
                    _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(live[c], p1[c], v, _CMP_LE_OQ), v, p0[c], _CMP_LE_OQ);
                const __mmask16 h =
                    _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(live[c], q0[c], v, _CMP_LE_OQ), v, q1[c], _CMP_LE_OQ);
                med |= static_cast<std::uint64_t>(m) << (c * 16);
                mad |= static_cast<std::uint64_t>(static_cast<std::uint16_t>(l | h)) << (c * 16);
            }
            if ((med | mad) == 0) continue;
            for (; med; med &= med - 1) {
                const std::size_t j = static_cast<std::size_t>(__builtin_ctzll(med));
                keep(w.n_med, w.kept_med, w.cap, c0 + j, x[j]);
            }
            for (; mad; mad &= mad - 1) {
                const std::size_t j = static_cast<std::size_t>(__builtin_ctzll(mad));
                keep(w.n_mad, w.kept_mad, w.cap, c0 + j, x[j]);
            }
        }
        for (std::size_t c = 0; c < kChunks; ++c) {
            const std::size_t o = c0 + c * 16;
            _mm512_mask_storeu_epi32(w.below + o, live[c],
                                     _mm512_add_epi32(_mm512_maskz_loadu_epi32(live[c], w.below + o), below[c]));
            _mm512_mask_storeu_epi32(w.inner + o, live[c],
                                     _mm512_add_epi32(_mm512_maskz_loadu_epi32(live[c], w.inner + o), inner[c]));
        }
    }
}
#else
// flag_j bit 0: the median window, bit 1: a MAD window; the flags are rare, so eight are tested at
// a time.
PM_INLINE void window_row(const float* __restrict h, const SelectWindows& w, std::size_t c0,
                          std::uint8_t* __restrict flag, std::size_t d) {
    const float* __restrict a = w.a + c0;
    const float* __restrict b = w.b + c0;
    const float* __restrict p1 = w.p1 + c0;
    const float* __restrict p0 = w.p0 + c0;
    const float* __restrict q0 = w.q0 + c0;
    const float* __restrict q1 = w.q1 + c0;
    std::uint32_t* __restrict below = w.below + c0;
    std::uint32_t* __restrict inner = w.inner + c0;
    for (std::size_t j = 0; j < d; ++j) {
        const float x = h[j];
        below[j] += std::uint32_t(x < a[j]);
        inner[j] += std::uint32_t(p0[j] < x) & std::uint32_t(x < q0[j]);
        const std::uint32_t med = std::uint32_t(a[j] <= x) & std::uint32_t(x <= b[j]);
        const std::uint32_t lo = std::uint32_t(p1[j] <= x) & std::uint32_t(x <= p0[j]);
        const std::uint32_t hi = std::uint32_t(q0[j] <= x) & std::uint32_t(x <= q1[j]);
        flag[j] = static_cast<std::uint8_t>(med | (lo | hi) << 1);
    }
}

void select_windows_impl(const float* rows, std::size_t T, std::size_t d, const SelectWindows& w) {
    alignas(8) std::uint8_t flag[kSelCols];
    for (std::size_t c0 = 0; c0 < d; c0 += kSelCols) {
        const std::size_t width = std::min(kSelCols, d - c0);
        for (std::size_t t = 0; t < T; ++t) {
            const float* x = rows + t * d + c0;
            window_row(x, w, c0, flag, width);
            for (std::size_t j = 0; j < width; j += 8) {
                std::uint64_t word = 0;
                std::memcpy(&word, flag + j, std::min<std::size_t>(8, width - j));
                while (word) {
                    const std::size_t q = j + static_cast<std::size_t>(__builtin_ctzll(word)) / 8;
                    word &= ~(std::uint64_t{0xff} << (q - j) * 8);
                    if (flag[q] & 1u) keep(w.n_med, w.kept_med, w.cap, c0 + q, x[q]);
                    if (flag[q] & 2u) keep(w.n_mad, w.kept_mad, w.cap, c0 + q, x[q]);
                }
            }
        }
    }
}
#endif

PM_INLINE SoftmaxSums softmax_sums_impl(const float* __restrict l, double mx, std::size_t n) {
    const StepSums s = over_lanes<2>(n, [&]<class V>(std::size_t j, V* sums) {
        const V dv = lanes::splat<V>(mx) - load<V>(l + j);
        const V e = lanes::exp_neg(dv);
        sums[0] += e;
        sums[1] += e * dv;
    });
    return {s.vv, s.vp};
}

// One value into a running (first, second, index of first) with the sequential rule.
PM_INLINE void top_two_step(float v, std::size_t i, float& m1, float& m2, std::size_t& at) {
    if (v > m1) {
        m2 = m1;
        m1 = v;
        at = i;
    } else if (v > m2) {
        m2 = v;
    }
}

// Sixteen lanes of running (first, second, index of first) over the blocks of sixteen, then the
// lanes merged: the top two of a union are the top two of the parts' top twos, and the first
// index of the maximum is the smallest of the lanes that hold it.
PM_INLINE TopTwo top_two_impl(const float* __restrict x, std::size_t n) {
    constexpr float ninf = -std::numeric_limits<float>::infinity();
    using f32x16 = float __attribute__((vector_size(64)));
    using i32x16 = std::int32_t __attribute__((vector_size(64)));
    float M1 = ninf, M2 = ninf;
    std::size_t at = 0, j = 0;
    if (n >= 16 && n <= std::size_t(std::numeric_limits<std::int32_t>::max())) {
        f32x16 m1 = f32x16{} + ninf, m2 = m1;
        i32x16 idx{}, cur;
        for (int k = 0; k < 16; ++k) cur[k] = k;
        for (; j + 16 <= n; j += 16, cur += 16) {
            f32x16 v;
            std::memcpy(&v, x + j, sizeof v);
            const i32x16 gt1 = v > m1;
            m2 = gt1 ? m1 : (v > m2 ? v : m2);
            m1 = gt1 ? v : m1;
            idx = gt1 ? cur : idx;
        }
        for (int k = 0; k < 16; ++k) {
            top_two_step(m1[k], std::size_t(idx[k]), M1, M2, at);
            top_two_step(m2[k], 0, M1, M2, at);  // a second is never the first of a lane, index unused
        }
        for (int k = 0; k < 16; ++k)  // the first index among the lanes whose largest equals the maximum
            if (m1[k] == M1) at = std::min(at, std::size_t(idx[k]));  // (M1 = −inf: every idx is 0)
    }
    for (; j < n; ++j) top_two_step(x[j], j, M1, M2, at);
    return {M1, M2, at};
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
    select_range_impl,
    select_histogram_impl,
    select_windows_impl,
    [](const float* l, double mx, std::size_t n) { return softmax_sums_impl(l, mx, n); },
    [](const float* x, std::size_t n) { return top_two_impl(x, n); },
};
}  // namespace PM_KERNELS_NS

}  // namespace phasemap::metrics::kernels
