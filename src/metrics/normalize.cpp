// Normalisation modes (METRICS.md §4).
#include "phasemap/metrics/normalize.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

std::string_view to_string(NormMode m) {
    switch (m) {
        case NormMode::raw: return "raw";
        case NormMode::clipped_mad: return "clipped_mad";
    }
    return "?";
}

std::optional<NormMode> parse_norm_mode(std::string_view s) {
    if (s == "raw") return NormMode::raw;
    if (s == "clipped_mad") return NormMode::clipped_mad;
    return std::nullopt;
}

std::vector<double> clipped_mad(const RowsView<float>& states, double k) {
    if (!(k > 0) || !std::isfinite(k)) throw MetricError("clipped_mad: k must be a positive finite number");
    const std::size_t T = states.rows, d = states.cols;
    std::vector<double> out(T * d);
    if (T == 0 || d == 0) return out;
    // Columns are gathered in blocks of kBlock dimensions, so every visit of a state row reads
    // whole cache lines instead of one value per line.
    constexpr std::size_t kBlock = 16;
    std::vector<double> col(kBlock * T), dev(T);
    for (std::size_t j0 = 0; j0 < d; j0 += kBlock) {
        const std::size_t nb = std::min(kBlock, d - j0);
        for (std::size_t t = 0; t < T; ++t) {
            const float* h = states.row(t) + j0;
            for (std::size_t b = 0; b < nb; ++b) {
                const double x = h[b];
                if (!std::isfinite(x))
                    throw MetricError("clipped_mad: non-finite value in the state of token " + std::to_string(t) +
                                      ", dimension " + std::to_string(j0 + b));
                col[b * T + t] = x;
            }
        }
        for (std::size_t b = 0; b < nb; ++b) {
            const double* c = &col[b * T];
            std::copy(c, c + T, dev.begin());
            const double med = median_inplace(dev);
            for (std::size_t t = 0; t < T; ++t) dev[t] = std::fabs(c[t] - med);
            const double mad = median_inplace(dev);
            const double scale = kMadScale * mad + kMadEpsilon;
            for (std::size_t t = 0; t < T; ++t) out[t * d + j0 + b] = std::clamp((c[t] - med) / scale, -k, k);
        }
    }
    return out;
}

CtClipResult ct_clip(std::span<double> ct, double k) {
    if (!(k > 0) || !std::isfinite(k)) throw MetricError("ct_clip: k must be a positive finite number");
    std::vector<double> v;
    v.reserve(ct.size());
    for (double x : ct)
        if (std::isfinite(x)) v.push_back(x);
    CtClipResult r;
    if (v.empty()) {
        r.threshold = kNaN;
        return r;
    }
    const double med = median_inplace(v);
    for (double& x : v) x = std::fabs(x - med);
    const double mad = median_inplace(v);
    r.threshold = med + k * kMadScale * mad;
    for (double& x : ct)
        if (std::isfinite(x) && x > r.threshold) {
            x = r.threshold;
            ++r.n_clipped;
        }
    return r;
}

}  // namespace phasemap::metrics
