// Token-axis metrics (METRICS.md §2) with the normalisation modes of §4.
#include "phasemap/metrics/token_axis.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include "phasemap/metrics/kernels.hpp"
#include "phasemap/metrics/mad_scaling.hpp"

namespace phasemap::metrics {

std::string_view to_string(Curvature c) {
    switch (c) {
        case Curvature::one_minus_cos: return "one_minus_cos";
        case Curvature::angle: return "angle";
        case Curvature::second_diff: return "second_diff";
    }
    return "?";
}

std::optional<Curvature> parse_curvature(std::string_view s) {
    if (s == "one_minus_cos") return Curvature::one_minus_cos;
    if (s == "angle") return Curvature::angle;
    if (s == "second_diff") return Curvature::second_diff;
    return std::nullopt;
}

std::string_view to_string(Regime r) {
    switch (r) {
        case Regime::UNDERACTIVE: return "UNDERACTIVE";
        case Regime::ADAPTIVE: return "ADAPTIVE";
        case Regime::TRANSITION: return "TRANSITION";
        case Regime::CHAOTIC: return "CHAOTIC";
    }
    return "?";
}

namespace {

// §2.1–2.4 over the rows rows[0 … T−1]: per token, one pass for ‖h_t‖ and one fused pass that
// forms x_t, v_t = x_t − x_{t−1} and the sums ‖v_t‖², v_t·v_{t−1}, ‖v_t − v_{t−1}‖².
// row_at(t, n2) gives row t and sets n2 = kernels::sumsq of it (called once per row, in order, so
// it may reuse one buffer).
template <class T, class RowAt>
void series_rows(std::size_t n, RowAt row_at, std::size_t d, Curvature c, TokenSeries& out) {
    out.delta.assign(n >= 2 ? n - 1 : 0, 0.0);
    out.curvature.assign(n >= 3 ? n - 2 : 0, 0.0);
    out.ct.assign(n >= 3 ? n - 2 : 0, 0.0);
    if (n == 0) return;
    std::vector<double> xprev(d), vprev(d);
    double prev_delta = 0;
    for (std::size_t t = 0; t < n; ++t) {
        double n2 = 0;
        const T* row = row_at(t, n2);
        if (!std::isfinite(n2))
            throw MetricError("non-finite value in the state of token " + std::to_string(t));
        const int stage = t == 0 ? 0 : (t == 1 ? 1 : 2);
        const kernels::StepSums s = kernels::token_step(row, std::sqrt(n2), xprev.data(), vprev.data(), d, stage);
        if (t == 0) continue;
        const double delta = std::sqrt(s.vv);  // §2.2
        out.delta[t - 1] = delta;
        if (t >= 2) {
            // §2.3: cos taken as 1 when a displacement has zero norm; clamped to [−1, 1].
            const double cosv =
                (delta > 0 && prev_delta > 0) ? std::clamp(s.vp / (delta * prev_delta), -1.0, 1.0) : 1.0;
            double curv = 0;
            switch (c) {
                case Curvature::one_minus_cos: curv = 1.0 - cosv; break;
                case Curvature::angle: curv = std::acos(cosv); break;
                case Curvature::second_diff: curv = std::sqrt(s.ww); break;
            }
            out.curvature[t - 2] = curv;
            out.ct[t - 2] = delta * curv;  // §2.4
        }
        prev_delta = delta;
    }
}

// Rows asked for ahead of the one a series is at (kernels::prefetch): far enough to hide memory
// latency behind two rows' work, near enough to stay in the first-level cache.
constexpr std::size_t kRowsAhead = 2;

template <class T>
std::vector<const T*> row_pointers(const RowsView<T>& v, std::span<const std::uint32_t> order) {
    std::vector<const T*> rows(order.empty() ? v.rows : order.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const std::size_t r = order.empty() ? i : order[i];
        if (r >= v.rows) throw MetricError("token_series: row order refers to a row outside the states");
        rows[i] = v.row(r);
    }
    return rows;
}

}  // namespace

TokenSeries token_series(const RowsView<float>& states, Curvature c) {
    TokenSeries s;
    token_series(states, {}, c, s);
    return s;
}
TokenSeries token_series(const RowsView<double>& states, Curvature c) {
    TokenSeries s;
    token_series(states, {}, c, s);
    return s;
}
void token_series(const RowsView<float>& states, std::span<const std::uint32_t> order, Curvature c, TokenSeries& out) {
    const auto rows = row_pointers(states, order);
    series_rows<float>(
        rows.size(),
        [&](std::size_t t, double& n2) {
            if (t + kRowsAhead < rows.size()) kernels::prefetch(rows[t + kRowsAhead], states.cols * sizeof(float));
            return n2 = kernels::sumsq(rows[t], states.cols), rows[t];
        },
        states.cols, c, out);
}
void token_series(const RowsView<double>& states, std::span<const std::uint32_t> order, Curvature c, TokenSeries& out) {
    const auto rows = row_pointers(states, order);
    series_rows<double>(
        rows.size(), [&](std::size_t t, double& n2) { return n2 = kernels::sumsq(rows[t], states.cols), rows[t]; },
        states.cols, c, out);
}

Value ratio_norm(std::span<const double> ct) {
    const std::size_t n = ct.size();
    if (n < 3)
        return Value::missing("fewer than 3 ct values (" + std::to_string(n) + "; ct needs T ≥ 5 tokens for 3 values)");
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (double x : ct) {
        if (!std::isfinite(x)) return Value::missing("non-finite ct value");
        mx = std::max(mx, x);
        sum += x;
    }
    const double mean = sum / static_cast<double>(n);
    if (mean == 0) return Value::missing("mean ct is 0 (no curvature along the trajectory)");
    // max/mean lies in [1, n] exactly; the clamp only removes last-bit rounding of the mean.
    return Value::of(std::clamp(mx / mean, 1.0, static_cast<double>(n)));
}

std::size_t late_window_size(std::size_t n, double fraction) {
    if (n == 0) return 0;
    const double x = static_cast<double>(n) * fraction;
    const double r = std::round(x);
    const double k = std::fabs(x - r) <= 1e-9 ? r : std::ceil(x);
    return std::clamp<std::size_t>(static_cast<std::size_t>(std::max(k, 0.0)), 1, n);
}

Value late_ct(std::span<const double> ct, double fraction) {
    if (ct.empty()) return Value::missing("no ct values (ct needs T ≥ 3 tokens)");
    const std::size_t k = late_window_size(ct.size(), fraction);
    double sum = 0;
    for (std::size_t i = ct.size() - k; i < ct.size(); ++i) {
        if (!std::isfinite(ct[i])) return Value::missing("non-finite ct value in the late window");
        sum += ct[i];
    }
    return Value::of(sum / static_cast<double>(k));
}

void RegimeCuts::validate() const {
    if (!std::isfinite(underactive_below) || !std::isfinite(adaptive_below) || !std::isfinite(transition_below))
        throw MetricError("regime cut-points must be finite numbers");
    if (!(underactive_below < adaptive_below && adaptive_below < transition_below))
        throw MetricError("regime cut-points must be strictly ascending (UNDERACTIVE < ADAPTIVE < TRANSITION)");
}

RegimeCuts parse_regime_cuts(std::string_view s) {
    double v[3];
    std::size_t i = 0, pos = 0;
    while (true) {
        const std::size_t comma = s.find(',', pos);
        std::string_view part = s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
        if (i == 3) throw MetricError("regime cut-points: expected 3 comma-separated numbers, got more");
        const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v[i]);
        if (ec != std::errc() || end != part.data() + part.size() || part.empty())
            throw MetricError("regime cut-points: '" + std::string(part) + "' is not a number");
        ++i;
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    if (i != 3) throw MetricError("regime cut-points: expected 3 comma-separated numbers, got " + std::to_string(i));
    RegimeCuts c{v[0], v[1], v[2]};
    c.validate();
    return c;
}

Regime classify_regime(double r, const RegimeCuts& cuts) {
    if (r < cuts.underactive_below) return Regime::UNDERACTIVE;
    if (r < cuts.adaptive_below) return Regime::ADAPTIVE;
    if (r < cuts.transition_below) return Regime::TRANSITION;
    return Regime::CHAOTIC;
}

void TokenAxisOptions::validate() const {
    if (!(mad_k > 0) || !std::isfinite(mad_k)) throw MetricError("mad_k must be a positive finite number");
    if (!(ct_clip_k > 0) || !std::isfinite(ct_clip_k)) throw MetricError("ct_clip_k must be a positive finite number");
    if (!(late_window > 0 && late_window <= 1)) throw MetricError("late_window must be in (0, 1]");
    if (!std::isfinite(collapse_threshold)) throw MetricError("collapse_threshold must be a finite number");
    regime_cuts.validate();
}

Value ratio_norm_with_options(std::span<const double> ct, const TokenAxisOptions& opt) {
    if (!opt.ct_clip) return ratio_norm(ct);
    std::vector<double> c(ct.begin(), ct.end());
    ct_clip(c, opt.ct_clip_k);
    return ratio_norm(c);
}

TokenAxisResult token_axis(const RowsView<float>& states, const TokenAxisOptions& opt) {
    opt.validate();
    TokenAxisResult r;
    try {
        if (opt.norm == NormMode::raw) {
            r.series = token_series(states, opt.curvature);
        } else {
            // The normalised rows one at a time (the same values as clipped_mad's, without holding T × d).
            const MadScaling m = mad_scaling(states, opt.mad_k);
            std::vector<double> z(states.cols);
            const std::size_t bytes = states.cols * sizeof(float);
            series_rows<double>(
                states.rows,
                [&](std::size_t t, double& n2) {
                    if (t + kRowsAhead < states.rows) kernels::prefetch(states.row(t + kRowsAhead), bytes);
                    n2 = m.apply(states.row(t), z.data());
                    return static_cast<const double*>(z.data());
                },
                states.cols, opt.curvature, r.series);
        }
    } catch (const MetricError& e) {
        r.missing_reason = e.what();
        r.series = {};
        r.ratio_norm = r.late_ct = Value::missing(r.missing_reason);
        return r;
    }
    r.missing_reason.clear();
    if (opt.ct_clip) {
        std::vector<double> c = r.series.ct;
        r.ct_clip = ct_clip(c, opt.ct_clip_k);
        r.ratio_norm = ratio_norm(c);
    } else {
        r.ratio_norm = ratio_norm(r.series.ct);
    }
    r.late_ct = late_ct(r.series.ct, opt.late_window);
    if (r.late_ct.ok()) r.collapse = r.late_ct.v < opt.collapse_threshold;
    if (r.ratio_norm.ok()) r.regime = classify_regime(r.ratio_norm.v, opt.regime_cuts);
    return r;
}

}  // namespace phasemap::metrics
