// Bootstrap draws, percentile intervals, permutation p-values (include/phasemap/stats/bootstrap.hpp).
#include "phasemap/stats/bootstrap.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace phasemap::stats {

bool Interval::ok() const { return std::isfinite(lo) && std::isfinite(hi); }

double resample_mean(std::span<const double> xs, Rng& rng) {
    const std::size_t n = xs.size();
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += xs[uniform_index(rng, n - 1)];
    return sum / static_cast<double>(n);
}

std::vector<double> bootstrap_draws(std::span<const double> xs, std::size_t resamples, Statistic s, Rng& rng) {
    const std::size_t n = xs.size();
    if (n == 0) return {};
    std::vector<double> draws(resamples);
    std::vector<double> sample(s == Statistic::median ? n : 0);
    for (auto& d : draws) {
        if (s == Statistic::mean) {
            d = resample_mean(xs, rng);
        } else {
            for (auto& x : sample) x = xs[uniform_index(rng, n - 1)];
            d = median_inplace(sample);
        }
    }
    return draws;
}

Interval percentile_interval(std::span<const double> draws, double level) {
    if (!(level > 0 && level < 1)) throw std::invalid_argument("percentile interval: level must be in (0, 1)");
    const auto v = finite_sorted(draws);
    if (v.size() < 2) return {};
    return {quantile_sorted(v, (1 - level) / 2), quantile_sorted(v, (1 + level) / 2)};
}

Interval bias_shifted_interval(std::span<const double> draws, double estimate, double level) {
    const Interval q = percentile_interval(draws, level);
    if (!q.ok() || !std::isfinite(estimate)) return {};
    double s = 0;
    std::size_t n = 0;
    for (double d : draws)
        if (std::isfinite(d)) {
            s += d;
            ++n;
        }
    const double bias = s / static_cast<double>(n) - estimate;
    return {q.lo - bias, q.hi - bias};
}

BootstrapCi percentile_bootstrap(std::span<const double> xs, std::size_t resamples, Statistic s, Rng& rng,
                                 double level) {
    std::vector<double> v;
    v.reserve(xs.size());
    for (double x : xs)
        if (std::isfinite(x)) v.push_back(x);
    BootstrapCi out;
    out.n = v.size();
    if (v.empty()) return out;
    out.estimate = s == Statistic::mean ? mean(v) : median(v);
    if (v.size() < 2 || resamples == 0) return out;
    out.ci = percentile_interval(bootstrap_draws(v, resamples, s, rng), level);
    return out;
}

double permutation_p(double observed, std::span<const double> permuted) {
    if (!std::isfinite(observed)) return kNaN;
    std::size_t k = 0, ge = 0;
    for (double v : permuted) {
        if (!std::isfinite(v)) continue;
        ++k;
        if (v >= observed - 1e-12 * std::max(1.0, std::abs(observed))) ++ge;
    }
    return static_cast<double>(1 + ge) / static_cast<double>(1 + k);
}

}  // namespace phasemap::stats
