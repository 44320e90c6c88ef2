// Layer-axis metrics: per token, over the sequence of captured layers (METRICS.md §3).
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
#pragma once
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/views.hpp"

namespace phasemap::metrics {

// §3 metrics of one token's layer trajectory h_0 … h_{L'−1}, in float64.
// v_l = h_{l+1} − h_l, speed_l = ‖v_l‖₂, a_l = v_{l+1} − v_l.
struct LayerTrajectory {
    double path_length = 0;            // Σ speed_l
    double displacement = 0;           // ‖h_last − h_first‖₂
    double tortuosity = 0;             // path_length / displacement; NaN when displacement is 0
    double mean_speed = 0;             // mean speed_l
    double speed_cv = 0;               // population std(speed) / mean(speed); 0 when the mean is 0
    double mean_acceleration = 0;      // mean ‖a_l‖₂
    double mean_turning_angle_rad = 0; // mean arccos(clamp(cos(v_l, v_{l+1}), −1, 1)); cos = 1 when a norm is 0
};

enum class LayerMetric { path_length, displacement, tortuosity, mean_speed, speed_cv, mean_acceleration, mean_turning_angle_rad };
inline constexpr std::size_t kLayerMetricCount = 7;
inline constexpr std::array<std::string_view, kLayerMetricCount> kLayerMetricNames = {
    "path_length", "displacement", "tortuosity", "mean_speed", "speed_cv", "mean_acceleration", "mean_turning_angle_rad"};
double get(const LayerTrajectory& m, LayerMetric which);

// §3 for one token (float32 states as captured, or float64 e.g. transformed states).
// Throws MetricError when there are fewer than 3 layers or a non-finite value.
LayerTrajectory layer_trajectory(const RowsView<float>& layers);
LayerTrajectory layer_trajectory(const RowsView<double>& layers);

// Reusable scratch space, so repeated calls do not allocate.
struct LayerWorkspace {
    std::vector<double> v;                       // previous displacement, d values
    std::vector<double> speed, dot, accel;       // per-step sums
};
// §3 on the layer rows rows[0], rows[1], … (pointers, so that a permuted layer order costs
// nothing: §6 shuffled-layer-order control). Returns false (out untouched) when a value is not
// finite; throws MetricError when rows.size() < 3.
bool layer_trajectory_rows(std::span<const float* const> rows, std::size_t dim, LayerWorkspace& ws, LayerTrajectory& out);
bool layer_trajectory_rows(std::span<const double* const> rows, std::size_t dim, LayerWorkspace& ws, LayerTrajectory& out);

// §3 resolved per layer, for one token: the profile over depth behind mean_speed and
// mean_turning_angle_rad. With L' captured layers (row l = h_l):
//   speed[l]         = ‖h_l − h_{l−1}‖₂ = speed_{l−1} of §3 (the step arriving at layer l), l ≥ 1
//   turning_angle[l] = arccos(clamp(cos(v_{l−1}, v_l), −1, 1)) (the turn made at layer l), 1 ≤ l ≤ L'−2
// NaN elsewhere and where a state is not finite; cos = 1 when a step has zero norm (as §3).
// So Σ_l speed = path_length and mean_l turning_angle = mean_turning_angle_rad.
struct LayerSteps {
    std::vector<double> speed, turning_angle;   // L' values each
};
LayerSteps layer_steps(const RowsView<float>& layers);

// §3 for every token of a run, plus the summaries over tokens.
struct LayerAxisResult {
    // Non-empty when the axis could not be computed at all (fewer than 3 captured layers);
    // the arrays below are then empty and the summaries have n = 0.
    std::string missing_reason;
    // values[m][t]: metric m (LayerMetric order) of token t; NaN for tokens listed in token_errors.
    std::array<std::vector<double>, kLayerMetricCount> values;
    // Tokens whose metrics could not be computed, with the reason (non-finite states).
    std::vector<std::pair<std::size_t, std::string>> token_errors;
    // Summary over tokens of each metric (non-finite dropped, e.g. tortuosity when displacement is 0).
    std::array<Summary, kLayerMetricCount> summary;
};
LayerAxisResult layer_axis(const StatesView& states);

}  // namespace phasemap::metrics
