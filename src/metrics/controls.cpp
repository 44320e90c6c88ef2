// Shuffled-token-order and shuffled-layer-order baselines (METRICS.md §6).
#include "phasemap/metrics/controls.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "phasemap/metrics/quantile.hpp"

namespace phasemap::metrics {

std::string_view to_string(Tail t) {
    switch (t) {
        case Tail::greater: return "greater";
        case Tail::less: return "less";
        case Tail::two_sided: return "two_sided";
    }
    return "?";
}

std::optional<Tail> parse_tail(std::string_view s) {
    if (s == "greater") return Tail::greater;
    if (s == "less") return Tail::less;
    if (s == "two_sided") return Tail::two_sided;
    return std::nullopt;
}

ControlResult compare_with_shuffles(std::string metric, const Value& real, std::span<const double> shuffled,
                                    std::size_t requested, Tail tail) {
    ControlResult r;
    r.metric = std::move(metric);
    r.real = real;
    r.shuffles = requested;
    r.tail = tail;
    const std::vector<double> v = finite_sorted(shuffled);
    r.n_valid = v.size();
    if (v.empty()) {
        r.mean = r.sd = r.q025 = r.q25 = r.q50 = r.q75 = r.q975 = Value::missing("no shuffle gave a defined value");
        r.p_greater = r.p_less = r.p_value = Value::missing("no shuffle gave a defined value");
        return r;
    }
    const double n = static_cast<double>(v.size());
    double sum = 0;
    for (double x : v) sum += x;
    const double mean = sum / n;
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    r.mean = Value::of(mean);
    r.sd = Value::of(std::sqrt(ss / n));
    r.q025 = Value::of(quantile_sorted(v, 0.025));
    r.q25 = Value::of(quantile_sorted(v, 0.25));
    r.q50 = Value::of(quantile_sorted(v, 0.5));
    r.q75 = Value::of(quantile_sorted(v, 0.75));
    r.q975 = Value::of(quantile_sorted(v, 0.975));
    if (!real.ok() || !std::isfinite(real.v)) {
        const std::string why = "real value missing: " + (real.ok() ? std::string("not finite") : real.missing_reason);
        r.p_greater = r.p_less = r.p_value = Value::missing(why);
        return r;
    }
    std::size_t ge = 0, le = 0;
    for (double x : v) {
        ge += x >= real.v;
        le += x <= real.v;
    }
    r.p_greater = Value::of((1.0 + static_cast<double>(ge)) / (n + 1.0));
    r.p_less = Value::of((1.0 + static_cast<double>(le)) / (n + 1.0));
    switch (tail) {
        case Tail::greater: r.p_value = r.p_greater; break;
        case Tail::less: r.p_value = r.p_less; break;
        case Tail::two_sided: r.p_value = Value::of(std::min(1.0, 2.0 * std::min(r.p_greater.v, r.p_less.v))); break;
    }
    return r;
}

namespace {

template <class T>
ControlResult token_control_on(const RowsView<T>& rows, const TokenAxisOptions& opt, std::size_t K, std::uint64_t seed,
                               Tail tail) {
    TokenSeries s;
    token_series(rows, {}, opt.curvature, s);
    const Value real = ratio_norm_with_options(s.ct, opt);
    std::mt19937_64 rng(seed);
    std::vector<std::uint32_t> order(rows.rows);
    std::vector<double> shuffled;
    shuffled.reserve(K);
    for (std::size_t k = 0; k < K; ++k) {
        std::iota(order.begin(), order.end(), 0u);
        shuffle_in_place(order, rng);
        token_series(rows, order, opt.curvature, s);
        const Value v = ratio_norm_with_options(s.ct, opt);
        shuffled.push_back(v.ok() ? v.v : kNaN);
    }
    return compare_with_shuffles("ratio_norm", real, shuffled, K, tail);
}

}  // namespace

ControlResult token_order_control(const RowsView<float>& states, const TokenAxisOptions& opt, std::size_t shuffles,
                                  std::uint64_t seed, Tail tail) {
    opt.validate();
    if (states.rows > UINT32_MAX) throw MetricError("token_order_control: too many tokens");
    if (opt.norm == NormMode::raw) return token_control_on(states, opt, shuffles, seed, tail);
    const std::vector<double> z = clipped_mad(states, opt.mad_k);  // order-independent: normalise once
    return token_control_on(RowsView<double>(z.data(), states.rows, states.cols), opt, shuffles, seed, tail);
}

std::array<ControlResult, kLayerMetricCount> layer_order_control(const StatesView& states, std::size_t shuffles,
                                                                 std::uint64_t seed, Tail tail) {
    const std::size_t L = states.layers, T = states.tokens;
    if (L < 3) throw MetricError("layer-order control needs at least 3 captured layers (got " + std::to_string(L) + ")");
    std::vector<std::uint32_t> order(L);
    std::iota(order.begin(), order.end(), 0u);
    std::vector<const float*> rows(L);
    LayerWorkspace ws;
    LayerTrajectory m;
    std::array<std::vector<double>, kLayerMetricCount> per_token;
    for (auto& v : per_token) v.resize(T);
    std::vector<char> usable(T, 1);

    // Median over tokens of each metric for the current `order`; tokens with non-finite states
    // (known from the real order) are skipped.
    auto medians = [&](bool first) {
        for (std::size_t t = 0; t < T; ++t) {
            if (!usable[t]) {
                for (auto& v : per_token) v[t] = kNaN;
                continue;
            }
            for (std::size_t l = 0; l < L; ++l) rows[l] = states.at(t, order[l]);
            if (!layer_trajectory_rows(rows, states.dim, ws, m)) {
                if (!first) throw MetricError("layer-order control: states changed during the control");
                usable[t] = 0;
                for (auto& v : per_token) v[t] = kNaN;
                continue;
            }
            for (std::size_t k = 0; k < kLayerMetricCount; ++k) per_token[k][t] = get(m, static_cast<LayerMetric>(k));
        }
        std::array<Value, kLayerMetricCount> out;
        for (std::size_t k = 0; k < kLayerMetricCount; ++k) out[k] = summarize(per_token[k]).median;
        return out;
    };

    const std::array<Value, kLayerMetricCount> real = medians(true);
    if (std::find(usable.begin(), usable.end(), 1) == usable.end())
        throw MetricError("layer-order control: no token has finite layer states");
    std::array<std::vector<double>, kLayerMetricCount> shuffled;
    std::mt19937_64 rng(seed);
    for (std::size_t k = 0; k < shuffles; ++k) {
        std::iota(order.begin(), order.end(), 0u);
        shuffle_in_place(order, rng);
        const auto med = medians(false);
        for (std::size_t i = 0; i < kLayerMetricCount; ++i) shuffled[i].push_back(med[i].ok() ? med[i].v : kNaN);
    }
    std::array<ControlResult, kLayerMetricCount> out;
    for (std::size_t i = 0; i < kLayerMetricCount; ++i)
        out[i] = compare_with_shuffles(std::string(kLayerMetricNames[i]), real[i], shuffled[i], shuffles, tail);
    return out;
}

}  // namespace phasemap::metrics
