// Known-answer tests of the audit statistics against published R / scipy / textbook values and
// hand computations.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <boost/math/distributions/normal.hpp>

#include "phasemap/stats/stats.hpp"

using namespace phasemap::stats;

namespace {

// R's datasets::warpbreaks (Tukey 1977): breaks per loom, wool A/B × tension L/M/H, 9 per cell.
struct Warpbreaks {
    std::vector<double> y;
    std::vector<int> wool, tension;
};
Warpbreaks warpbreaks() {
    const double data[2][3][9] = {
        {{26, 30, 54, 25, 70, 52, 51, 26, 67}, {18, 21, 29, 17, 12, 18, 35, 30, 36}, {36, 21, 24, 18, 10, 43, 28, 15, 26}},
        {{27, 14, 29, 19, 29, 31, 41, 20, 44}, {42, 26, 19, 16, 39, 28, 21, 39, 29}, {20, 21, 24, 17, 13, 15, 15, 16, 28}}};
    Warpbreaks w;
    for (int a = 0; a < 2; ++a)
        for (int t = 0; t < 3; ++t)
            for (double v : data[a][t]) {
                w.y.push_back(v);
                w.wool.push_back(a);
                w.tension.push_back(t);
            }
    return w;
}

}  // namespace

// R 4.x: summary(aov(breaks ~ wool * tension, data = warpbreaks))
//              Df Sum Sq Mean Sq F value   Pr(>F)
// wool          1    451   450.7   3.765 0.058213
// tension       2   2034  1017.1   8.498 0.000693
// wool:tension  2   1003   501.4   4.189 0.021044
// Residuals    48   5745   119.7
TEST(StatsAnova, WarpbreaksWithInteractionMatchesR) {
    const auto w = warpbreaks();
    const auto t = two_way_anova(w.y, w.wool, w.tension, "wool", "tension", true);
    ASSERT_TRUE(t.interaction);
    ASSERT_EQ(t.type1.size(), 4u);
    EXPECT_EQ(t.type1[0].df, 1);
    EXPECT_EQ(t.type1[1].df, 2);
    EXPECT_EQ(t.type1[2].df, 2);
    EXPECT_EQ(t.type1[3].df, 48);
    EXPECT_NEAR(t.type1[0].ss, 450.667, 1e-3);
    EXPECT_NEAR(t.type1[1].ss, 2034.259, 1e-3);
    EXPECT_NEAR(t.type1[2].ss, 1002.778, 1e-3);
    EXPECT_NEAR(t.type1[3].ss, 5745.111, 1e-3);
    EXPECT_NEAR(t.type1[0].F, 3.765, 1e-3);
    EXPECT_NEAR(t.type1[1].F, 8.498, 1e-3);
    EXPECT_NEAR(t.type1[2].F, 4.189, 1e-3);
    EXPECT_NEAR(t.type1[0].p, 0.058213, 1e-5);
    EXPECT_NEAR(t.type1[1].p, 0.000693, 1e-6);
    EXPECT_NEAR(t.type1[2].p, 0.021044, 1e-5);
    EXPECT_NEAR(t.ss_total, 9232.815, 1e-3);
    // Balanced: type II = type I.
    for (std::size_t i = 0; i < 4; ++i) EXPECT_NEAR(t.type2[i].ss, t.type1[i].ss, 1e-8);
    double shares = 0;
    for (const auto& x : t.type1) shares += x.share;
    EXPECT_NEAR(shares, 1.0, 1e-12);
}

// R: summary(aov(breaks ~ wool + tension, data = warpbreaks))
// wool 1 450.7 F 3.339 p 0.07361; tension 2 2034.3 F 7.537 p 0.00138; Residuals 50 6747.9
TEST(StatsAnova, WarpbreaksAdditiveMatchesR) {
    const auto w = warpbreaks();
    const auto t = two_way_anova(w.y, w.wool, w.tension, "wool", "tension", false);
    ASSERT_FALSE(t.interaction);
    ASSERT_EQ(t.type1.size(), 3u);
    EXPECT_NEAR(t.type1[0].ss, 450.667, 1e-3);
    EXPECT_NEAR(t.type1[1].ss, 2034.259, 1e-3);
    EXPECT_NEAR(t.type1[2].ss, 6747.889, 1e-3);
    EXPECT_EQ(t.type1[2].df, 50);
    EXPECT_NEAR(t.type1[0].F, 3.339, 1e-3);
    EXPECT_NEAR(t.type1[1].F, 7.537, 1e-3);
    EXPECT_NEAR(t.type1[0].p, 0.07361, 1e-5);
    EXPECT_NEAR(t.type1[1].p, 0.00138, 1e-5);
}

// Unbalanced: dropping runs makes type I depend on the order and type II differ from type I for
// the first factor, while the last-entered factor's type I SS equals its type II SS.
TEST(StatsAnova, UnbalancedTypeOneVersusTypeTwo) {
    auto w = warpbreaks();
    std::vector<double> y;
    std::vector<int> a, b;
    for (std::size_t i = 0; i < w.y.size(); ++i) {
        if ((w.wool[i] == 0 && w.tension[i] == 0 && i % 9 < 5) || (w.wool[i] == 1 && w.tension[i] == 2 && i % 9 < 3))
            continue;
        y.push_back(w.y[i]);
        a.push_back(w.wool[i]);
        b.push_back(w.tension[i]);
    }
    const auto ab = two_way_anova(y, a, b, "wool", "tension", false);
    const auto ba = two_way_anova(y, b, a, "tension", "wool", false);
    EXPECT_NEAR(ab.type1[1].ss, ab.type2[1].ss, 1e-8);           // tension | wool
    EXPECT_NEAR(ab.type2[0].ss, ba.type1[1].ss, 1e-8);           // wool | tension
    EXPECT_GT(std::abs(ab.type1[0].ss - ab.type2[0].ss), 1.0);   // order matters when unbalanced
    EXPECT_NEAR(ab.type1[0].ss + ab.type1[1].ss, ba.type1[0].ss + ba.type1[1].ss, 1e-8);
}

// R: kruskal.test(Ozone ~ Month, data = airquality)
// Kruskal-Wallis chi-squared = 29.267, df = 4, p-value = 6.901e-06 (116 non-missing values).
TEST(StatsKruskalWallis, AirqualityOzoneByMonth) {
    const std::vector<std::vector<double>> months = {
        {41, 36, 12, 18, 28, 23, 19, 8, 7, 16, 11, 14, 18, 14, 34, 6, 30, 11, 1, 11, 4, 32, 23, 45, 115, 37},
        {29, 71, 39, 23, 21, 37, 20, 12, 13},
        {135, 49, 32, 64, 40, 77, 97, 97, 85, 10, 27, 7, 48, 35, 61, 79, 63, 16, 80, 108, 20, 52, 82, 50, 64, 59},
        {39, 9, 16, 78, 35, 66, 122, 89, 110, 44, 28, 65, 22, 59, 23, 31, 44, 21, 9, 45, 168, 73, 76, 118, 84, 85},
        {96, 78, 73, 91, 47, 32, 20, 23, 21, 24, 44, 21, 28, 9, 13, 46, 18, 13, 24, 16, 13, 23, 36, 7, 14, 30, 14, 18,
         20}};
    std::vector<double> x;
    std::vector<int> g;
    for (std::size_t m = 0; m < months.size(); ++m)
        for (double v : months[m]) {
            x.push_back(v);
            g.push_back(static_cast<int>(m) + 5);
        }
    ASSERT_EQ(x.size(), 116u);
    const auto kw = kruskal_wallis(x, g);
    EXPECT_NEAR(kw.H, 29.267, 5e-4);
    EXPECT_EQ(kw.df, 4);
    EXPECT_NEAR(kw.p, 6.901e-06, 1e-8);
    EXPECT_EQ(kw.groups, 5u);
}

// Wikipedia "Cohen's kappa", worked example: 50 grant proposals, both Yes 20, A yes/B no 5,
// A no/B yes 10, both No 15 → p_o = 0.7, p_e = 0.5, κ = 0.4.
TEST(StatsKappa, WikipediaExample) {
    std::vector<std::string> a, b;
    auto add = [&](const char* x, const char* y, int n) {
        for (int i = 0; i < n; ++i) {
            a.push_back(x);
            b.push_back(y);
        }
    };
    add("Yes", "Yes", 20);
    add("Yes", "No", 5);
    add("No", "Yes", 10);
    add("No", "No", 15);
    EXPECT_NEAR(cohens_kappa(a, b), 0.4, 1e-12);
    EXPECT_DOUBLE_EQ(cohens_kappa(a, a), 1.0);
}

// By hand: a = {0,0,0,1,1,1}, b = {0,0,1,1,2,2}. Σ C(n_ij,2) = 2, Σ C(a_i,2) = 6, Σ C(b_j,2) = 3,
// C(6,2) = 15 → expected 6·3/15 = 1.2, max 4.5 → ARI = 0.8 / 3.3.
TEST(StatsAri, HandComputed) {
    const std::vector<int> a = {0, 0, 0, 1, 1, 1}, b = {0, 0, 1, 1, 2, 2};
    EXPECT_NEAR(adjusted_rand_index(a, b), 0.8 / 3.3, 1e-12);
    EXPECT_DOUBLE_EQ(adjusted_rand_index(a, a), 1.0);
    const std::vector<int> relabel = {5, 5, 5, 2, 2, 2};
    EXPECT_DOUBLE_EQ(adjusted_rand_index(a, relabel), 1.0);
}

// scipy.stats.kendalltau docs: x = [12, 2, 1, 12, 2], y = [1, 4, 7, 1, 0] → τ-b = −0.47140452079103173,
// p = 0.2827454599327748 (normal, no continuity correction). By hand: C = 2, D = 6, x ties 2 pairs,
// y ties 1 pair → −4/√(8·9). With ties the audit uses the continuity-corrected normal: |S| − 1 = 3
// instead of 4 over the same tie-corrected sd, so z = ¾ of scipy's z = Φ⁻¹(1 − p/2).
TEST(StatsKendall, TauBWithTies) {
    const std::vector<double> x = {12, 2, 1, 12, 2}, y = {1, 4, 7, 1, 0};
    const auto k = kendall_tau_b(x, y);
    EXPECT_NEAR(k.tau, -4.0 / std::sqrt(72.0), 1e-12);
    EXPECT_NEAR(k.tau, -0.47140452079103173, 1e-12);
    const boost::math::normal_distribution<double> nd;
    const double z_scipy = boost::math::quantile(nd, 1 - 0.2827454599327748 / 2);
    EXPECT_NEAR(k.p, 2 * boost::math::cdf(boost::math::complement(nd, 0.75 * z_scipy)), 1e-9);
    EXPECT_EQ(k.method, "normal");
    const std::vector<double> same = {1, 2, 3, 4};
    EXPECT_DOUBLE_EQ(kendall_tau_b(same, same).tau, 1.0);
}

// Balanced one-way random effects: REML = the ANOVA (method of moments) estimates
// σ²_a = (MSA − MSE)/n, σ²_e = MSE when MSA > MSE.
TEST(StatsReml, BalancedOneWayEqualsAnovaClosedForm) {
    const std::vector<std::vector<double>> g = {
        {10.1, 11.3, 9.8, 10.6}, {12.4, 13.0, 12.9, 11.8}, {8.7, 9.9, 9.1, 8.4}, {11.0, 10.2, 11.7, 10.9}, {13.5, 12.6, 14.1, 13.2}};
    std::vector<double> y;
    std::vector<int> f;
    for (std::size_t i = 0; i < g.size(); ++i)
        for (double v : g[i]) {
            y.push_back(v);
            f.push_back(static_cast<int>(i));
        }
    const double a = 5, n = 4;
    double grand = mean(y), ssa = 0, sse = 0;
    for (const auto& grp : g) {
        const double m = mean(grp);
        ssa += n * (m - grand) * (m - grand);
        for (double v : grp) sse += (v - m) * (v - m);
    }
    const double msa = ssa / (a - 1), mse = sse / (a * (n - 1));
    ASSERT_GT(msa, mse);
    const auto r = reml(y, {f});
    ASSERT_TRUE(r.converged);
    ASSERT_EQ(r.sigma2.size(), 2u);
    EXPECT_NEAR(r.sigma2[0], (msa - mse) / n, 1e-7);
    EXPECT_NEAR(r.sigma2[1], mse, 1e-7);
}

// Balanced two-way crossed random effects without replication: REML = (MSA − MSE)/b,
// (MSB − MSE)/a, MSE (from the additive ANOVA).
TEST(StatsReml, BalancedCrossedEqualsAnovaClosedForm) {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> nd;
    const int A = 6, B = 5;
    std::vector<double> ea(A), eb(B), y;
    std::vector<int> fa, fb;
    for (auto& v : ea) v = 2 * nd(rng);
    for (auto& v : eb) v = 1.5 * nd(rng);
    for (int i = 0; i < A; ++i)
        for (int j = 0; j < B; ++j) {
            y.push_back(ea[i] + eb[j] + 0.5 * nd(rng));
            fa.push_back(i);
            fb.push_back(j);
        }
    const auto t = two_way_anova(y, fa, fb, "a", "b", false);
    const double msa = t.type1[0].ms, msb = t.type1[1].ms, mse = t.type1[2].ms;
    ASSERT_GT(msa, mse);
    ASSERT_GT(msb, mse);
    const auto r = reml(y, {fa, fb});
    ASSERT_TRUE(r.converged);
    EXPECT_NEAR(r.sigma2[0], (msa - mse) / B, 1e-6);
    EXPECT_NEAR(r.sigma2[1], (msb - mse) / A, 1e-6);
    EXPECT_NEAR(r.sigma2[2], mse, 1e-6);
}

// By hand (UPGMA): d(a,b) = 2, d(c,d) = 4, d(ab,c) = (6+5)/2, d(ab,d) = (10+9)/2,
// d(ab,cd) = (6+10+5+9)/4 = 7.5 → heights 2, 4, 7.5.
TEST(StatsLinkage, AverageLinkageHandComputed) {
    Eigen::MatrixXd d(4, 4);
    d << 0, 2, 6, 10, 2, 0, 5, 9, 6, 5, 0, 4, 10, 9, 4, 0;
    const auto m = average_linkage(d);
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0].a, 0);
    EXPECT_EQ(m[0].b, 1);
    EXPECT_DOUBLE_EQ(m[0].height, 2);
    EXPECT_EQ(m[1].a, 2);
    EXPECT_EQ(m[1].b, 3);
    EXPECT_DOUBLE_EQ(m[1].height, 4);
    EXPECT_EQ(m[2].a, 4);
    EXPECT_EQ(m[2].b, 5);
    EXPECT_DOUBLE_EQ(m[2].height, 7.5);
    EXPECT_EQ(m[2].size, 4);
    EXPECT_EQ(cut_tree(m, 4, 2), (std::vector<int>{0, 0, 1, 1}));
    EXPECT_EQ(cut_tree(m, 4, 4), (std::vector<int>{0, 1, 2, 3}));
    const auto mnn = mutual_nearest_neighbours(d);
    ASSERT_EQ(mnn.size(), 2u);
    EXPECT_EQ(mnn[0], std::make_pair(0, 1));
    EXPECT_EQ(mnn[1], std::make_pair(2, 3));
}

// Ranks, correlations and two-sample tests against values computed by hand / R.
TEST(StatsStats, RanksCorrelationsTests) {
    const std::vector<double> x = {3, 1, 4, 1, 5};
    EXPECT_EQ(average_ranks(x), (std::vector<double>{3, 1.5, 4, 1.5, 5}));
    // Perfect monotone relation: Spearman 1; Pearson of a line 1.
    const std::vector<double> a = {1, 2, 3, 4, 5, 6}, b = {2, 4, 6, 8, 10, 12}, c = {1, 8, 27, 64, 125, 216};
    EXPECT_NEAR(pearson(a, b).r, 1, 1e-12);
    EXPECT_NEAR(spearman(a, c).r, 1, 1e-12);
    // Reference values computed independently with numpy (t tail by numeric integration of the
    // Student density): r = 0.8285714 (= 14.5 / 17.5 by hand), two-sided p = 0.0415627,
    // 95 % Fisher-z interval 0.0519293 … 0.9806846.
    const std::vector<double> d = {2, 1, 4, 3, 6, 5};
    const auto r = pearson(a, d);
    EXPECT_NEAR(r.r, 14.5 / 17.5, 1e-12);
    EXPECT_NEAR(r.p, 0.0415627, 1e-5);
    EXPECT_NEAR(r.lo, 0.0519293, 1e-6);
    EXPECT_NEAR(r.hi, 0.9806846, 1e-6);
    // Welch (same numpy check): t = −2.6111648, df = 6.9807692, two-sided p = 0.0349388.
    const std::vector<double> g1 = {1, 2, 3, 4}, g2 = {3, 4, 5, 6, 7};
    const auto w = welch_t(g1, g2);
    EXPECT_NEAR(w.statistic, -2.6111648, 1e-6);
    EXPECT_NEAR(w.df, 6.9807692, 1e-6);
    EXPECT_NEAR(w.p_two, 0.0349388, 1e-5);
    EXPECT_LT(w.p_less, 0.05);
    // AUC: perfect separation and reversed.
    const std::vector<double> s = {0.1, 0.2, 0.8, 0.9};
    EXPECT_DOUBLE_EQ(auc(s, std::vector<int>{0, 0, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(auc(s, std::vector<int>{1, 1, 0, 0}), 0.0);
    EXPECT_DOUBLE_EQ(auc(std::vector<double>{1, 1}, std::vector<int>{0, 1}), 0.5);
}

// The empirical ROC curve, against points worked out by hand, and its trapezoid area against
// auc() (the Mann–Whitney form, computed without the curve).
double trapezoid(const std::vector<RocPoint>& r) {
    double a = 0;
    for (size_t i = 1; i < r.size(); ++i) a += (r[i].fpr - r[i - 1].fpr) * (r[i].tpr + r[i - 1].tpr) / 2;
    return a;
}
void expect_points(const std::vector<RocPoint>& got, const std::vector<std::pair<double, double>>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(got[i].fpr, want[i].first, 1e-15) << i;
        EXPECT_NEAR(got[i].tpr, want[i].second, 1e-15) << i;
    }
}
TEST(StatsStats, RocCurveTiesAsOneStepAndItsAreaIsTheAuc) {
    // Scores 0.9 (pos), 0.8 ×3 (pos, neg, neg), 0.3 (pos), 0.1 (neg), a NaN (left out): three
    // positives, three negatives. Thresholds from the top: 0.9 → (0, 1/3); the tied 0.8 group
    // takes one positive and two negatives at once → (2/3, 2/3); 0.3 → (2/3, 1); 0.1 → (1, 1).
    // Area: 2/3 · (1/3 + 2/3)/2 + 1/3 · 1 = 2/3; Mann–Whitney by hand: (3 + 1 + ½ + ½ + 1) / 9 = 2/3.
    const std::vector<double> s = {0.8, 0.9, 0.1, 0.8, std::nan(""), 0.3, 0.8};
    const std::vector<int> l = {0, 1, 0, 1, 1, 1, 0};
    const auto r = roc_curve(s, l);
    expect_points(r, {{0, 0}, {0, 1.0 / 3}, {2.0 / 3, 2.0 / 3}, {2.0 / 3, 1}, {1, 1}});
    EXPECT_NEAR(trapezoid(r), 2.0 / 3, 1e-15);
    EXPECT_NEAR(trapezoid(r), auc(s, l), 1e-15);
    // A perfect and an inverted predictor: the curve runs up the left edge then along the top,
    // or along the bottom then up the right edge.
    const std::vector<double> p = {0.1, 0.2, 0.8, 0.9};
    const auto perfect = roc_curve(p, std::vector<int>{0, 0, 1, 1});
    expect_points(perfect, {{0, 0}, {0, 0.5}, {0, 1}, {0.5, 1}, {1, 1}});
    EXPECT_DOUBLE_EQ(trapezoid(perfect), 1.0);
    const auto inverted = roc_curve(p, std::vector<int>{1, 1, 0, 0});
    expect_points(inverted, {{0, 0}, {0.5, 0}, {1, 0}, {1, 0.5}, {1, 1}});
    EXPECT_DOUBLE_EQ(trapezoid(inverted), 0.0);
    // Every score tied: one diagonal step, area ½; one class only: no curve.
    const auto tied = roc_curve(std::vector<double>{2, 2, 2}, std::vector<int>{1, 0, 0});
    expect_points(tied, {{0, 0}, {1, 1}});
    EXPECT_DOUBLE_EQ(trapezoid(tied), 0.5);
    EXPECT_TRUE(roc_curve(p, std::vector<int>{1, 1, 1, 1}).empty());
    EXPECT_THROW(roc_curve(p, std::vector<int>{1, 0}), std::invalid_argument);
}

TEST(StatsStats, PercentileIntervalAndPermutationP) {
    std::vector<double> v;
    for (int i = 0; i <= 100; ++i) v.push_back(i);
    const auto ci = percentile_interval(v, 0.95);
    EXPECT_NEAR(ci.lo, 2.5, 1e-12);
    EXPECT_NEAR(ci.hi, 97.5, 1e-12);
    EXPECT_DOUBLE_EQ(permutation_p(50, v), 52.0 / 102.0);
    // Draws centred at 50 for an estimate of 40: the interval moves down by the bias 10.
    const auto sh = bias_shifted_interval(v, 40, 0.95);
    EXPECT_NEAR(sh.lo, -7.5, 1e-12);
    EXPECT_NEAR(sh.hi, 87.5, 1e-12);
    EXPECT_EQ(derive_seed(1, 2), derive_seed(1, 2));
    EXPECT_NE(derive_seed(1, 2), derive_seed(1, 3));
}
