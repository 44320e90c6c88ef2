// Order-destroying baselines (METRICS.md §6): the same values in shuffled token order or shuffled
// layer order, compared with the real value by an empirical p-value.
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
// Shuffles draw from stats' portable RNG, seeded by the caller.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "phasemap/metrics/layer_axis.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/metrics/value.hpp"
#include "phasemap/metrics/views.hpp"
#include "phasemap/stats/rng.hpp"

namespace phasemap::metrics {

// Which tail the p-value counts.
//   greater:   p = (1 + #{shuffled ≥ real}) / (K + 1)   — "is the real value unusually large?"
//   less:      p = (1 + #{shuffled ≤ real}) / (K + 1)   — "is the real value unusually small?"
//   two_sided: min(1, 2 · min(p_greater, p_less))
// K counts the shuffles whose value is defined (see ControlResult::n_valid).
enum class Tail { greater, less, two_sided };
std::string_view to_string(Tail t);
std::optional<Tail> parse_tail(std::string_view s);

// Real value against its shuffled distribution.
struct ControlResult {
    std::string metric;          // e.g. "ratio_norm", "tortuosity"
    Value real;                  // the value with the real order
    std::size_t shuffles = 0;    // K requested
    std::size_t n_valid = 0;     // shuffles with a defined value (the others are dropped)
    // Distribution of the defined shuffled values: mean, population sd (numpy's default ddof = 0),
    // numpy-linear quantiles 2.5 %, 25 %, 50 %, 75 %, 97.5 %. Missing when n_valid = 0.
    Value mean, sd, q025, q25, q50, q75, q975;
    Value p_greater, p_less;     // both one-sided empirical p-values
    Tail tail = Tail::greater;
    Value p_value;               // the one selected by `tail`; in (0, 1]
};

// Compares `real` with `shuffled` (non-finite shuffled values are dropped).
ControlResult compare_with_shuffles(std::string metric, const Value& real, std::span<const double> shuffled,
                                    std::size_t requested, Tail tail);

// Portable draws (phasemap::stats, stats/rng.hpp): uniform_index (rejection sampling, the same
// sequence on every platform, unlike std::uniform_int_distribution) and its Fisher–Yates shuffle.
using stats::shuffle_in_place;
using stats::uniform_index;

// §6 shuffled-token-order baseline of ratio_norm on one layer: the states (normalised once as
// opt.norm says; normalisation is order-independent) are visited in K random orders and
// ratio_norm (with ct_clip when opt.ct_clip) is recomputed for each. Default tail: greater
// (structure concentrates ct in a few tokens, a shuffle spreads it). Deterministic in `seed`.
// Throws MetricError for non-finite states or invalid options.
ControlResult token_order_control(const RowsView<float>& states, const TokenAxisOptions& opt, std::size_t shuffles,
                                  std::uint64_t seed, Tail tail = Tail::greater);

// §6 shuffled-layer-order baseline: for each of K shuffles one random permutation of the captured
// layers is applied to every token, the §3 metrics are recomputed, and the statistic is the median
// over tokens of each metric (as in the §3 summary). Results in LayerMetric order. Default tail:
// less (the real layer order gives a shorter, straighter path than a random order).
// Throws MetricError with fewer than 3 layers or no token with finite states.
std::array<ControlResult, kLayerMetricCount> layer_order_control(const StatesView& states, std::size_t shuffles,
                                                                 std::uint64_t seed, Tail tail = Tail::less);

}  // namespace phasemap::metrics
