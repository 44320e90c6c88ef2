// Token-axis metrics on one layer's states h_0 … h_{T−1} (METRICS.md §2).
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/value.hpp"
#include "phasemap/metrics/views.hpp"

namespace phasemap::metrics {

// §2.3 curvature variants. cos(v_t, v_{t−1}) is taken as 1 when either displacement has zero
// norm, and is clamped to [−1, 1] (so one_minus_cos ∈ [0, 2] and angle ∈ [0, π] exactly).
enum class Curvature {
    one_minus_cos,  // 1 − cos(v_t, v_{t−1})                    (default)
    angle,          // arccos(clamp(cos, −1, 1)), radians
    second_diff,    // ‖v_t − v_{t−1}‖₂
};
std::string_view to_string(Curvature c);
std::optional<Curvature> parse_curvature(std::string_view s);

// §2.1–2.4 per-token series. Index conventions (T states):
//   delta[i]     = delta_t      for t = i + 1, i = 0 … T−2   (T−1 values; none when T < 2)
//   curvature[i] = curvature_t  for t = i + 2, i = 0 … T−3   (T−2 values; none when T < 3)
//   ct[i]        = ct_t = delta_t · curvature_t, t = i + 2   (T−2 values)
struct TokenSeries {
    std::vector<double> delta, curvature, ct;
};

// §2.1–2.4 on the rows of `states` (unit vectors are taken inside; any state normalisation of §4
// must already be applied). Throws MetricError when a state contains a non-finite value.
TokenSeries token_series(const RowsView<float>& states, Curvature c = Curvature::one_minus_cos);
TokenSeries token_series(const RowsView<double>& states, Curvature c = Curvature::one_minus_cos);
// Same, visiting the rows in the given order (order[i] = row used as token i): the
// shuffled-token-order control of §6. `out` is reused to avoid allocations.
void token_series(const RowsView<float>& states, std::span<const std::uint32_t> order, Curvature c, TokenSeries& out);
void token_series(const RowsView<double>& states, std::span<const std::uint32_t> order, Curvature c, TokenSeries& out);

// §2.5 ratio_norm = max ct / mean ct. Missing (with the reason) when there are fewer than 3 ct
// values, a non-finite ct value, or mean 0. When present, 1 ≤ ratio_norm ≤ ct.size().
Value ratio_norm(std::span<const double> ct);

// §2.6 window of late_ct: ⌈n · fraction⌉ values (fraction ∈ (0, 1], default 1/4). The product is
// rounded to the nearest integer first when it is within 1e-9 of it, so 0.1 · 30 gives 3, not 4.
std::size_t late_window_size(std::size_t n, double fraction);
// §2.6 late_ct = mean of the last late_window_size(n, fraction) ct values; missing when there is
// no ct value or one of the window's values is non-finite.
Value late_ct(std::span<const double> ct, double fraction = 0.25);

// §2.7 regimes on ratio_norm.
enum class Regime { UNDERACTIVE, ADAPTIVE, TRANSITION, CHAOTIC };
std::string_view to_string(Regime r);
// ratio_norm < underactive_below → UNDERACTIVE; < adaptive_below → ADAPTIVE;
// < transition_below → TRANSITION; otherwise CHAOTIC. Defaults: the gap midpoints of §2.7.
struct RegimeCuts {
    double underactive_below = 1.985;
    double adaptive_below = 2.945;
    double transition_below = 3.695;
    // Throws MetricError unless the three cut-points are finite and strictly ascending.
    void validate() const;
};
// Parses "a,b,c" (three numbers, strictly ascending); throws MetricError with the reason otherwise.
RegimeCuts parse_regime_cuts(std::string_view s);
Regime classify_regime(double ratio_norm, const RegimeCuts& cuts = {});

// Options of the token axis; defaults are the spec's defaults.
struct TokenAxisOptions {
    NormMode norm = NormMode::raw;                  // §4 state mode ("norm"); our documented default: raw
    double mad_k = 5.0;                             // §4 clip bound k of clipped_mad ("mad_k")
    Curvature curvature = Curvature::one_minus_cos; // §2.3 ("curvature")
    bool ct_clip = false;                           // §4 series-level ct_clip before ratio_norm ("ct_clip")
    double ct_clip_k = 5.0;                         // §4 k of ct_clip ("ct_clip_k")
    double late_window = 0.25;                      // §2.6 window fraction of late_ct ("late_window")
    double collapse_threshold = 0.001;              // §2.6 collapse = late_ct < threshold ("collapse_threshold")
    RegimeCuts regime_cuts{};                       // §2.7 ("regime_cuts")
    // Throws MetricError for out-of-range options (k ≤ 0, window ∉ (0, 1], bad cut-points, …).
    void validate() const;
};

// Everything the token axis reports for one layer.
struct TokenAxisResult {
    // Non-empty when the axis could not be computed at all (e.g. non-finite states); every value
    // below is then missing with this reason and the series are empty.
    std::string missing_reason;
    TokenSeries series;                  // ct here is never clipped
    std::optional<CtClipResult> ct_clip; // present when options.ct_clip
    Value ratio_norm;                    // on the clipped ct when ct_clip is on
    Value late_ct;                       // on the unclipped ct
    std::optional<bool> collapse;        // late_ct < collapse_threshold; empty when late_ct is missing
    std::optional<Regime> regime;        // empty when ratio_norm is missing
};

// §2 on one layer's rows (applies the normalisation of §4 first). Options are validated
// (MetricError); data problems are reported through missing values, never thrown.
TokenAxisResult token_axis(const RowsView<float>& states, const TokenAxisOptions& opt = {});

// The ratio_norm of `ct` as the token axis computes it (with ct_clip when opt.ct_clip; ct is copied).
Value ratio_norm_with_options(std::span<const double> ct, const TokenAxisOptions& opt);

}  // namespace phasemap::metrics
