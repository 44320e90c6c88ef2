// Internal to src/metrics: how the row kernels are built for several instruction sets.
//
// Every version of a kernel must return the same bits, so files that include this header turn off
// a·b + c → fma contraction; the only fused multiply-adds are the explicit ones of lanes.hpp.
//
// The kernels are compiled once per instruction set by kernels_{base,v3,v4}.cpp with -march
// (CMakeLists.txt), because their correctly rounded division needs the fma intrinsic of each set;
// kernels.cpp picks one table of them at first use.
#pragma once

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define PM_INLINE [[gnu::always_inline]] inline
