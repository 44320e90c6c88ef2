// The row kernels of kernels.hpp: each call goes to the version for the widest instruction set the
// CPU has (kernels_impl.hpp, compiled per set by kernels_base.cpp, kernels_v3.cpp, kernels_v4.cpp),
// chosen at first use, or to the one use_isa chose. All versions return identical bits, so a call
// racing with use_isa gets the same answer from either.
#include "phasemap/metrics/kernels.hpp"

#include "kernels_table.hpp"

#include <atomic>

namespace phasemap::metrics::kernels {
namespace {

const Table* widest() {
#if defined(PHASEMAP_ISA_KERNELS)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return &v4::table;
    if (__builtin_cpu_supports("x86-64-v3")) return &v3::table;
#endif
    return &base::table;
}

std::atomic<const Table*>& chosen() {
    static std::atomic<const Table*> t{widest()};
    return t;
}

const Table& best() { return *chosen().load(std::memory_order_relaxed); }

}  // namespace

bool use_isa(std::string_view isa) {
    const Table* t = nullptr;
    if (isa == "widest") t = widest();
    else if (isa == "base") t = &base::table;
#if defined(PHASEMAP_ISA_KERNELS)
    else if (isa == "x86-64-v3" && __builtin_cpu_supports("x86-64-v3")) t = &v3::table;
    else if (isa == "x86-64-v4" && __builtin_cpu_supports("x86-64-v4")) t = &v4::table;
#endif
    if (!t) return false;
    chosen().store(t, std::memory_order_relaxed);
    return true;
}

std::string_view isa() {
    const Table* t = &best();
#if defined(PHASEMAP_ISA_KERNELS)
    if (t == &v4::table) return "x86-64-v4";
    if (t == &v3::table) return "x86-64-v3";
#endif
    (void)t;
    return "base";
}

double sumsq(const float* x, std::size_t n) { return best().sumsq_f(x, n); }
double sumsq(const double* x, std::size_t n) { return best().sumsq_d(x, n); }
double diff_sumsq(const float* a, const float* b, std::size_t n) { return best().diff_sumsq_f(a, b, n); }
double diff_sumsq(const double* a, const double* b, std::size_t n) { return best().diff_sumsq_d(a, b, n); }
StepSums token_step(const float* h, double norm, double* xprev, double* vprev, std::size_t n, int stage) {
    return best().token_step_f(h, norm, xprev, vprev, n, stage);
}
StepSums token_step(const double* h, double norm, double* xprev, double* vprev, std::size_t n, int stage) {
    return best().token_step_d(h, norm, xprev, vprev, n, stage);
}
double scale_clamp_sumsq(const float* h, const double* center, const double* scale, const double* inv_scale, double k,
                         double* out, std::size_t n) {
    return best().scale_clamp_sumsq(h, center, scale, inv_scale, k, out, n);
}
StepSums layer_step(const float* h0, const float* h1, double* vprev, std::size_t n, bool first) {
    return best().layer_step_f(h0, h1, vprev, n, first);
}
StepSums layer_step(const double* h0, const double* h1, double* vprev, std::size_t n, bool first) {
    return best().layer_step_d(h0, h1, vprev, n, first);
}

void select_range(const float* rows, std::size_t T, std::size_t d, std::size_t step, float* mn, float* mx, float* nz) {
    best().select_range(rows, T, d, step, mn, mx, nz);
}
void select_histogram(const float* rows, std::size_t T, std::size_t d, const float* lo, const float* sc,
                      std::size_t bins, std::uint32_t* hist, std::size_t stride, float* nz) {
    best().select_histogram(rows, T, d, lo, sc, bins, hist, stride, nz);
}
void select_windows(const float* rows, std::size_t T, std::size_t d, const SelectWindows& w) {
    best().select_windows(rows, T, d, w);
}

SoftmaxSums softmax_sums(const float* logits, double mx, std::size_t n) { return best().softmax_sums(logits, mx, n); }
TopTwo top_two(const float* x, std::size_t n) { return best().top_two(x, n); }

}  // namespace phasemap::metrics::kernels
