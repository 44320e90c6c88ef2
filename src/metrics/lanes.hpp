// Internal to src/metrics: element access and arithmetic for kernels written once, generic in V:
// V = double (one element) or f64x8 (eight consecutive elements, GCC's vector extension). Each lane
// of an f64x8 operation does exactly what the double operation does. Everything here has internal
// linkage, because kernels_v3.cpp and kernels_v4.cpp compile it for other instruction sets.
#pragma once
#include "clones.hpp"

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

}  // namespace
}  // namespace phasemap::metrics::lanes
