// phasemap::stats — group comparisons, rank and correlation tests, agreement indices. Distributions
// come from Boost.Math (F, χ², normal, Student t). Pure: spans in, plain structs out. NaN means
// "undefined" (documented per function); inputs of different lengths throw std::invalid_argument.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "phasemap/stats/descriptive.hpp"

namespace phasemap::stats {

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

// The empirical ROC curve of `score` (higher = more likely positive): (0, 0), then one point per
// distinct score from the highest down, each the false- and true-positive rates of "positive when
// score ≥ that value" — tied scores move both rates in one step, a diagonal segment — ending at
// (1, 1). Non-finite scores are left out, as in auc(); the trapezoid area under the points equals
// auc(). Empty when one class is empty.
struct RocPoint {
    double fpr = kNaN, tpr = kNaN;
};
std::vector<RocPoint> roc_curve(std::span<const double> score, std::span<const int> positive);

}  // namespace phasemap::stats
