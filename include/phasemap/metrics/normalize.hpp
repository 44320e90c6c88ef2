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

// §4 clipped_mad, in two steps: the per-dimension centre and scale over the rows of `states` (the
// run's states of one layer), then z_j = clamp((h_j − center_j) / scale_j, −k, k) for any state.
// center_j = median_j and scale_j = 1.4826 · MAD_j + 1e-12 are numpy medians over the rows (a zero
// median is +0); they are found by selection (no sort, no transpose), exactly the order statistics
// a full nth_element would give. Callers that consume the normalised rows one at a time (the token
// axis) apply the scaling row by row instead of holding all of them.
struct MadScaling {
    std::vector<double> center;  // [cols]
    std::vector<double> scale;   // [cols]
    double k = 5.0;
    // z of one state h[0, cols) into out[0, cols).
    void apply(const float* h, double* out) const;
};
// Throws MetricError for non-finite values or k ≤ 0 / non-finite k.
MadScaling mad_scaling(const RowsView<float>& states, double k = 5.0);

// The normalised rows, [rows, cols] float64 row-major (mad_scaling + apply on every row).
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
