// Internal to src/metrics: element access and arithmetic for kernels written once, generic in V:
// V = double (one element) or f64x8 (eight consecutive elements, GCC's vector extension). Each lane
// of an f64x8 operation does exactly what the double operation does. Everything here has internal
// linkage, because kernels_v3.cpp and kernels_v4.cpp compile it for other instruction sets.
#pragma once
#include "clones.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX__)
#include <immintrin.h>
#endif

// Eight-double vectors are passed between always-inline helpers only; the note about their ABI
// without AVX-512 does not concern any real call.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace phasemap::metrics::lanes {
namespace {

using f64x8 = double __attribute__((vector_size(64)));
using f32x8 = float __attribute__((vector_size(32)));

template <class V>
PM_INLINE V load(const float* p) {
    if constexpr (std::is_same_v<V, double>) {
        return static_cast<double>(*p);
    } else {
#if defined(__AVX512F__)
        return reinterpret_cast<f64x8>(_mm512_maskz_cvtps_pd(0xff, _mm256_loadu_ps(p)));  // (maskz: no GCC 12 warning)
#elif defined(__AVX__)
        const __m256d x[2] = {_mm256_cvtps_pd(_mm_loadu_ps(p)), _mm256_cvtps_pd(_mm_loadu_ps(p + 4))};
        f64x8 v;
        std::memcpy(&v, x, sizeof v);
        return v;
#else
        f32x8 f;
        std::memcpy(&f, p, sizeof f);
        return __builtin_convertvector(f, f64x8);
#endif
    }
}
template <class V>
PM_INLINE V load(const double* p) {
    if constexpr (std::is_same_v<V, double>) {
        return *p;
    } else {
        f64x8 v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
}
template <class V>
PM_INLINE V splat(double x) {
    if constexpr (std::is_same_v<V, double>) return x;
    else return f64x8{} + x;
}
PM_INLINE void store(double* p, double v) { *p = v; }
PM_INLINE void store(double* p, f64x8 v) { std::memcpy(p, &v, sizeof v); }

// c ? x : y, lane by lane.
PM_INLINE double select(bool c, double x, double y) { return c ? x : y; }
template <class M>
PM_INLINE f64x8 select(M c, f64x8 x, f64x8 y) {
    return c ? x : y;
}
// std::clamp(z, lo, hi) for NaN-free operands, comparisons in its order.
template <class V>
PM_INLINE V clamp(V z, V lo, V hi) {
    return select(z < lo, lo, select(hi < z, hi, z));
}

// Whether this instruction set has fma (x86-64-v3 and v4); without it div_rn divides.
#if defined(__FMA__)
constexpr bool kFma = true;
PM_INLINE double fma(double a, double b, double c) { return __builtin_fma(a, b, c); }
PM_INLINE f64x8 fma(f64x8 a, f64x8 b, f64x8 c) {
#if defined(__AVX512F__)
    return reinterpret_cast<f64x8>(
        _mm512_fmadd_pd(reinterpret_cast<__m512d>(a), reinterpret_cast<__m512d>(b), reinterpret_cast<__m512d>(c)));
#else
    __m256d x[2], y[2], z[2];
    std::memcpy(x, &a, sizeof a);
    std::memcpy(y, &b, sizeof b);
    std::memcpy(z, &c, sizeof c);
    x[0] = _mm256_fmadd_pd(x[0], y[0], z[0]);
    x[1] = _mm256_fmadd_pd(x[1], y[1], z[1]);
    f64x8 r;
    std::memcpy(&r, x, sizeof r);
    return r;
#endif
}
#else
constexpr bool kFma = false;
#endif

// a / b rounded to nearest, the bits the division instruction gives, from y = 1 / b (itself a
// rounded division). With fma: q0 = a·y is within 1.5 ulp of a / b; one Newton correction
// q1 = q0 + (a − b·q0)·y brings it within one ulp; from a quotient within one ulp, a second
// correction rounds to the nearest double of a / b (Markstein's theorem: the residual a − b·q1 is
// exact in an fma). That needs no overflow or underflow on the way, which holds for the kernels'
// operands (float data: |a| ≤ 2^129, |a| ≥ 2^-150 unless 0, 1e-12 ≤ b ≤ 2^140). A zero, infinite or
// NaN a gives a·y (finite b > 0), so −0 / b stays −0 and ±inf / b stays ±inf, as division gives them.
// Four fmas and a multiply cost less than a division on x86-64-v3 CPUs.
// tests/metrics/test_kernels.cpp compares it with division on random and adversarial operands.
// kFiniteA: the caller knows a is finite, and the guard for infinite and NaN dividends is left out.
template <bool kFiniteA = false, class V>
PM_INLINE V div_rn(V a, V b, V y) {
    if constexpr (kFma) {
        const V q0 = a * y;
        const V q1 = fma(fma(-b, q0, a), y, q0);
        const V q2 = fma(fma(-b, q1, a), y, q1);
        if constexpr (kFiniteA) return select(a == 0, q0, q2);
        else return select((a == 0) | ((q0 - q0) != 0), q0, q2);
    } else {
        (void)y;
        return a / b;
    }
}

// e^(−d) for d ≥ 0 in float64, the same bits on every instruction set (no fma, no division, no
// table): k = round(−d / ln 2) by the 1.5·2^52 shift, r = −d − k·ln 2 in two parts (ln2_hi has 20
// trailing zero bits, so k·ln2_hi is exact and −d − k·ln2_hi is exact by Sterbenz), e^r by its
// Taylor polynomial of degree 13 in Horner form (|r| ≤ 0.347: truncation below 5e-18 relative),
// scaled by 2^k built in the exponent bits. Within 2 ulp of e^(−d) (tests/metrics/test_kernels.cpp
// checks it against long double). d > 700 gives 0 (e^−700 ≈ 1e−304: below every sum it enters,
// where the largest term is 1), +inf gives 0 and NaN stays NaN. d = 0 gives exactly 1.
template <class V>
PM_INLINE V exp_neg(V d) {
    constexpr double kInvLn2 = 0x1.71547652b82fep0, kShift = 0x1.8p52;
    constexpr double kLn2Hi = 0x1.62e42fee00000p-1, kLn2Lo = 0x1.a39ef35793c76p-33;
    constexpr double c[14] = {1.0,
                              1.0,
                              1.0 / 2,
                              1.0 / 6,
                              1.0 / 24,
                              1.0 / 120,
                              1.0 / 720,
                              1.0 / 5040,
                              1.0 / 40320,
                              1.0 / 362880,
                              1.0 / 3628800,
                              1.0 / 39916800,
                              1.0 / 479001600,
                              1.0 / 6227020800.0};
    const V x = -d;
    const V t = x * splat<V>(kInvLn2) + splat<V>(kShift);
    const V k = t - splat<V>(kShift);
    const V r = (x - k * splat<V>(kLn2Hi)) - k * splat<V>(kLn2Lo);
    V p = splat<V>(c[13]);
    for (int i = 12; i >= 0; --i) p = p * r + splat<V>(c[i]);
    // 2^k: the low bits of t hold k (two's complement offset from the shift's bits).
    using I = std::conditional_t<std::is_same_v<V, double>, std::int64_t, std::int64_t __attribute__((vector_size(64)))>;
    std::int64_t sb;
    std::memcpy(&sb, &kShift, sizeof sb);
    I tb;
    std::memcpy(&tb, &t, sizeof tb);
    const I e = (tb - sb + 1023) << 52;
    V two_k;
    std::memcpy(&two_k, &e, sizeof e);
    const V in_range = p * two_k;
    return select(d <= splat<V>(700.0), in_range, select(d > splat<V>(700.0), splat<V>(0.0), d));
}

}  // namespace
}  // namespace phasemap::metrics::lanes
