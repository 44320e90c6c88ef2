// Descriptive and order statistics (include/phasemap/stats/descriptive.hpp).
#include "phasemap/stats/descriptive.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace phasemap::stats {

double mean(std::span<const double> x) {
    if (x.empty()) return kNaN;
    return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
}

double variance(std::span<const double> x, int ddof) {
    if (static_cast<long>(x.size()) <= ddof) return kNaN;
    const double m = mean(x);
    double s = 0;
    for (double v : x) s += (v - m) * (v - m);
    return s / static_cast<double>(static_cast<long>(x.size()) - ddof);
}

double median(std::span<const double> x) {
    std::vector<double> v(x.begin(), x.end());
    std::sort(v.begin(), v.end());
    return quantile_sorted(v, 0.5);
}

std::vector<double> average_ranks(std::span<const double> x) {
    const std::size_t n = x.size();
    std::vector<std::size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
    std::vector<double> r(n);
    for (std::size_t i = 0; i < n;) {
        std::size_t j = i;
        while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) ++j;
        const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
        for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
        i = j + 1;
    }
    return r;
}

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

}  // namespace phasemap::stats
