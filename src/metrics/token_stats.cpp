#include "phasemap/metrics/token_stats.hpp"

#include <cmath>
#include <limits>

namespace phasemap::metrics {

TokenProbStats token_prob_stats(std::span<const float> logits, int32_t chosen) {
    TokenProbStats s;
    const size_t n = logits.size();
    if (n == 0) {
        s.entropy = s.top1 = s.margin = s.surprisal = std::numeric_limits<double>::quiet_NaN();
        return s;
    }
    double mx = -std::numeric_limits<double>::infinity();
    size_t arg = 0;
    for (size_t i = 0; i < n; ++i)
        if (double(logits[i]) > mx) { mx = logits[i]; arg = i; }
    double z = 0;
    for (size_t i = 0; i < n; ++i) z += std::exp(double(logits[i]) - mx);
    const double log_z = std::log(z);
    double ent = 0, p1 = 0, p2 = 0;
    for (size_t i = 0; i < n; ++i) {
        const double p = std::exp(double(logits[i]) - mx - log_z);
        ent -= p * std::log(std::max(p, 1e-300));
        if (p > p1) { p2 = p1; p1 = p; }
        else if (p > p2) { p2 = p; }
    }
    s.entropy = ent;
    s.top1 = p1;
    s.margin = p1 - p2;
    s.top1_id = static_cast<int32_t>(arg);
    s.surprisal = (chosen >= 0 && size_t(chosen) < n) ? -(double(logits[size_t(chosen)]) - mx - log_z)
                                                       : std::numeric_limits<double>::quiet_NaN();
    return s;
}

}  // namespace phasemap::metrics
