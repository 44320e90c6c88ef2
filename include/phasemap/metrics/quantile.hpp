// Order statistics used by every summary (METRICS.md §3 "Summary over tokens", §4 MAD, §6).
// Quantiles (phasemap::stats, stats/descriptive.hpp) follow numpy's default method ("linear", Hyndman & Fan type 7) bit for bit:
// h = (n − 1)·q, lo = ⌊h⌋, g = h − lo, result = a + (b − a)·g, or b − (b − a)·(1 − g) when g ≥ 0.5
// (numpy's `_lerp`), with a = x[lo], b = x[lo + 1] of the sorted values.
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

#include "phasemap/metrics/value.hpp"
#include "phasemap/stats/descriptive.hpp"

namespace phasemap::metrics {

// The order statistics themselves live in phasemap::stats (the one implementation):
// quantile_sorted, finite_sorted, median_inplace; this header adds the Value-typed summaries.
using stats::finite_sorted;
using stats::median_inplace;
using stats::quantile_sorted;

// Quantile q of the finite values of xs (non-finite dropped); missing when none are finite.
Value quantile(std::span<const double> xs, double q);

// §3 summary over tokens: n = number of finite values; median, q1 (0.25), q3 (0.75) with numpy's
// default linear quantile; each is missing ("no finite values") when n = 0.
struct Summary {
    std::size_t n = 0;
    Value median, q1, q3;
};
Summary summarize(std::span<const double> xs);

}  // namespace phasemap::metrics
