// Order statistics (METRICS.md §3 summaries, §4 medians/MAD, §6 control distributions).
#include "phasemap/metrics/quantile.hpp"

#include <algorithm>
#include <cmath>

namespace phasemap::metrics {

Value quantile(std::span<const double> xs, double q) {
    const auto v = finite_sorted(xs);
    if (v.empty()) return Value::missing("no finite values");
    return Value::of(quantile_sorted(v, q));
}

Summary summarize(std::span<const double> xs) {
    const auto v = finite_sorted(xs);
    Summary s;
    s.n = v.size();
    if (v.empty()) {
        s.median = s.q1 = s.q3 = Value::missing("no finite values");
        return s;
    }
    s.median = Value::of(quantile_sorted(v, 0.5));
    s.q1 = Value::of(quantile_sorted(v, 0.25));
    s.q3 = Value::of(quantile_sorted(v, 0.75));
    return s;
}

}  // namespace phasemap::metrics
