// Group comparisons, rank and correlation tests (include/phasemap/stats/inference.hpp).
#include "phasemap/stats/inference.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <vector>

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>

#include "detail.hpp"

namespace phasemap::stats {

namespace bm = boost::math;
using detail::same_size;

namespace {

double normal_sf(double z) { return bm::cdf(bm::complement(bm::normal_distribution<double>(), z)); }
double normal_cdf(double z) { return bm::cdf(bm::normal_distribution<double>(), z); }
double normal_quantile(double p) { return bm::quantile(bm::normal_distribution<double>(), p); }

// Finite pairs of (x, y).
void finite_pairs(std::span<const double> x, std::span<const double> y, std::vector<double>& fx,
                  std::vector<double>& fy) {
    same_size(x.size(), y.size(), "correlation");
    for (std::size_t i = 0; i < x.size(); ++i)
        if (std::isfinite(x[i]) && std::isfinite(y[i])) {
            fx.push_back(x[i]);
            fy.push_back(y[i]);
        }
}

double r_t_test_p(double r, std::size_t n) {
    if (!std::isfinite(r) || n < 3) return kNaN;
    if (std::abs(r) >= 1) return 0.0;
    const double df = static_cast<double>(n - 2);
    const double t = r * std::sqrt(df / (1 - r * r));
    return 2 * bm::cdf(bm::complement(bm::students_t_distribution<double>(df), std::abs(t)));
}

Correlation fisher_interval(double r, std::size_t n, double level, double se_factor) {
    Correlation c;
    c.r = r;
    c.n = n;
    c.p = r_t_test_p(r, n);
    if (std::isfinite(r) && n > 3 && std::abs(r) < 1) {
        const double z = std::atanh(r);
        const double se = std::sqrt(se_factor / static_cast<double>(n - 3));
        const double q = normal_quantile(0.5 + level / 2);
        c.lo = std::tanh(z - q * se);
        c.hi = std::tanh(z + q * se);
    } else if (std::isfinite(r) && std::abs(r) >= 1) {
        c.lo = c.hi = r;
    }
    return c;
}

double pearson_r(std::span<const double> x, std::span<const double> y) {
    const std::size_t n = x.size();
    if (n < 2) return kNaN;
    const double mx = mean(x), my = mean(y);
    double sxy = 0, sxx = 0, syy = 0;
    for (std::size_t i = 0; i < n; ++i) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    if (sxx <= 0 || syy <= 0) return kNaN;
    return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

double choose2(double n) { return n * (n - 1) / 2; }

}  // namespace



// ------------------------------------------------------------------ group comparisons
double eta_squared(std::span<const double> x, std::span<const int> group) {
    same_size(x.size(), group.size(), "eta_squared");
    if (x.empty()) return kNaN;
    const double m = mean(x);
    std::map<int, std::pair<double, double>> g;  // sum, count
    double sst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        auto& e = g[group[i]];
        e.first += x[i];
        e.second += 1;
        sst += (x[i] - m) * (x[i] - m);
    }
    if (!(sst > 0)) return kNaN;
    double ssb = 0;
    for (const auto& [k, e] : g) ssb += e.second * std::pow(e.first / e.second - m, 2);
    return ssb / sst;
}

KruskalWallis kruskal_wallis(std::span<const double> x, std::span<const int> group) {
    same_size(x.size(), group.size(), "kruskal_wallis");
    KruskalWallis kw;
    const std::size_t N = x.size();
    kw.n = N;
    const auto r = average_ranks(x);
    std::map<int, std::pair<double, double>> g;
    for (std::size_t i = 0; i < N; ++i) {
        g[group[i]].first += r[i];
        g[group[i]].second += 1;
    }
    kw.groups = g.size();
    if (kw.groups < 2 || N < 2) return kw;
    const double n = static_cast<double>(N);
    double s = 0;
    for (const auto& [k, e] : g) s += e.first * e.first / e.second;
    double h = 12.0 / (n * (n + 1)) * s - 3 * (n + 1);
    // tie correction
    std::vector<double> sorted(x.begin(), x.end());
    std::sort(sorted.begin(), sorted.end());
    double ties = 0;
    for (std::size_t i = 0; i < N;) {
        std::size_t j = i;
        while (j + 1 < N && sorted[j + 1] == sorted[i]) ++j;
        const double t = static_cast<double>(j - i + 1);
        ties += t * t * t - t;
        i = j + 1;
    }
    const double c = 1 - ties / (n * n * n - n);
    if (!(c > 0)) return kw;  // all values equal
    kw.H = h / c;
    kw.df = static_cast<double>(kw.groups - 1);
    kw.p = bm::cdf(bm::complement(bm::chi_squared_distribution<double>(kw.df), std::max(0.0, kw.H)));
    return kw;
}

double cohens_kappa(std::span<const std::string> a, std::span<const std::string> b) {
    same_size(a.size(), b.size(), "cohens_kappa");
    if (a.empty()) return kNaN;
    const double n = static_cast<double>(a.size());
    std::map<std::string, std::pair<double, double>> marg;
    double agree = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        marg[a[i]].first += 1;
        marg[b[i]].second += 1;
        if (a[i] == b[i]) agree += 1;
    }
    const double po = agree / n;
    double pe = 0;
    for (const auto& [k, m] : marg) pe += (m.first / n) * (m.second / n);
    if (pe >= 1) return po >= 1 ? 1.0 : kNaN;
    return (po - pe) / (1 - pe);
}

double adjusted_rand_index(std::span<const int> a, std::span<const int> b) {
    same_size(a.size(), b.size(), "adjusted_rand_index");
    if (a.size() < 2) return kNaN;
    std::map<std::pair<int, int>, double> nij;
    std::map<int, double> ai, bj;
    for (std::size_t i = 0; i < a.size(); ++i) {
        nij[{a[i], b[i]}] += 1;
        ai[a[i]] += 1;
        bj[b[i]] += 1;
    }
    double sij = 0, sa = 0, sb = 0;
    for (const auto& [k, v] : nij) sij += choose2(v);
    for (const auto& [k, v] : ai) sa += choose2(v);
    for (const auto& [k, v] : bj) sb += choose2(v);
    const double expected = sa * sb / choose2(static_cast<double>(a.size()));
    const double maxi = (sa + sb) / 2;
    if (maxi == expected) return 1.0;
    return (sij - expected) / (maxi - expected);
}

KendallTau kendall_tau_b(std::span<const double> x0, std::span<const double> y0) {
    std::vector<double> x, y;
    finite_pairs(x0, y0, x, y);
    KendallTau k;
    const std::size_t n = x.size();
    k.n = n;
    if (n < 2) return k;
    double C = 0, D = 0;
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = i + 1; j < n; ++j) {
            const double s = (x[i] - x[j]) * (y[i] - y[j]);
            if (s > 0) C += 1;
            else if (s < 0) D += 1;
        }
    auto tie_sums = [](std::vector<double> v, double& t1, double& t2, double& t3) {
        std::sort(v.begin(), v.end());
        t1 = t2 = t3 = 0;
        for (std::size_t i = 0; i < v.size();) {
            std::size_t j = i;
            while (j + 1 < v.size() && v[j + 1] == v[i]) ++j;
            const double t = static_cast<double>(j - i + 1);
            t1 += t * (t - 1) / 2;                     // tied pairs
            t2 += t * (t - 1) * (2 * t + 5);
            t3 += t * (t - 1) * (t - 2);
            i = j + 1;
        }
    };
    double xt1, xt2, xt3, yt1, yt2, yt3;
    tie_sums(x, xt1, xt2, xt3);
    tie_sums(y, yt1, yt2, yt3);
    const double m = static_cast<double>(n);
    const double n0 = m * (m - 1) / 2;
    const double den = std::sqrt((n0 - xt1) * (n0 - yt1));
    if (!(den > 0)) return k;
    k.tau = (C - D) / den;
    double var = (m * (m - 1) * (2 * m + 5) - xt2 - yt2) / 18 + (2 * xt1) * (2 * yt1) / (2 * m * (m - 1));
    if (n > 2) var += xt3 * yt3 / (9 * m * (m - 1) * (m - 2));
    if (var > 0) k.z = (C - D) / std::sqrt(var);
    if (xt1 == 0 && yt1 == 0 && n <= kKendallExactMaxN) {
        k.method = "exact";
        k.p = kendall_exact_p(n, std::min(C, D));
    } else if (var > 0) {
        // Continuity correction of 1 on S = C − D (R's cor.test(continuity = TRUE)).
        const double s = std::max(std::abs(C - D) - 1, 0.0);
        k.method = "normal";
        k.p = std::min(1.0, 2 * normal_sf(s / std::sqrt(var)));
    }
    return k;
}

double kendall_exact_p(std::size_t n, double discordant) {
    if (n < 2) return kNaN;
    const std::size_t pairs = n * (n - 1) / 2;
    const double c = std::min(discordant, static_cast<double>(pairs) - discordant);
    if (c < 0) return kNaN;
    // P_m(k): probability of k inversions in a uniform random permutation of m items (Mahonian
    // numbers / m!), by the recurrence P_m(k) = (1/m) Σ_{j=0}^{m−1} P_{m−1}(k − j).
    std::vector<double> prob(1, 1.0);
    for (std::size_t m = 2; m <= n; ++m) {
        std::vector<double> next(prob.size() + m - 1, 0.0);
        double window = 0;
        for (std::size_t k = 0; k < next.size(); ++k) {
            if (k < prob.size()) window += prob[k];
            if (k >= m && k - m < prob.size()) window -= prob[k - m];
            next[k] = window / static_cast<double>(m);
        }
        prob = std::move(next);
    }
    double tail = 0;
    for (std::size_t k = 0; k < prob.size() && static_cast<double>(k) <= c + 1e-9; ++k) tail += prob[k];
    return std::min(1.0, 2 * tail);
}

Correlation pearson(std::span<const double> x0, std::span<const double> y0, double level) {
    std::vector<double> x, y;
    finite_pairs(x0, y0, x, y);
    return fisher_interval(pearson_r(x, y), x.size(), level, 1.0);
}

Correlation spearman(std::span<const double> x0, std::span<const double> y0, double level) {
    std::vector<double> x, y;
    finite_pairs(x0, y0, x, y);
    const auto rx = average_ranks(x), ry = average_ranks(y);
    return fisher_interval(pearson_r(rx, ry), x.size(), level, 1.06);
}

TwoSample welch_t(std::span<const double> a, std::span<const double> b) {
    TwoSample t;
    if (a.size() < 2 || b.size() < 2) return t;
    const double va = variance(a) / static_cast<double>(a.size());
    const double vb = variance(b) / static_cast<double>(b.size());
    if (!(va + vb > 0)) return t;
    t.statistic = (mean(a) - mean(b)) / std::sqrt(va + vb);
    t.df = (va + vb) * (va + vb) /
           (va * va / static_cast<double>(a.size() - 1) + vb * vb / static_cast<double>(b.size() - 1));
    const bm::students_t_distribution<double> dist(t.df);
    t.p_less = bm::cdf(dist, t.statistic);
    t.p_greater = bm::cdf(bm::complement(dist, t.statistic));
    t.p_two = std::min(1.0, 2 * std::min(t.p_less, t.p_greater));
    return t;
}

TwoSample mann_whitney(std::span<const double> a, std::span<const double> b) {
    TwoSample t;
    if (a.empty() || b.empty()) return t;
    std::vector<double> all(a.begin(), a.end());
    all.insert(all.end(), b.begin(), b.end());
    const auto r = average_ranks(all);
    const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size()), N = na + nb;
    double ra = 0;
    for (std::size_t i = 0; i < a.size(); ++i) ra += r[i];
    const double U = ra - na * (na + 1) / 2;
    std::sort(all.begin(), all.end());
    double ties = 0;
    for (std::size_t i = 0; i < all.size();) {
        std::size_t j = i;
        while (j + 1 < all.size() && all[j + 1] == all[i]) ++j;
        const double tt = static_cast<double>(j - i + 1);
        ties += tt * tt * tt - tt;
        i = j + 1;
    }
    const double mu = na * nb / 2;
    const double var = na * nb / 12 * ((N + 1) - ties / (N * (N - 1)));
    if (!(var > 0)) return t;
    const double sd = std::sqrt(var);
    t.statistic = (U - mu) / sd;
    t.p_greater = normal_sf((U - mu - 0.5) / sd);
    t.p_less = normal_cdf((U - mu + 0.5) / sd);
    t.p_two = std::min(1.0, 2 * std::min(t.p_less, t.p_greater));
    return t;
}

std::vector<RocPoint> roc_curve(std::span<const double> score, std::span<const int> positive) {
    same_size(score.size(), positive.size(), "roc_curve");
    std::vector<std::pair<double, bool>> v;
    for (std::size_t i = 0; i < score.size(); ++i)
        if (std::isfinite(score[i])) v.emplace_back(score[i], positive[i] != 0);
    const auto npos = static_cast<double>(std::count_if(v.begin(), v.end(), [](const auto& x) { return x.second; }));
    const auto nneg = static_cast<double>(v.size()) - npos;
    if (npos == 0 || nneg == 0) return {};
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<RocPoint> out{{0.0, 0.0}};
    double tp = 0, fp = 0;
    for (std::size_t i = 0; i < v.size();) {
        std::size_t j = i;
        for (; j < v.size() && v[j].first == v[i].first; ++j) (v[j].second ? tp : fp) += 1;
        out.push_back({fp / nneg, tp / npos});
        i = j;
    }
    return out;
}

double auc(std::span<const double> score, std::span<const int> positive) {
    same_size(score.size(), positive.size(), "auc");
    std::vector<double> s;
    std::vector<int> p;
    for (std::size_t i = 0; i < score.size(); ++i)
        if (std::isfinite(score[i])) {
            s.push_back(score[i]);
            p.push_back(positive[i] != 0);
        }
    const auto r = average_ranks(s);
    double npos = 0, nneg = 0, rpos = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (p[i]) {
            npos += 1;
            rpos += r[i];
        } else {
            nneg += 1;
        }
    }
    if (npos == 0 || nneg == 0) return kNaN;
    return (rpos - npos * (npos + 1) / 2) / (npos * nneg);
}

}  // namespace phasemap::stats
