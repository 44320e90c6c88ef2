// Order statistics used by every summary (METRICS.md §3 "Summary over tokens", §4 MAD, §6).
// Quantiles follow numpy's default method ("linear", Hyndman & Fan type 7) bit for bit:
// h = (n − 1)·q, lo = ⌊h⌋, g = h − lo, result = a + (b − a)·g, or b − (b − a)·(1 − g) when g ≥ 0.5
// (numpy's `_lerp`), with a = x[lo], b = x[lo + 1] of the sorted values.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

// Quantile q ∈ [0, 1] of values already sorted ascending and all finite; NaN when empty.
double quantile_sorted(std::span<const double> sorted, double q);

// Quantile q of the finite values of xs (non-finite dropped); missing when none are finite.
Value quantile(std::span<const double> xs, double q);

// Median (= linear quantile 0.5) of xs, all assumed finite, reordering xs; NaN when empty.
// O(n) selection, used for the per-dimension MAD of §4.
double median_inplace(std::span<double> xs);

// §3 summary over tokens: n = number of finite values; median, q1 (0.25), q3 (0.75) with numpy's
// default linear quantile; each is missing ("no finite values") when n = 0.
struct Summary {
    std::size_t n = 0;
    Value median, q1, q3;
};
Summary summarize(std::span<const double> xs);

// The finite values of xs, sorted ascending.
std::vector<double> finite_sorted(std::span<const double> xs);

}  // namespace phasemap::metrics
