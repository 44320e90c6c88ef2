#include "phasemap/metrics/token_stats.hpp"

#include <cmath>
#include <limits>

namespace phasemap::metrics {

// One exponential per vocabulary entry: with e_i = exp(l_i − max), z = Σ e_i and p_i = e_i / z,
//   entropy = −Σ p_i ln p_i = ln z + Σ e_i (max − l_i) / z,
//   top1 = 1 / z, second = exp(l_2 − max) / z, surprisal = ln z + max − l_chosen.
// The 1e-300 floor of METRICS.md §1 only changes terms below 1e-297, far under double precision
// of the sum.
TokenProbStats token_prob_stats(std::span<const float> logits, int32_t chosen) {
    TokenProbStats s;
    const size_t n = logits.size();
    if (n == 0) {
        s.entropy = s.top1 = s.margin = s.surprisal = std::numeric_limits<double>::quiet_NaN();
        return s;
    }
    // Largest and second-largest logits (ties: the second equals the first).
    double mx = -std::numeric_limits<double>::infinity(), second = -std::numeric_limits<double>::infinity();
    size_t arg = 0;
    for (size_t i = 0; i < n; ++i) {
        const double v = logits[i];
        if (v > mx) { second = mx; mx = v; arg = i; }
        else if (v > second) { second = v; }
    }
    if (chosen == kChosenIsTop1) chosen = static_cast<int32_t>(arg);
    double z = 0, wsum = 0;
    for (size_t i = 0; i < n; ++i) {
        const double dv = mx - double(logits[i]);
        const double e = std::exp(-dv);
        z += e;
        wsum += e * dv;
    }
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
