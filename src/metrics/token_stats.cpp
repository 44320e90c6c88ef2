#include "phasemap/metrics/token_stats.hpp"

#include <cmath>
#include <limits>

#include "phasemap/metrics/kernels.hpp"

namespace phasemap::metrics {

// One exponential per vocabulary entry: with e_i = exp(l_i − max), z = Σ e_i and p_i = e_i / z,
//   entropy = −Σ p_i ln p_i = ln z + Σ e_i (max − l_i) / z,
//   top1 = 1 / z, second = exp(l_2 − max) / z, surprisal = ln z + max − l_chosen.
// The two passes are row kernels (kernels::top_two, kernels::softmax_sums: sixteen lanes, the
// kernels' own exponential, identical bits on every instruction set). The 1e-300 floor of
// METRICS.md §1 only changes terms below 1e-297, far under double precision of the sum, and so
// does the exponential's 0 for terms below e^−700.
TokenProbStats token_prob_stats(std::span<const float> logits, int32_t chosen) {
    TokenProbStats s;
    const size_t n = logits.size();
    if (n == 0) {
        s.entropy = s.top1 = s.margin = s.surprisal = std::numeric_limits<double>::quiet_NaN();
        return s;
    }
    // Largest and second-largest logits (ties: the second equals the first), first index of the largest.
    const kernels::TopTwo top = kernels::top_two(logits.data(), n);
    const double mx = top.first, second = top.second;
    const size_t arg = top.index;
    if (chosen == kChosenIsTop1) chosen = static_cast<int32_t>(arg);
    const kernels::SoftmaxSums sums = kernels::softmax_sums(logits.data(), mx, n);
    const double z = sums.z, wsum = sums.w;
    const double log_z = std::log(z);
    s.entropy = log_z + wsum / z;
    s.top1 = 1.0 / z;
    s.margin = s.top1 - (n > 1 ? std::exp(second - mx) / z : 0.0);
    s.top1_id = static_cast<int32_t>(arg);
    s.surprisal = (chosen >= 0 && size_t(chosen) < n) ? log_z + mx - double(logits[size_t(chosen)])
                                                       : std::numeric_limits<double>::quiet_NaN();
    return s;
}

}  // namespace phasemap::metrics
