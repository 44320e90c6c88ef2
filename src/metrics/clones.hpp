// Internal to src/metrics: how the row kernels are built for several instruction sets.
//
// Every version of a kernel must return the same bits, so files that include this header turn off
// a·b + c → fma contraction; the only fused multiply-adds are the explicit ones of lanes.hpp.
//
// Two mechanisms, one rule (identical float64 operations in every version):
//   * PM_CLONES: GCC target_clones (baseline, x86-64-v3, x86-64-v4 chosen at load time) for kernels
//     that the compiler vectorises well by itself (normalize.cpp's selection passes);
//   * kernels_{base,v3,v4}.cpp: the token/layer-axis kernels compiled once per instruction set with
//     -march (CMakeLists.txt), because their correctly rounded division needs the fma intrinsic of
//     each set; kernels.cpp picks one table of them at first use.
#pragma once

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    defined(__has_attribute)
#if __has_attribute(target_clones)
#define PM_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#endif
#endif
#ifndef PM_CLONES
#define PM_CLONES
#endif

#define PM_INLINE [[gnu::always_inline]] inline
