// Layer-axis metrics (METRICS.md §3), in float64.
#include "phasemap/metrics/layer_axis.hpp"

#include <algorithm>
#include <cmath>

#include "phasemap/metrics/kernels.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

double get(const LayerTrajectory& m, LayerMetric which) {
    switch (which) {
        case LayerMetric::path_length: return m.path_length;
        case LayerMetric::displacement: return m.displacement;
        case LayerMetric::tortuosity: return m.tortuosity;
        case LayerMetric::mean_speed: return m.mean_speed;
        case LayerMetric::speed_cv: return m.speed_cv;
        case LayerMetric::mean_acceleration: return m.mean_acceleration;
        case LayerMetric::mean_turning_angle_rad: return m.mean_turning_angle_rad;
    }
    return kNaN;
}

namespace {

template <class T>
bool trajectory_rows(std::span<const T* const> rows, std::size_t dim, LayerWorkspace& ws, LayerTrajectory& out) {
    const std::size_t L = rows.size();
    if (L < 3) throw MetricError("layer-axis metrics need at least 3 layers (got " + std::to_string(L) + ")");
    const std::size_t steps = L - 1;  // speeds; steps − 1 accelerations and turning angles
    ws.v.resize(dim);
    ws.speed.resize(steps);
    ws.dot.resize(steps - 1);
    ws.accel.resize(steps - 1);
    // One fused pass per layer step: v_l, ‖v_l‖², v_{l−1}·v_l and ‖v_l − v_{l−1}‖² = ‖a_{l−1}‖².
    for (std::size_t l = 0; l < steps; ++l) {
        const kernels::StepSums s = kernels::layer_step(rows[l], rows[l + 1], ws.v.data(), dim, l == 0);
        // Every state enters some v_l, so a non-finite input always makes some ‖v_l‖² non-finite
        // (finite float32 values cannot overflow a float64 sum of squares; float64 input beyond
        // ~1e150 would overflow and is rejected the same way).
        if (!std::isfinite(s.vv)) return false;
        ws.speed[l] = s.vv;
        if (l > 0) {
            ws.dot[l - 1] = s.vp;
            ws.accel[l - 1] = s.ww;
        }
    }
    double path = 0;
    for (double& s : ws.speed) {
        s = std::sqrt(s);
        path += s;
    }
    const double mean_speed = path / static_cast<double>(steps);
    double var = 0;
    for (double s : ws.speed) var += (s - mean_speed) * (s - mean_speed);
    var /= static_cast<double>(steps);
    double acc = 0, turn = 0;
    for (std::size_t i = 0; i + 1 < steps; ++i) {
        acc += std::sqrt(ws.accel[i]);
        const double a = ws.speed[i], b = ws.speed[i + 1];
        const double c = (a > 0 && b > 0) ? std::clamp(ws.dot[i] / (a * b), -1.0, 1.0) : 1.0;
        turn += std::acos(c);
    }
    const double disp = std::sqrt(kernels::diff_sumsq(rows[L - 1], rows[0], dim));
    out.path_length = path;
    out.displacement = disp;
    out.tortuosity = disp == 0 ? kNaN : path / disp;
    out.mean_speed = mean_speed;
    out.speed_cv = mean_speed == 0 ? 0.0 : std::sqrt(var) / mean_speed;
    out.mean_acceleration = acc / static_cast<double>(steps - 1);
    out.mean_turning_angle_rad = turn / static_cast<double>(steps - 1);
    return true;
}

template <class T>
LayerTrajectory trajectory(const RowsView<T>& layers) {
    if (layers.rows < 3)
        throw MetricError("layer-axis metrics need at least 3 layers (got " + std::to_string(layers.rows) + ")");
    std::vector<const T*> rows(layers.rows);
    for (std::size_t l = 0; l < layers.rows; ++l) rows[l] = layers.row(l);
    LayerWorkspace ws;
    LayerTrajectory m;
    if (!trajectory_rows<T>(rows, layers.cols, ws, m))
        throw MetricError("layer-axis metrics need finite values: the layer states contain NaN or Inf");
    return m;
}

}  // namespace

bool layer_trajectory_rows(std::span<const float* const> rows, std::size_t dim, LayerWorkspace& ws, LayerTrajectory& out) {
    return trajectory_rows<float>(rows, dim, ws, out);
}
bool layer_trajectory_rows(std::span<const double* const> rows, std::size_t dim, LayerWorkspace& ws, LayerTrajectory& out) {
    return trajectory_rows<double>(rows, dim, ws, out);
}
LayerSteps layer_steps(const RowsView<float>& h) {
    const std::size_t L = h.rows, d = h.cols;
    LayerSteps out;
    out.speed.assign(L, kNaN);
    out.turning_angle.assign(L, kNaN);
    std::vector<double> prev(d), cur(d);
    double prev_norm = kNaN;
    for (std::size_t l = 1; l < L; ++l) {
        const float* a = h.row(l - 1);
        const float* b = h.row(l);
        double ss = 0;
        for (std::size_t j = 0; j < d; ++j) {
            cur[j] = double(b[j]) - double(a[j]);
            ss += cur[j] * cur[j];
        }
        const double norm = std::sqrt(ss);
        if (!std::isfinite(norm)) {
            prev_norm = kNaN;
            continue;
        }
        out.speed[l] = norm;
        if (std::isfinite(prev_norm)) {
            double dot = 0;
            for (std::size_t j = 0; j < d; ++j) dot += prev[j] * cur[j];
            const double c = (prev_norm > 0 && norm > 0) ? std::clamp(dot / (prev_norm * norm), -1.0, 1.0) : 1.0;
            out.turning_angle[l - 1] = std::acos(c);
        }
        std::swap(prev, cur);
        prev_norm = norm;
    }
    return out;
}

LayerTrajectory layer_trajectory(const RowsView<float>& layers) { return trajectory(layers); }
LayerTrajectory layer_trajectory(const RowsView<double>& layers) { return trajectory(layers); }

LayerAxisResult layer_axis(const StatesView& states) {
    LayerAxisResult r;
    if (states.layers < 3) {
        r.missing_reason = "layer-axis metrics need at least 3 captured layers (got " + std::to_string(states.layers) + ")";
        return r;
    }
    const std::size_t T = states.tokens;
    for (auto& v : r.values) v.assign(T, kNaN);
    std::vector<const float*> rows(states.layers);
    LayerWorkspace ws;
    LayerTrajectory m;
    for (std::size_t t = 0; t < T; ++t) {
        for (std::size_t l = 0; l < states.layers; ++l) rows[l] = states.at(t, l);
        if (!layer_trajectory_rows(rows, states.dim, ws, m)) {
            r.token_errors.emplace_back(t, "non-finite value in the layer states of token " + std::to_string(t));
            continue;
        }
        for (std::size_t k = 0; k < kLayerMetricCount; ++k) r.values[k][t] = get(m, static_cast<LayerMetric>(k));
    }
    for (std::size_t k = 0; k < kLayerMetricCount; ++k) r.summary[k] = summarize(r.values[k]);
    return r;
}

}  // namespace phasemap::metrics
