// Order statistics (METRICS.md §3 summaries, §4 medians/MAD, §6 control distributions).
#include "phasemap/metrics/quantile.hpp"

#include <algorithm>
#include <cmath>

namespace phasemap::metrics {

// numpy 1.22+ `quantile(..., method="linear")`: virtual index (n − 1)·q, neighbours ⌊h⌋ and
// ⌊h⌋ + 1, `_lerp` switching to the upper form for weights ≥ 0.5; indexes at or beyond n − 1
// take the last value.
double quantile_sorted(std::span<const double> x, double q) {
    const std::size_t n = x.size();
    if (n == 0) return kNaN;
    const double h = static_cast<double>(n - 1) * q;
    if (h >= static_cast<double>(n - 1)) return x[n - 1];
    if (h < 0) return x[0];
    const double lo = std::floor(h);
    const auto i = static_cast<std::size_t>(lo);
    const double g = h - lo;
    const double a = x[i], b = x[i + 1];
    const double diff = b - a;
    return g >= 0.5 ? b - diff * (1 - g) : a + diff * g;
}

std::vector<double> finite_sorted(std::span<const double> xs) {
    std::vector<double> v;
    v.reserve(xs.size());
    for (double x : xs)
        if (std::isfinite(x)) v.push_back(x);
    std::sort(v.begin(), v.end());
    return v;
}

Value quantile(std::span<const double> xs, double q) {
    const auto v = finite_sorted(xs);
    if (v.empty()) return Value::missing("no finite values");
    return Value::of(quantile_sorted(v, q));
}

double median_inplace(std::span<double> xs) {
    const std::size_t n = xs.size();
    if (n == 0) return kNaN;
    const std::size_t mid = n / 2;
    std::nth_element(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(mid), xs.end());
    const double b = xs[mid];
    if (n % 2 == 1) return b;  // h = mid exactly, weight 0
    // Even n: h = mid − 0.5, weight 0.5 → numpy's upper form b − (b − a)·0.5, a = x_(mid−1).
    const double a = *std::max_element(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(mid));
    return b - (b - a) * 0.5;
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
