// Known-answer tests of the REML fit on the boundary and of the exact Kendall null (issue 16).
// The expected values are computed here independently of the code under test: the closed form of
// balanced REML (the restricted likelihood factorises over the ANOVA mean squares), a direct
// numerical maximisation of the full-data restricted likelihood (n × n covariance, Nelder–Mead on
// σ_k, σ²_k = σ_k², then a coordinate polish), and the enumeration of every permutation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include <Eigen/Dense>

#include "phasemap/stats/stats.hpp"

using namespace phasemap::stats;

namespace {

// ---------------------------------------------------------------- balanced closed form
struct Balanced {
    int I = 0, J = 0, r = 0;
    std::vector<double> y;
    std::vector<int> a, b, ab;
    double ssa = 0, ssb = 0, ssab = 0, sse = 0;
};

// y_ijk = a_i + b_j + e_ijk (no interaction planted), I × J cells with r replicates each; the
// sums of squares are computed from cell, row, column and grand means.
Balanced balanced(std::uint64_t seed, int I, int J, int r) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    Balanced d{I, J, r};
    std::vector<double> ea(I), eb(J);
    for (auto& v : ea) v = 1.5 * nd(rng);
    for (auto& v : eb) v = 1.0 * nd(rng);
    std::vector<std::vector<std::vector<double>>> cell(I, std::vector<std::vector<double>>(J));
    for (int i = 0; i < I; ++i)
        for (int j = 0; j < J; ++j)
            for (int k = 0; k < r; ++k) {
                const double v = ea[i] + eb[j] + 0.8 * nd(rng);
                cell[i][j].push_back(v);
                d.y.push_back(v);
                d.a.push_back(i);
                d.b.push_back(j);
                d.ab.push_back(i * J + j);
            }
    const double g = std::accumulate(d.y.begin(), d.y.end(), 0.0) / static_cast<double>(d.y.size());
    std::vector<double> rm(I, 0), cm(J, 0);
    std::vector<std::vector<double>> mm(I, std::vector<double>(J, 0));
    for (int i = 0; i < I; ++i)
        for (int j = 0; j < J; ++j) {
            for (double v : cell[i][j]) mm[i][j] += v / r;
            rm[i] += mm[i][j] / J;
            cm[j] += mm[i][j] / I;
        }
    for (int i = 0; i < I; ++i) d.ssa += J * r * (rm[i] - g) * (rm[i] - g);
    for (int j = 0; j < J; ++j) d.ssb += I * r * (cm[j] - g) * (cm[j] - g);
    for (int i = 0; i < I; ++i)
        for (int j = 0; j < J; ++j) {
            const double ia = mm[i][j] - rm[i] - cm[j] + g;
            d.ssab += r * ia * ia;
            for (double v : cell[i][j]) d.sse += (v - mm[i][j]) * (v - mm[i][j]);
        }
    return d;
}

// ---------------------------------------------------------------- full-data REML
// −½[log|V| + log(1ᵀV⁻¹1) + yᵀPy] with V = Σ σ²_k Z_k Z_kᵀ + σ²_e I over the runs themselves.
double full_reml_loglik(const std::vector<double>& y, const std::vector<std::vector<int>>& f,
                        const std::vector<double>& s2) {
    const int n = static_cast<int>(y.size());
    Eigen::MatrixXd V = Eigen::MatrixXd::Identity(n, n) * s2.back();
    for (std::size_t k = 0; k < f.size(); ++k)
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j)
                if (f[k][i] == f[k][j]) V(i, j) += s2[k];
    Eigen::LLT<Eigen::MatrixXd> llt(V);
    if (llt.info() != Eigen::Success) return -INFINITY;
    double logdet = 0;
    for (int i = 0; i < n; ++i) logdet += 2 * std::log(llt.matrixL()(i, i));
    const Eigen::VectorXd one = Eigen::VectorXd::Ones(n);
    Eigen::VectorXd yy(n);
    for (int i = 0; i < n; ++i) yy(i) = y[i];
    const Eigen::VectorXd vi1 = llt.solve(one), viy = llt.solve(yy);
    const double xvx = one.dot(vi1);
    const double ypy = yy.dot(viy) - std::pow(one.dot(viy), 2) / xvx;
    return -0.5 * (logdet + std::log(xvx) + ypy);
}

// Maximises g over R^d by Nelder–Mead from `x0` (restarted from the best point until a restart no
// longer improves), then polishes each coordinate by golden-section search.
std::vector<double> maximise(const std::function<double(const std::vector<double>&)>& g, std::vector<double> x0,
                             double step) {
    const std::size_t d = x0.size();
    auto nm = [&](std::vector<double> x) {
        std::vector<std::vector<double>> s(d + 1, x);
        for (std::size_t i = 0; i < d; ++i) s[i + 1][i] += step;
        std::vector<double> v(d + 1);
        for (std::size_t i = 0; i <= d; ++i) v[i] = g(s[i]);
        for (int it = 0; it < 20000; ++it) {
            std::vector<std::size_t> o(d + 1);
            std::iota(o.begin(), o.end(), 0);
            std::sort(o.begin(), o.end(), [&](auto p, auto q) { return v[p] > v[q]; });
            if (std::abs(v[o[0]] - v[o[d]]) < 1e-15 * (1 + std::abs(v[o[0]]))) break;
            std::vector<double> c(d, 0);
            for (std::size_t i = 0; i < d; ++i)
                for (std::size_t k = 0; k < d; ++k) c[k] += s[o[i]][k] / static_cast<double>(d);
            auto along = [&](double t) {
                std::vector<double> p(d);
                for (std::size_t k = 0; k < d; ++k) p[k] = c[k] + t * (s[o[d]][k] - c[k]);
                return p;
            };
            const auto xr = along(-1);
            const double fr = g(xr);
            if (fr > v[o[0]]) {
                const auto xe = along(-2);
                const double fe = g(xe);
                if (fe > fr) s[o[d]] = xe, v[o[d]] = fe;
                else s[o[d]] = xr, v[o[d]] = fr;
            } else if (fr > v[o[d - 1]]) {
                s[o[d]] = xr, v[o[d]] = fr;
            } else {
                const auto xc = along(fr > v[o[d]] ? -0.5 : 0.5);
                const double fc = g(xc);
                if (fc > std::max(fr, v[o[d]])) {
                    s[o[d]] = xc, v[o[d]] = fc;
                } else {
                    for (std::size_t i = 1; i <= d; ++i) {
                        for (std::size_t k = 0; k < d; ++k) s[o[i]][k] = s[o[0]][k] + 0.5 * (s[o[i]][k] - s[o[0]][k]);
                        v[o[i]] = g(s[o[i]]);
                    }
                }
            }
        }
        return *std::max_element(s.begin(), s.end(), [&](const auto& p, const auto& q) { return g(p) < g(q); });
    };
    std::vector<double> x = nm(x0);
    for (int restart = 0; restart < 20; ++restart) {
        const auto x2 = nm(x);
        const bool better = g(x2) > g(x) + 1e-14 * std::abs(g(x));
        x = x2;
        if (!better) break;
    }
    const double phi = (std::sqrt(5.0) - 1) / 2;
    for (int sweep = 0; sweep < 30; ++sweep)
        for (std::size_t k = 0; k < d; ++k) {
            double lo = x[k] - step, hi = x[k] + step;
            auto at = [&](double t) {
                auto p = x;
                p[k] = t;
                return g(p);
            };
            for (int it = 0; it < 100; ++it) {
                const double m1 = hi - phi * (hi - lo), m2 = lo + phi * (hi - lo);
                if (at(m1) > at(m2)) hi = m2;
                else lo = m1;
            }
            if (at((lo + hi) / 2) > g(x)) x[k] = (lo + hi) / 2;
        }
    return x;
}

}  // namespace

// Balanced I × J × r crossed design with a planted zero interaction, a data set on which the
// interaction mean square falls below the residual mean square. The restricted likelihood is
// −½ Σ_s [df_s log λ_s + SS_s/λ_s] over s ∈ {A, B, AB, E} with λ_E = σ²_e, λ_AB = σ²_e + r σ²_ab,
// λ_A = λ_AB + rJ σ²_a, λ_B = λ_AB + rI σ²_b; under σ²_ab ≥ 0 its maximum pools AB with E:
// σ²_e = (SS_AB + SS_E)/(df_AB + df_E), σ²_ab = 0, σ²_a = (MS_A − σ²_e)/(rJ), σ²_b = (MS_B − σ²_e)/(rI).
TEST(StatsRemlBoundary, BalancedZeroInteractionEqualsClosedForm) {
    const int I = 5, J = 4, r = 3;
    Balanced d;
    std::uint64_t seed = 1;
    for (;; ++seed) {
        d = balanced(seed, I, J, r);
        const double msab = d.ssab / ((I - 1) * (J - 1)), mse = d.sse / (I * J * (r - 1));
        const double pooled = (d.ssab + d.sse) / ((I - 1) * (J - 1) + I * J * (r - 1));
        if (msab < 0.8 * mse && d.ssa / (I - 1) > 2 * pooled && d.ssb / (J - 1) > 2 * pooled) break;
        ASSERT_LT(seed, 500u) << "no data set with MS_AB < MS_E found";
    }
    const double dfab = (I - 1) * (J - 1), dfe = I * J * (r - 1);
    const double se = (d.ssab + d.sse) / (dfab + dfe);
    const double sa = (d.ssa / (I - 1) - se) / (r * J), sb = (d.ssb / (J - 1) - se) / (r * I);
    const auto fit = reml(d.y, {d.a, d.b, d.ab});
    ASSERT_TRUE(fit.converged) << fit.reason;
    ASSERT_EQ(fit.sigma2.size(), 4u);
    EXPECT_NEAR(fit.sigma2[0], sa, 1e-8);
    EXPECT_NEAR(fit.sigma2[1], sb, 1e-8);
    EXPECT_EQ(fit.sigma2[2], 0.0);
    EXPECT_NEAR(fit.sigma2[3], se, 1e-8);
    EXPECT_EQ(fit.at_zero, (std::vector<bool>{false, false, true, false}));
    // The shares (what the audit prints) follow.
    const double tot = sa + sb + se;
    EXPECT_NEAR(fit.sigma2[0] / (fit.sigma2[0] + fit.sigma2[1] + fit.sigma2[3]), sa / tot, 1e-8);
}

// Unbalanced crossed design with an empty cell and unequal replication; the interaction is planted
// at 0. The expected maximum comes from maximising the full-data restricted likelihood directly.
TEST(StatsRemlBoundary, UnbalancedEmptyCellReachesTheDirectMaximum) {
    const int I = 4, J = 3;
    int found = 0;
    for (std::uint64_t seed = 1; seed < 200 && found < 2; ++seed) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> nd;
        std::vector<double> ea(I), eb(J), y;
        for (auto& v : ea) v = 1.2 * nd(rng);
        for (auto& v : eb) v = 0.9 * nd(rng);
        std::vector<int> fa, fb, fab;
        for (int i = 0; i < I; ++i)
            for (int j = 0; j < J; ++j) {
                if (i == 3 && j == 2) continue;   // the empty cell
                const int reps = 1 + (i + 2 * j) % 3;
                for (int k = 0; k < reps; ++k) {
                    y.push_back(ea[i] + eb[j] + 0.7 * nd(rng));
                    fa.push_back(i);
                    fb.push_back(j);
                    fab.push_back(i * J + j);
                }
            }
        const std::vector<std::vector<int>> f = {fa, fb, fab};
        auto g = [&](const std::vector<double>& s) {
            return full_reml_loglik(y, f, {s[0] * s[0], s[1] * s[1], s[2] * s[2], s[3] * s[3]});
        };
        const double sd = std::sqrt(variance(y));
        const auto best = maximise(g, {sd / 2, sd / 2, sd / 2, sd / 2}, sd / 4);
        const double vy = variance(y);
        if (best[2] * best[2] > 1e-6 * vy) continue;   // want the boundary case: interaction at 0
        ++found;
        const double llmax = g(best);
        const auto fit = reml(y, f);
        ASSERT_TRUE(fit.converged) << fit.reason;
        const double ll = full_reml_loglik(y, f, fit.sigma2);
        EXPECT_NEAR(ll, llmax, 1e-9 * std::abs(llmax)) << "seed " << seed;
        EXPECT_TRUE(fit.at_zero[2]) << "seed " << seed;
        EXPECT_EQ(fit.sigma2[2], 0.0);
        for (int k : {0, 1, 3}) EXPECT_NEAR(fit.sigma2[k], best[k] * best[k], 1e-4 * vy) << "component " << k;
        // The reported log-likelihood is the cell-mean form: the full-data one plus ½ Σ_c log n_c.
        std::map<int, int> nc;
        for (int c : fab) ++nc[c];
        double half_log = 0;
        for (const auto& [c, m] : nc) half_log += 0.5 * std::log(static_cast<double>(m));
        EXPECT_NEAR(fit.loglik, ll + half_log, 1e-9 * std::abs(ll));
    }
    EXPECT_EQ(found, 2) << "fewer than two data sets with the interaction on the boundary";
}

// A constant metric has no variance to share: every σ² is 0 and the reason says so.
TEST(StatsRemlBoundary, ConstantMetric) {
    const std::vector<double> y(12, 0.25);
    std::vector<int> a, b;
    for (int i = 0; i < 12; ++i) {
        a.push_back(i % 3);
        b.push_back(i % 2);
    }
    const auto fit = reml(y, {a, b});
    ASSERT_EQ(fit.sigma2.size(), 3u);
    for (double s : fit.sigma2) EXPECT_EQ(s, 0.0);
    EXPECT_FALSE(fit.reason.empty());
    EXPECT_NE(fit.reason.find("constant"), std::string::npos);
}

// A one-way design whose between-group mean square is below the within one: the REML maximum is
// σ²_a = 0, σ²_e = SS_total/(n − 1) (all observations pooled).
TEST(StatsRemlBoundary, OneWayBelowZeroPoolsEverything) {
    const std::vector<std::vector<double>> g = {{1.0, 3.0, 2.0}, {2.2, 1.1, 2.8}, {3.1, 1.2, 1.6}};
    std::vector<double> y;
    std::vector<int> f;
    for (std::size_t i = 0; i < g.size(); ++i)
        for (double v : g[i]) y.push_back(v), f.push_back(static_cast<int>(i));
    double grand = std::accumulate(y.begin(), y.end(), 0.0) / 9, ssa = 0, sst = 0;
    for (const auto& grp : g) ssa += 3 * std::pow((grp[0] + grp[1] + grp[2]) / 3 - grand, 2);
    for (double v : y) sst += (v - grand) * (v - grand);
    ASSERT_LT(ssa / 2, (sst - ssa) / 6);
    const auto fit = reml(y, {f});
    ASSERT_TRUE(fit.converged);
    EXPECT_EQ(fit.sigma2[0], 0.0);
    EXPECT_TRUE(fit.at_zero[0]);
    EXPECT_NEAR(fit.sigma2[1], sst / 8, 1e-10);
}

// ---------------------------------------------------------------- Kendall exact null
// For n = 3…8: every value of S = C − D that a permutation can give, p = share of the n!
// permutations with |S| at least as large (enumerated), against kendall_tau_b on x = 1…n and
// a permutation y with that S.
TEST(StatsKendallExact, MatchesEnumeratedPermutations) {
    for (int n = 3; n <= 8; ++n) {
        std::vector<int> perm(n);
        std::iota(perm.begin(), perm.end(), 0);
        std::map<int, long> count;            // S → permutations
        std::map<int, std::vector<int>> example;
        long total = 0;
        do {
            int S = 0;
            for (int i = 0; i < n; ++i)
                for (int j = i + 1; j < n; ++j) S += perm[j] > perm[i] ? 1 : -1;
            ++count[S];
            ++total;
            if (!example.count(S)) example[S] = perm;
        } while (std::next_permutation(perm.begin(), perm.end()));
        std::vector<double> x(n);
        std::iota(x.begin(), x.end(), 1.0);
        for (const auto& [S, ex] : example) {
            long atleast = 0;
            for (const auto& [s2, c] : count)
                if (std::abs(s2) >= std::abs(S)) atleast += c;
            const double expected = static_cast<double>(atleast) / static_cast<double>(total);
            const std::vector<double> y(ex.begin(), ex.end());
            const auto k = kendall_tau_b(x, y);
            EXPECT_EQ(k.method, "exact");
            EXPECT_NEAR(k.p, expected, 1e-12) << "n = " << n << ", S = " << S;
            EXPECT_NEAR(k.tau, S / (n * (n - 1) / 2.0), 1e-12);
        }
    }
    // 3 models with one discordant pair: every permutation is at least as extreme, p = 1.
    EXPECT_DOUBLE_EQ(kendall_tau_b(std::vector<double>{1, 2, 3}, std::vector<double>{1, 3, 2}).p, 1.0);
}
