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
    std::vector<double> center;  // [cols]
    std::vector<double> scale;   // [cols]
    double k = 5.0;
    // z of one state h[0, cols) into out[0, cols).
    void apply(const float* h, double* out) const;
};

// Throws MetricError for non-finite values or k ≤ 0 / non-finite k.
MadScaling mad_scaling(const RowsView<float>& states, double k = 5.0);

}  // namespace phasemap::metrics
