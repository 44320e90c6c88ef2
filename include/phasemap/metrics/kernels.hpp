// Low-level row kernels shared by the token axis (§2), the layer axis (§3) and the controls (§6).
// Not needed by ordinary callers; public so that tests and benchmarks can reach them.
//
// Every kernel reads float32 (or float64) rows, converts to float64 and accumulates in float64
// with a fixed number of independent lanes that are combined in a fixed order, so the result is
// the same bit pattern whatever SIMD width the compiler picks (on x86-64 the kernels are built for
// several instruction sets and the widest one the CPU supports is chosen at load time).
//
// Owns: nothing; pure row kernels over caller-owned memory, read during the call only. Throws: nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace phasemap::metrics::kernels {

// The instruction set the kernels run on: "x86-64-v4", "x86-64-v3" or "base" (any CPU). The widest
// one the CPU has is used unless use_isa chose another ("widest" restores it; false, and no change,
// for a set this CPU or build lacks). Every set returns identical bits; the choice exists so that
// tests and benchmarks can compare them (a call racing with use_isa gets the same bits either way).
std::string_view isa();
bool use_isa(std::string_view isa);

// Asks for [p, p + bytes) to be brought into the first-level cache, one request per 64-byte line:
// a hint for row walks whose rows lie beyond what the hardware prefetches (one layer's rows inside
// [T, L', d] are L'·d floats apart).
inline void prefetch(const void* p, std::size_t bytes) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    for (std::uintptr_t line = a & ~std::uintptr_t{63}; line < a + bytes; line += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 3);
}

// Σ x_j² in float64.
double sumsq(const float* x, std::size_t n);
double sumsq(const double* x, std::size_t n);

// Σ (a_j − b_j)² in float64 (differences taken in float64).
double diff_sumsq(const float* a, const float* b, std::size_t n);
double diff_sumsq(const double* a, const double* b, std::size_t n);

// §4 clipped_mad of one state: out_j = clamp((h_j − center_j) / scale_j, −k, k) in float64
// (inv_scale_j = 1 / scale_j, the rounded quotient), returning Σ out_j² exactly as sumsq(out, n).
double scale_clamp_sumsq(const float* h, const double* center, const double* scale, const double* inv_scale,
                         double k, double* out, std::size_t n);

// Sums produced by one step of a trajectory kernel.
struct StepSums {
    double vv = 0;  // Σ v_j²                 (‖v‖², v = current displacement)
    double vp = 0;  // Σ v_j · p_j            (p = previous displacement)
    double ww = 0;  // Σ (v_j − p_j)²         (‖v − p‖²)
};

// Token-axis step (§2.1–2.3) for state h with Euclidean norm `norm`:
//   x = h / max(norm, 1e-12); v = x − xprev; sums of v against vprev; then xprev ← x, vprev ← v.
// stage 0: only xprev ← x (first token); stage 1: vv only (second token, no previous v);
// stage ≥ 2: vv, vp, ww.
StepSums token_step(const float* h, double norm, double* xprev, double* vprev, std::size_t n, int stage);
StepSums token_step(const double* h, double norm, double* xprev, double* vprev, std::size_t n, int stage);

// Layer-axis step (§3): v = h1 − h0 in float64; sums of v against vprev (vp, ww only when
// `first` is false); then vprev ← v.
StepSums layer_step(const float* h0, const float* h1, double* vprev, std::size_t n, bool first);
StepSums layer_step(const double* h0, const double* h1, double* vprev, std::size_t n, bool first);

// The sums of a softmax over one row of logits (token_prob_stats, METRICS.md §1): with
// dv_i = mx − l_i in float64 and e_i = e^(−dv_i) (the kernels' own exponential: within 2 ulp, 0 for
// dv_i > 700, NaN for a NaN dv_i), z = Σ e_i and w = Σ e_i·dv_i over sixteen lanes combined in a
// fixed order, so every instruction set returns identical bits.
struct SoftmaxSums {
    double z = 0;
    double w = 0;
};
SoftmaxSums softmax_sums(const float* logits, double mx, std::size_t n);

// The largest and second-largest of n values as a multiset (a tied maximum is also the second)
// and the index of the first largest; NaN never counts. −inf for a missing value, and index 0
// when no value exceeds −inf (n = 0, or all NaN or −inf), as a sequential scan with > gives them.
struct TopTwo {
    float first = 0;
    float second = 0;
    std::size_t index = 0;
};
TopTwo top_two(const float* x, std::size_t n);

// The three passes of clipped_mad's exact selection (normalize.cpp) over one block of d
// dimensions whose rows lie one after another (row t at rows + t·d, t < T). Every instruction set
// returns identical counts and keeps identical values.

// Per dimension j, over the rows t = 0, step, 2·step, … < T (a step of 0 counts as 1):
// mn_j ← min(mn_j, x), mx_j ← max(mx_j, x) and nz_j += x · 0 (nz_j stays 0 while every value is finite).
void select_range(const float* rows, std::size_t T, std::size_t d, std::size_t step, float* mn, float* mx, float* nz);

// Per row and dimension: ++hist[j · stride + bin] with bin = (x − lo_j) · sc_j in float32, clamped
// to [0, bins − 1] and truncated, and nz_j as in select_range. stride ≥ bins.
void select_histogram(const float* rows, std::size_t T, std::size_t d, const float* lo, const float* sc,
                      std::size_t bins, std::uint32_t* hist, std::size_t stride, float* nz);

// Per row and dimension j, with the thresholds of j: below_j += x < a_j; inner_j += p0_j < x < q0_j;
// x is kept for the median when a_j ≤ x ≤ b_j and for the MAD when p1_j ≤ x ≤ p0_j or q0_j ≤ x ≤ q1_j:
// n_med_j (n_mad_j) counts every such value and the first cap of them, in row order, go to
// kept_med[j · cap …] (kept_mad[j · cap …]).
struct SelectWindows {
    const float *a, *b, *p1, *p0, *q0, *q1;
    std::uint32_t *below, *inner, *n_med, *n_mad;
    float *kept_med, *kept_mad;
    std::size_t cap;
};
void select_windows(const float* rows, std::size_t T, std::size_t d, const SelectWindows& w);

}  // namespace phasemap::metrics::kernels
