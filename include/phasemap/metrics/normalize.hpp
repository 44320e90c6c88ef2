// Normalisation modes (METRICS.md §4).
//   state level  : `raw` (states as captured) or `clipped_mad` (per-dimension robust z-score, clipped);
//   series level : `ct_clip` (clip outlying ct values before ratio_norm), combinable with either.
#pragma once
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "phasemap/metrics/views.hpp"

namespace phasemap::metrics {

inline constexpr double kMadScale = 1.4826;   // MAD → σ of a normal distribution (§4)
inline constexpr double kMadEpsilon = 1e-12;  // added to the scaled MAD (§4)

enum class NormMode { raw, clipped_mad };
std::string_view to_string(NormMode m);
std::optional<NormMode> parse_norm_mode(std::string_view s);  // "raw" | "clipped_mad"

// §4 clipped_mad over the rows of `states` (the run's states of one layer): for every dimension j,
// z = (h_j − median_j) / (1.4826 · MAD_j + 1e-12), clipped to [−k, k]; medians (and the median of
// absolute deviations) are numpy medians over the rows. Returns the normalised rows, [rows, cols]
// float64 row-major. Throws MetricError for non-finite values or k ≤ 0 / non-finite k.
std::vector<double> clipped_mad(const RowsView<float>& states, double k = 5.0);

// §4 ct_clip: values of `ct` above median(ct) + k · 1.4826 · MAD(ct) are set to that threshold,
// in place. Non-finite values are left untouched and ignored by median/MAD. With no finite value
// nothing is clipped and `threshold` is NaN.
struct CtClipResult {
    double threshold = 0;      // median + k · 1.4826 · MAD
    std::size_t n_clipped = 0; // how many values were lowered to the threshold
};
CtClipResult ct_clip(std::span<double> ct, double k = 5.0);

}  // namespace phasemap::metrics
