// Statistics used by the panel audits (issue 5). Distributions come from Boost.Math (F, χ², normal,
// Student t), linear algebra from Eigen; resampling uses the portable generator helpers of
// metrics/controls.hpp so bootstrap and permutation results are identical on every platform.
// Every function here is pure: spans in, plain structs out. NaN means "undefined" (documented per
// function); invalid shapes throw std::invalid_argument.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Dense>

namespace phasemap::audit::stats {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ------------------------------------------------------------------ descriptive
double mean(std::span<const double> x);                         // NaN when empty
double variance(std::span<const double> x, int ddof = 1);       // NaN when size ≤ ddof
double median(std::span<const double> x);                       // numpy-linear; NaN when empty
// Average ranks (1-based; ties get the mean of the ranks they span), as R's rank() / scipy rankdata.
std::vector<double> average_ranks(std::span<const double> x);

// ------------------------------------------------------------------ resampling
// splitmix64 of (seed, stream): independent, reproducible seeds for each section / statistic.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);
// Bootstrap index vector: n draws with replacement from [0, n) (metrics::uniform_index).
std::vector<std::size_t> resample_indices(std::size_t n, std::mt19937_64& rng);

struct Interval {
    double lo = kNaN, hi = kNaN;
    bool ok() const;
};
// Percentile interval of the finite draws at `level` (numpy-linear quantiles (1−level)/2 and
// (1+level)/2); NaN bounds when fewer than 2 finite draws.
Interval percentile_interval(std::span<const double> draws, double level = 0.95);
// Bias-shifted percentile interval [q_lo − b, q_hi − b] with the bootstrap bias estimate
// b = mean(draws) − estimate: for statistics whose resamples are shifted against the estimate
// (variance shares and components: resampling adds the noise part of the cell means a second time).
Interval bias_shifted_interval(std::span<const double> draws, double estimate, double level = 0.95);
// Empirical permutation p-value, (1 + #{perm ≥ observed}) / (1 + K) over the finite permuted values
// (the observed statistic is oriented so that large = stronger effect). NaN when observed is NaN.
double permutation_p(double observed, std::span<const double> permuted);

// ------------------------------------------------------------------ group comparisons
// η² = SS_between / SS_total of x grouped by `group` (labels 0..k−1). NaN when SS_total = 0.
double eta_squared(std::span<const double> x, std::span<const int> group);

struct KruskalWallis {
    double H = kNaN;     // tie-corrected statistic
    double df = kNaN;    // groups − 1
    double p = kNaN;     // upper tail of χ²(df) (Boost.Math)
    std::size_t n = 0, groups = 0;
};
// Kruskal–Wallis rank-sum test (R's kruskal.test): H = [12/(N(N+1)) Σ R_i²/n_i − 3(N+1)] / C with the
// tie correction C = 1 − Σ(t³ − t)/(N³ − N). Non-empty groups only; NaN statistic when < 2 groups.
KruskalWallis kruskal_wallis(std::span<const double> x, std::span<const int> group);

// Cohen's κ between two label sequences of the same length: (p_o − p_e)/(1 − p_e) over the union of
// labels; 1 when both raters use one and the same label (p_e = 1 and p_o = 1), NaN when empty.
double cohens_kappa(std::span<const std::string> a, std::span<const std::string> b);

// Adjusted Rand Index (Hubert & Arabie 1985) of two partitions given as labels per item.
// 1 when both partitions are identical and trivial (the 0/0 case), NaN when fewer than 2 items.
double adjusted_rand_index(std::span<const int> a, std::span<const int> b);

struct KendallTau {
    double tau = kNaN;   // τ-b = (C − D) / sqrt((n0 − n1)(n0 − n2))
    double z = kNaN;     // (C − D) / sqrt(Var) with the tie-corrected variance (Kendall 1970; as scipy)
    double p = kNaN;     // two-sided; `method` says how
    std::string method;  // "exact" (no ties, n ≤ kKendallExactMaxN) or "normal" (continuity-corrected); "" when NaN
    std::size_t n = 0;
};
inline constexpr std::size_t kKendallExactMaxN = 33;   // scipy's limit for the exact null
// Pairs with a non-finite value are dropped. NaN when n < 2 or one variable is constant.
// p: without ties and n ≤ 33, the exact permutation null of the number of discordant pairs D,
// p = min(1, 2·P(D' ≤ min(D, n(n−1)/2 − D))) (as scipy's method="exact"); otherwise the normal
// approximation with the tie-corrected variance and a continuity correction of 1 on S = C − D
// (as R's cor.test(method = "kendall", exact = FALSE, continuity = TRUE)).
KendallTau kendall_tau_b(std::span<const double> x, std::span<const double> y);
// Exact two-sided p of Kendall's statistic for n untied pairs with `discordant` discordant pairs.
double kendall_exact_p(std::size_t n, double discordant);

struct Correlation {
    double r = kNaN;
    double lo = kNaN, hi = kNaN;   // Fisher-z interval at `level` (Spearman: Fieller et al. 1957 se)
    double p = kNaN;               // two-sided t test of r = 0 with n − 2 df (Boost.Math)
    std::size_t n = 0;
};
Correlation pearson(std::span<const double> x, std::span<const double> y, double level = 0.95);
Correlation spearman(std::span<const double> x, std::span<const double> y, double level = 0.95);

struct TwoSample {
    double statistic = kNaN;  // Welch: t; Mann–Whitney: z (tie-corrected, continuity-corrected)
    double df = kNaN;         // Welch–Satterthwaite df (Welch only)
    double p_less = kNaN;     // one-sided p for "a < b"
    double p_greater = kNaN;  // one-sided p for "a > b"
    double p_two = kNaN;
};
TwoSample welch_t(std::span<const double> a, std::span<const double> b);
TwoSample mann_whitney(std::span<const double> a, std::span<const double> b);

// Area under the ROC curve of `score` for the positive labels (Mann–Whitney form, ties count ½).
// NaN when one class is empty.
double auc(std::span<const double> score, std::span<const int> positive);

// ------------------------------------------------------------------ linear models
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

// ------------------------------------------------------------------ clustering
struct Merge {
    int a = 0, b = 0;       // cluster ids (scipy convention: leaves 0..n−1, merge k creates n + k)
    double height = 0;      // average-linkage distance at which a and b merge
    int size = 0;           // leaves in the new cluster
};
// UPGMA (average linkage) on a symmetric distance matrix; ties broken by the lowest (a, b) ids.
std::vector<Merge> average_linkage(const Eigen::MatrixXd& d);
// Flat clusters: cut the dendrogram into k clusters (undo the last k − 1 merges); labels 0..k−1 in
// order of each cluster's smallest leaf.
std::vector<int> cut_tree(const std::vector<Merge>& merges, std::size_t n, std::size_t k);
// Mutual nearest neighbours: pairs (i < j) with NN(i) = j and NN(j) = i (ties: the lower index).
std::vector<std::pair<int, int>> mutual_nearest_neighbours(const Eigen::MatrixXd& d);

}  // namespace phasemap::audit::stats
