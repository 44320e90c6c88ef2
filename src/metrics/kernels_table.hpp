// Internal to src/metrics: one instruction set's row kernels (kernels_impl.hpp), as a table that
// kernels.cpp dispatches to.
#pragma once
#include <cstddef>

#include "phasemap/metrics/kernels.hpp"

namespace phasemap::metrics::kernels {

struct Table {
    double (*sumsq_f)(const float*, std::size_t);
    double (*sumsq_d)(const double*, std::size_t);
    double (*diff_sumsq_f)(const float*, const float*, std::size_t);
    double (*diff_sumsq_d)(const double*, const double*, std::size_t);
    StepSums (*token_step_f)(const float*, double, double*, double*, std::size_t, int);
    StepSums (*token_step_d)(const double*, double, double*, double*, std::size_t, int);
    double (*scale_clamp_sumsq)(const float*, const double*, const double*, const double*, double, double*,
                                std::size_t);
    StepSums (*layer_step_f)(const float*, const float*, double*, std::size_t, bool);
    StepSums (*layer_step_d)(const double*, const double*, double*, std::size_t, bool);
    void (*select_range)(const float*, std::size_t, std::size_t, std::size_t, float*, float*, float*);
    void (*select_histogram)(const float*, std::size_t, std::size_t, const float*, const float*, std::size_t,
                             std::uint32_t*, std::size_t, float*);
    void (*select_windows)(const float*, std::size_t, std::size_t, const SelectWindows&);
    SoftmaxSums (*softmax_sums)(const float*, double, std::size_t);
    TopTwo (*top_two)(const float*, std::size_t);
};

// kernels_base.cpp: any CPU. kernels_v3.cpp / kernels_v4.cpp: x86-64-v3 / v4, built where
// PHASEMAP_ISA_KERNELS is defined (x86-64 with GCC, CMakeLists.txt).
namespace base {
extern const Table table;
}
namespace v3 {
extern const Table table;
}
namespace v4 {
extern const Table table;
}

}  // namespace phasemap::metrics::kernels
