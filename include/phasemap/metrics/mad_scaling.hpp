// §4 clipped_mad in two steps (normalize.hpp's clipped_mad is both at once): the per-dimension
// centre and scale over the rows of a run's states of one layer, then the normalised value of any
// state, z_j = clamp((h_j − center_j) / scale_j, −k, k). Callers that consume the normalised rows
// one at a time (the token axis) apply the scaling row by row instead of holding all of them.
#pragma once
#include <vector>

#include "phasemap/metrics/views.hpp"

namespace phasemap::metrics {

// center_j = median_j and scale_j = 1.4826 · MAD_j + 1e-12, numpy medians over the rows (a zero
// median is +0), found by selection (no sort, no transpose): exactly the order statistics a full
// nth_element gives.
struct MadScaling {
    std::vector<double> center;     // [cols]
    std::vector<double> scale;      // [cols]
    std::vector<double> inv_scale;  // [cols], 1 / scale_j (set by mad_scaling; apply divides exactly)
    double k = 5.0;
    // z of one state h[0, cols) into out[0, cols); returns Σ z_j² (kernels::sumsq of out). Throws
    // MetricError when center, scale and inv_scale differ in length.
    double apply(const float* h, double* out) const;
};

// Throws MetricError for non-finite values or k ≤ 0 / non-finite k.
MadScaling mad_scaling(const RowsView<float>& states, double k = 5.0);

}  // namespace phasemap::metrics
