// phasemap::stats — linear models: two-way fixed-effects ANOVA (types I and II) and REML variance
// components, by least squares on Eigen. Pure; invalid shapes throw std::invalid_argument.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "phasemap/stats/descriptive.hpp"

namespace phasemap::stats {

struct AnovaTerm {
    std::string term;
    double df = 0, ss = 0, ms = kNaN, F = kNaN, p = kNaN;
    double share = kNaN;   // ss / SS_total (corrected total)
};
struct AnovaTable {
    std::vector<AnovaTerm> type1;   // sequential: A, then B | A, then A:B | A, B; then Residuals
    std::vector<AnovaTerm> type2;   // A | B, B | A, A:B | A, B; then Residuals
    double ss_total = 0;
    std::size_t n = 0;
    bool interaction = false;       // A:B estimated (replicated cells exist)
};
// Two-way fixed-effects ANOVA of y on factors a (levels 0..) and b, by least squares on dummy
// codings (rank-revealing, so empty cells are handled). With `interaction` = true the A:B term is
// fitted when at least one cell holds ≥ 2 runs and residual df remain. SS of a term = increase of
// the residual SS when it is dropped from the relevant model (type I: in entry order; type II: from
// the model with every other term not containing it, as R's car::Anova(type = 2)).
AnovaTable two_way_anova(std::span<const double> y, std::span<const int> a, std::span<const int> b,
                         const std::string& name_a, const std::string& name_b, bool interaction);
// Fitted values of the additive model y ~ a + b (least squares), one per observation.
std::vector<double> additive_fitted(std::span<const double> y, std::span<const int> a, std::span<const int> b);

struct Reml {
    std::vector<double> sigma2;   // one per random factor, then the residual variance (last)
    std::vector<bool> at_zero;    // per component: the maximum lies on the boundary σ²_k = 0
    double loglik = kNaN;         // restricted log-likelihood reached (cell-mean form, see below); NaN when constant
    int iterations = 0;
    bool converged = false;       // the Karush–Kuhn–Tucker conditions hold at the estimate
    std::string reason;           // why no maximum was reached / why there is none ("" when converged normally)
};
// REML variance components of y = μ + Σ_k u_k[factor_k] + e with independent random factors
// (crossed or nested as the level codes say). The data are reduced exactly to cell means (cells =
// distinct level combinations) plus the pooled within-cell SS, so the cost is cubic in the number of
// cells, not in n; `loglik` is −½[log|V| + log(1ᵀV⁻¹1) + ȳᵀPȳ + (n − C) log σ²_e + SS_w/σ²_e] with V the
// covariance of the C cell means, which differs from the full-data restricted log-likelihood by the
// constant ½ Σ_c log n_c. The maximum is found under σ²_k ≥ 0 by projected Fisher scoring with an
// active set (components whose score points below 0 are held there and the others refitted), so an
// estimate on the boundary is the constrained maximum, flagged in `at_zero`. A constant y gives every
// σ² = 0 with `reason` set. Throws std::invalid_argument when n ≤ 1 or shapes differ.
Reml reml(std::span<const double> y, const std::vector<std::vector<int>>& factors, int max_iter = 200);

}  // namespace phasemap::stats
