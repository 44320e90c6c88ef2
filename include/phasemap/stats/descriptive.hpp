// phasemap::stats — descriptive statistics and order statistics, the one implementation used by
// metrics (METRICS.md §3 summaries, §4 MAD, §6 control distributions), audit, steer and report.
// Quantiles follow numpy's default method ("linear", Hyndman & Fan type 7) bit for bit:
// h = (n − 1)·q, lo = ⌊h⌋, g = h − lo, result = a + (b − a)·g, or b − (b − a)·(1 − g) when g ≥ 0.5
// (numpy's `_lerp`), with a = x[lo], b = x[lo + 1] of the sorted values.
// Pure: spans in, values out; owns nothing, throws nothing unless stated. NaN means "undefined".
#pragma once
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

namespace phasemap::stats {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean(std::span<const double> x);                         // NaN when empty; summed in order
double variance(std::span<const double> x, int ddof = 1);       // NaN when size ≤ ddof
double median(std::span<const double> x);                       // numpy-linear; NaN when empty
// Average ranks (1-based; ties get the mean of the ranks they span), as R's rank() / scipy rankdata.
std::vector<double> average_ranks(std::span<const double> x);

// Quantile q ∈ [0, 1] of values already sorted ascending and all finite; NaN when empty.
double quantile_sorted(std::span<const double> sorted, double q);
// The finite values of xs, sorted ascending.
std::vector<double> finite_sorted(std::span<const double> xs);
// Median (= linear quantile 0.5) of xs, all assumed finite, reordering xs; NaN when empty.
// O(n) selection; equal to median() bit for bit.
double median_inplace(std::span<double> xs);

}  // namespace phasemap::stats
