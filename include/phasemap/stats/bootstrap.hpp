// phasemap::stats — bootstrap resampling, percentile intervals and permutation p-values: the one
// method behind every interval phasemap prints (audit sections, control audit, monitor evaluation,
// report). Draws come from rng.hpp, so a seed gives the same interval on every platform.
//
// Owns: nothing; pure (spans in, owned values out, nothing kept after the call). Throws:
// std::invalid_argument where stated (shapes, ranges); undefined results are NaN, not errors.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

#include "phasemap/stats/descriptive.hpp"
#include "phasemap/stats/rng.hpp"

namespace phasemap::stats {

struct Interval {
    double lo = kNaN, hi = kNaN;
    bool ok() const;
};

// One bootstrap draw of the mean: n = xs.size() successive xs[uniform_index(rng, n − 1)], summed in
// draw order, divided by n. xs must not be empty.
double resample_mean(std::span<const double> xs, Rng& rng);

// The statistic a bootstrap recomputes on each resample.
enum class Statistic { mean, median };
// `resamples` bootstrap draws of the statistic: each draw resamples xs with n = xs.size()
// successive uniform_index(rng, n − 1) and applies the statistic (mean: the values summed in draw
// order, divided by n — resample_mean; median: median_inplace of the resample). Empty when xs is empty.
std::vector<double> bootstrap_draws(std::span<const double> xs, std::size_t resamples, Statistic s, Rng& rng);

// Percentile interval of the finite draws at `level` (numpy-linear quantiles (1−level)/2 and
// (1+level)/2); NaN bounds when fewer than 2 finite draws. Throws std::invalid_argument unless
// 0 < level < 1.
Interval percentile_interval(std::span<const double> draws, double level = 0.95);
// Bias-shifted percentile interval [q_lo − b, q_hi − b] with the bootstrap bias estimate
// b = mean(draws) − estimate: for statistics whose resamples are shifted against the estimate
// (variance shares and components: resampling adds the noise part of the cell means a second time).
Interval bias_shifted_interval(std::span<const double> draws, double estimate, double level = 0.95);

// A statistic of the finite values of xs with its percentile-bootstrap interval:
// estimate = the statistic of xs; ci = percentile_interval(bootstrap_draws(xs, resamples, s, rng)),
// NaN bounds with fewer than 2 finite values or resamples = 0 (then rng is not advanced).
struct BootstrapCi {
    std::size_t n = 0;           // finite values
    double estimate = kNaN;      // NaN when n = 0
    Interval ci;
};
BootstrapCi percentile_bootstrap(std::span<const double> xs, std::size_t resamples, Statistic s, Rng& rng,
                                 double level = 0.95);

// Empirical permutation p-value, (1 + #{perm ≥ observed}) / (1 + K) over the finite permuted values
// (the observed statistic is oriented so that large = stronger effect). NaN when observed is NaN.
double permutation_p(double observed, std::span<const double> permuted);

}  // namespace phasemap::stats
