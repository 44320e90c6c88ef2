// Statistics of the panel audits; see include/phasemap/audit/stats.hpp for the definitions.
#include "phasemap/audit/stats.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/fisher_f.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>

#include "phasemap/metrics/controls.hpp"
#include "phasemap/metrics/quantile.hpp"

namespace phasemap::audit::stats {

namespace bm = boost::math;

namespace {

void same_size(std::size_t a, std::size_t b, const char* what) {
    if (a != b) throw std::invalid_argument(std::string(what) + ": inputs differ in length");
}

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

// ------------------------------------------------------------------ descriptive
double mean(std::span<const double> x) {
    if (x.empty()) return kNaN;
    return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
}

double variance(std::span<const double> x, int ddof) {
    if (static_cast<long>(x.size()) <= ddof) return kNaN;
    const double m = mean(x);
    double s = 0;
    for (double v : x) s += (v - m) * (v - m);
    return s / static_cast<double>(static_cast<long>(x.size()) - ddof);
}

double median(std::span<const double> x) {
    std::vector<double> v(x.begin(), x.end());
    std::sort(v.begin(), v.end());
    return metrics::quantile_sorted(v, 0.5);
}

std::vector<double> average_ranks(std::span<const double> x) {
    const std::size_t n = x.size();
    std::vector<std::size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
    std::vector<double> r(n);
    for (std::size_t i = 0; i < n;) {
        std::size_t j = i;
        while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) ++j;
        const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
        for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
        i = j + 1;
    }
    return r;
}

// ------------------------------------------------------------------ resampling
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

std::vector<std::size_t> resample_indices(std::size_t n, std::mt19937_64& rng) {
    std::vector<std::size_t> idx(n);
    if (n == 0) return idx;
    for (auto& i : idx) i = static_cast<std::size_t>(metrics::uniform_index(rng, n - 1));
    return idx;
}

bool Interval::ok() const { return std::isfinite(lo) && std::isfinite(hi); }

Interval percentile_interval(std::span<const double> draws, double level) {
    const auto v = metrics::finite_sorted(draws);
    if (v.size() < 2) return {};
    return {metrics::quantile_sorted(v, (1 - level) / 2), metrics::quantile_sorted(v, (1 + level) / 2)};
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

// ------------------------------------------------------------------ linear models
namespace {

struct Cells {
    std::vector<int> a, b;         // level (dense 0..) of each cell
    std::vector<double> n, mean;   // runs and mean per cell
    double ssw = 0;                // pooled within-cell SS
    int na = 0, nb = 0;            // dense level counts
};

std::vector<int> densify(std::span<const int> v, int& count) {
    std::map<int, int> m;
    for (int x : v) m.emplace(x, 0);
    int k = 0;
    for (auto& [x, i] : m) i = k++;
    count = k;
    std::vector<int> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = m[v[i]];
    return out;
}

Cells make_cells(std::span<const double> y, std::span<const int> a0, std::span<const int> b0) {
    Cells c;
    const auto a = densify(a0, c.na);
    const auto b = densify(b0, c.nb);
    std::map<std::pair<int, int>, std::size_t> idx;
    std::vector<double> sum;
    std::vector<std::size_t> cell_of(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) {
        auto [it, fresh] = idx.emplace(std::make_pair(a[i], b[i]), c.n.size());
        if (fresh) {
            c.a.push_back(a[i]);
            c.b.push_back(b[i]);
            c.n.push_back(0);
            sum.push_back(0);
        }
        c.n[it->second] += 1;
        sum[it->second] += y[i];
        cell_of[i] = it->second;
    }
    c.mean.resize(c.n.size());
    for (std::size_t k = 0; k < c.n.size(); ++k) c.mean[k] = sum[k] / c.n[k];
    for (std::size_t i = 0; i < y.size(); ++i) c.ssw += std::pow(y[i] - c.mean[cell_of[i]], 2);
    return c;
}

// Weighted least squares of cell means on an intercept plus dummy codings of the chosen factors;
// returns {RSS over runs, rank}; `fitted` (optional) receives the fitted value of each cell.
std::pair<double, int> fit_cells(const Cells& c, bool use_a, bool use_b, std::vector<double>* fitted = nullptr) {
    const Eigen::Index C = static_cast<Eigen::Index>(c.n.size());
    const int pa = use_a ? c.na - 1 : 0, pb = use_b ? c.nb - 1 : 0;
    Eigen::MatrixXd X = Eigen::MatrixXd::Zero(C, 1 + pa + pb);
    Eigen::VectorXd y(C);
    for (Eigen::Index k = 0; k < C; ++k) {
        const double w = std::sqrt(c.n[k]);
        X(k, 0) = w;
        if (use_a && c.a[k] > 0) X(k, c.a[k]) = w;
        if (use_b && c.b[k] > 0) X(k, 1 + pa + c.b[k] - 1) = w;
        y(k) = w * c.mean[k];
    }
    Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(X);
    qr.setThreshold(1e-10);
    const Eigen::VectorXd beta = qr.solve(y);
    const Eigen::VectorXd fit = X * beta;
    const double rss = (y - fit).squaredNorm();
    if (fitted) {
        fitted->resize(static_cast<std::size_t>(C));
        for (Eigen::Index k = 0; k < C; ++k) (*fitted)[static_cast<std::size_t>(k)] = fit(k) / std::sqrt(c.n[k]);
    }
    return {c.ssw + rss, static_cast<int>(qr.rank())};
}

AnovaTerm term(std::string name, double df, double ss, double ss_total) {
    AnovaTerm t;
    t.term = std::move(name);
    t.df = df;
    t.ss = std::max(0.0, ss);
    t.ms = df > 0 ? t.ss / df : kNaN;
    t.share = ss_total > 0 ? t.ss / ss_total : kNaN;
    return t;
}

void f_tests(std::vector<AnovaTerm>& terms) {
    const AnovaTerm& res = terms.back();
    for (std::size_t i = 0; i + 1 < terms.size(); ++i) {
        auto& t = terms[i];
        if (t.df > 0 && res.df > 0 && res.ms > 0) {
            t.F = t.ms / res.ms;
            t.p = bm::cdf(bm::complement(bm::fisher_f_distribution<double>(t.df, res.df), t.F));
        }
    }
}

}  // namespace

AnovaTable two_way_anova(std::span<const double> y, std::span<const int> a, std::span<const int> b,
                         const std::string& name_a, const std::string& name_b, bool interaction) {
    same_size(y.size(), a.size(), "two_way_anova");
    same_size(y.size(), b.size(), "two_way_anova");
    AnovaTable t;
    t.n = y.size();
    if (y.size() < 2) throw std::invalid_argument("two_way_anova: fewer than 2 observations");
    const Cells c = make_cells(y, a, b);
    const double m = mean(y);
    for (double v : y) t.ss_total += (v - m) * (v - m);
    const double rss0 = t.ss_total;
    const auto [rss_a, rank_a] = fit_cells(c, true, false);
    const auto [rss_b, rank_b] = fit_cells(c, false, true);
    const auto [rss_ab, rank_ab] = fit_cells(c, true, true);
    const double n = static_cast<double>(y.size());
    const double C = static_cast<double>(c.n.size());
    t.interaction = interaction && n - C > 0 && C > rank_ab;
    const double rss_full = t.interaction ? c.ssw : rss_ab;
    const double df_res = t.interaction ? n - C : n - rank_ab;
    const std::string inter = name_a + ":" + name_b;

    t.type1.push_back(term(name_a, rank_a - 1, rss0 - rss_a, t.ss_total));
    t.type1.push_back(term(name_b, rank_ab - rank_a, rss_a - rss_ab, t.ss_total));
    t.type2.push_back(term(name_a, rank_ab - rank_b, rss_b - rss_ab, t.ss_total));
    t.type2.push_back(term(name_b, rank_ab - rank_a, rss_a - rss_ab, t.ss_total));
    if (t.interaction) {
        t.type1.push_back(term(inter, C - rank_ab, rss_ab - c.ssw, t.ss_total));
        t.type2.push_back(term(inter, C - rank_ab, rss_ab - c.ssw, t.ss_total));
    }
    t.type1.push_back(term("Residuals", df_res, rss_full, t.ss_total));
    t.type2.push_back(term("Residuals", df_res, rss_full, t.ss_total));
    f_tests(t.type1);
    f_tests(t.type2);
    return t;
}

std::vector<double> additive_fitted(std::span<const double> y, std::span<const int> a, std::span<const int> b) {
    same_size(y.size(), a.size(), "additive_fitted");
    same_size(y.size(), b.size(), "additive_fitted");
    if (y.empty()) return {};
    const Cells c = make_cells(y, a, b);
    std::vector<double> cell_fit;
    fit_cells(c, true, true, &cell_fit);
    // Map each observation back to its cell through its (dense) levels.
    int na = 0, nb = 0;
    const auto da = densify(a, na);
    const auto db = densify(b, nb);
    std::map<std::pair<int, int>, double> by_cell;
    for (std::size_t k = 0; k < c.n.size(); ++k) by_cell[{c.a[k], c.b[k]}] = cell_fit[k];
    std::vector<double> out(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) out[i] = by_cell[{da[i], db[i]}];
    return out;
}

Reml reml(std::span<const double> y, const std::vector<std::vector<int>>& factors, int max_iter) {
    const std::size_t n = y.size();
    if (n <= 1) throw std::invalid_argument("reml: fewer than 2 observations");
    for (const auto& f : factors) same_size(f.size(), n, "reml");
    const std::size_t K = factors.size();
    // Cells: distinct level combinations.
    std::map<std::vector<int>, std::size_t> cell_id;
    std::vector<std::size_t> cell_of(n);
    std::vector<double> cn, csum;
    std::vector<std::vector<int>> cell_levels;
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<int> key(K);
        for (std::size_t k = 0; k < K; ++k) key[k] = factors[k][i];
        auto [it, fresh] = cell_id.emplace(key, cn.size());
        if (fresh) {
            cn.push_back(0);
            csum.push_back(0);
            cell_levels.push_back(key);
        }
        cn[it->second] += 1;
        csum[it->second] += y[i];
        cell_of[i] = it->second;
    }
    const Eigen::Index C = static_cast<Eigen::Index>(cn.size());
    Eigen::VectorXd ybar(C);
    for (Eigen::Index c = 0; c < C; ++c) ybar(c) = csum[c] / cn[c];
    double ssw = 0;
    for (std::size_t i = 0; i < n; ++i) ssw += std::pow(y[i] - ybar(static_cast<Eigen::Index>(cell_of[i])), 2);
    const double dfw = static_cast<double>(n) - static_cast<double>(C);

    // Z matrices (cells × levels) of each component; the residual's is diag(1/sqrt(n_c)).
    std::vector<Eigen::MatrixXd> Z;
    for (std::size_t k = 0; k < K; ++k) {
        std::map<int, Eigen::Index> lv;
        for (const auto& key : cell_levels) lv.emplace(key[k], 0);
        Eigen::Index j = 0;
        for (auto& [l, idx] : lv) idx = j++;
        Eigen::MatrixXd z = Eigen::MatrixXd::Zero(C, j);
        for (Eigen::Index c = 0; c < C; ++c) z(c, lv[cell_levels[c][k]]) = 1;
        Z.push_back(std::move(z));
    }
    {
        Eigen::MatrixXd z = Eigen::MatrixXd::Zero(C, C);
        for (Eigen::Index c = 0; c < C; ++c) z(c, c) = 1 / std::sqrt(cn[c]);
        Z.push_back(std::move(z));
    }
    const std::size_t P = K + 1;
    const double vy = std::max(variance(y), 1e-300);
    const double floor_e = 1e-10 * vy;

    struct Eval {
        double ll = -std::numeric_limits<double>::infinity();
        Eigen::VectorXd score;
        Eigen::MatrixXd info;
    };
    auto evaluate = [&](const Eigen::VectorXd& th, bool derivs) {
        Eval e;
        Eigen::MatrixXd V = Eigen::MatrixXd::Zero(C, C);
        for (std::size_t k = 0; k < P; ++k) V.noalias() += th(static_cast<Eigen::Index>(k)) * Z[k] * Z[k].transpose();
        Eigen::LLT<Eigen::MatrixXd> llt(V);
        if (llt.info() != Eigen::Success) return e;
        double logdet = 0;
        for (Eigen::Index c = 0; c < C; ++c) logdet += 2 * std::log(llt.matrixL()(c, c));
        const Eigen::MatrixXd Vi = llt.solve(Eigen::MatrixXd::Identity(C, C));
        const Eigen::VectorXd w = Vi * Eigen::VectorXd::Ones(C);
        const double xvx = w.sum();
        const Eigen::MatrixXd Pm = Vi - w * w.transpose() / xvx;
        const Eigen::VectorXd Py = Pm * ybar;
        const double se = th(static_cast<Eigen::Index>(K));
        e.ll = -0.5 * (logdet + std::log(xvx) + ybar.dot(Py));
        if (dfw > 0) e.ll += -0.5 * (dfw * std::log(se) + ssw / se);
        if (!derivs) return e;
        e.score = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(P));
        e.info = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(P), static_cast<Eigen::Index>(P));
        std::vector<Eigen::MatrixXd> PZ(P);
        for (std::size_t k = 0; k < P; ++k) PZ[k] = Pm * Z[k];
        for (std::size_t k = 0; k < P; ++k) {
            const auto ki = static_cast<Eigen::Index>(k);
            const Eigen::MatrixXd Akk = Z[k].transpose() * PZ[k];
            e.score(ki) = -0.5 * Akk.trace() + 0.5 * (Z[k].transpose() * Py).squaredNorm();
            for (std::size_t l = k; l < P; ++l) {
                const Eigen::MatrixXd Akl = Z[k].transpose() * PZ[l];
                e.info(ki, static_cast<Eigen::Index>(l)) = e.info(static_cast<Eigen::Index>(l), ki) =
                    0.5 * Akl.squaredNorm();
            }
        }
        if (dfw > 0) {
            const auto ke = static_cast<Eigen::Index>(K);
            e.score(ke) += -0.5 * dfw / se + 0.5 * ssw / (se * se);
            e.info(ke, ke) += 0.5 * dfw / (se * se);
        }
        return e;
    };

    Reml out;
    out.at_zero.assign(P, false);
    if (!(variance(y) > 0)) {
        // A constant metric: every component is 0 and the likelihood has no maximum (σ²_e → 0).
        out.sigma2.assign(P, 0.0);
        out.at_zero.assign(P, true);
        out.converged = true;
        out.reason = "constant metric: the total variance is 0";
        return out;
    }
    const auto Pi = static_cast<Eigen::Index>(P);
    const auto Ke = static_cast<Eigen::Index>(K);
    // Projected Fisher scoring with an active set. A random component at 0 whose score points out
    // of the feasible region (∂ℓ/∂σ²_k ≤ 0) is held at 0 and the Fisher step is taken in the free
    // components only (the free block of the information is positive definite, so the step is an
    // ascent direction). When a projected Fisher step cannot increase ℓ, a projected gradient step
    // (scaled by the information's diagonal) is tried; the fit has converged when neither moves the
    // estimate and the Karush–Kuhn–Tucker conditions hold.
    auto project = [&](Eigen::VectorXd v) {
        for (Eigen::Index k = 0; k < Pi; ++k) v(k) = std::max(v(k), 0.0);
        v(Ke) = std::max(v(Ke), floor_e);
        return v;
    };
    auto active_set = [&](const Eigen::VectorXd& th, const Eval& e) {
        std::vector<bool> fixed(P, false);
        for (std::size_t k = 0; k < K; ++k) {
            const auto ki = static_cast<Eigen::Index>(k);
            fixed[k] = th(ki) <= 1e-12 * vy && e.score(ki) <= 0;
        }
        return fixed;
    };
    auto kkt = [&](const Eigen::VectorXd& th, const Eval& e) {
        // Scale-free score: ∂ℓ/∂log σ² for a free component, ∂ℓ/∂σ² · var(y) at the boundary.
        for (Eigen::Index k = 0; k < Pi; ++k) {
            const bool boundary = k < Ke && th(k) <= 1e-12 * vy;
            const double g = boundary ? e.score(k) * vy : e.score(k) * th(k);
            if (boundary ? g > 1e-6 : std::abs(g) > 1e-6) return false;
        }
        return true;
    };
    auto try_step = [&](const Eigen::VectorXd& th, const Eval& cur, const Eigen::VectorXd& step, Eigen::VectorXd& cand,
                        Eval& next) {
        double scale = 1;
        for (int h = 0; h < 40; ++h, scale /= 2) {
            cand = project(th + scale * step);
            next = evaluate(cand, false);
            if (next.ll > cur.ll) return true;
        }
        return false;
    };

    // Start: the residual at the pooled within-cell variance, the others sharing var(y).
    Eigen::VectorXd th = Eigen::VectorXd::Constant(Pi, vy / static_cast<double>(P));
    if (dfw > 0) th(Ke) = std::max(ssw / dfw, floor_e);
    Eval cur = evaluate(th, true);
    if (!std::isfinite(cur.ll)) {
        th = Eigen::VectorXd::Constant(Pi, vy);
        cur = evaluate(th, true);
    }
    for (int it = 0; it < max_iter; ++it) {
        out.iterations = it + 1;
        if (cur.score.size() != Pi) break;   // the covariance lost definiteness: no maximum reached
        const auto fixed = active_set(th, cur);
        std::vector<Eigen::Index> freeidx;
        for (std::size_t k = 0; k < P; ++k)
            if (!fixed[k]) freeidx.push_back(static_cast<Eigen::Index>(k));
        const auto F = static_cast<Eigen::Index>(freeidx.size());
        Eigen::MatrixXd If(F, F);
        Eigen::VectorXd gf(F);
        for (Eigen::Index i = 0; i < F; ++i) {
            gf(i) = cur.score(freeidx[static_cast<std::size_t>(i)]);
            for (Eigen::Index j = 0; j < F; ++j)
                If(i, j) = cur.info(freeidx[static_cast<std::size_t>(i)], freeidx[static_cast<std::size_t>(j)]);
        }
        const Eigen::VectorXd sf = If.completeOrthogonalDecomposition().solve(gf);
        Eigen::VectorXd step = Eigen::VectorXd::Zero(Pi);
        for (Eigen::Index i = 0; i < F; ++i) step(freeidx[static_cast<std::size_t>(i)]) = sf(i);
        Eigen::VectorXd cand;
        Eval next;
        bool moved = step.allFinite() && try_step(th, cur, step, cand, next);
        if (!moved) {
            Eigen::VectorXd grad = Eigen::VectorXd::Zero(Pi);
            for (Eigen::Index k = 0; k < Pi; ++k)
                if (!fixed[static_cast<std::size_t>(k)]) grad(k) = cur.score(k) / std::max(cur.info(k, k), 1e-300);
            moved = grad.allFinite() && try_step(th, cur, grad, cand, next);
        }
        if (!moved) {
            out.converged = kkt(th, cur);
            break;
        }
        const double change = (cand - th).cwiseAbs().maxCoeff();
        const double dll = next.ll - cur.ll;
        th = cand;
        cur = evaluate(th, true);
        if (change <= 1e-11 * vy && dll <= 1e-13 * (1 + std::abs(cur.ll))) {
            out.converged = kkt(th, cur);
            break;
        }
    }
    if (!out.converged && cur.score.size() == Pi) out.converged = kkt(th, cur);   // iteration limit reached
    out.loglik = cur.ll;
    out.sigma2.assign(th.data(), th.data() + th.size());
    for (std::size_t k = 0; k < K; ++k)
        if (out.sigma2[k] <= 1e-12 * vy) {
            out.sigma2[k] = 0;
            out.at_zero[k] = true;
        }
    if (!out.converged)
        out.reason = "REML did not reach a maximum (Karush–Kuhn–Tucker conditions fail) after " +
                     std::to_string(out.iterations) + " iterations";
    return out;
}

// ------------------------------------------------------------------ clustering
std::vector<Merge> average_linkage(const Eigen::MatrixXd& d0) {
    const Eigen::Index n = d0.rows();
    if (d0.cols() != n) throw std::invalid_argument("average_linkage: distance matrix is not square");
    Eigen::MatrixXd d = d0;
    std::vector<int> id(static_cast<std::size_t>(n)), size(static_cast<std::size_t>(n), 1);
    std::iota(id.begin(), id.end(), 0);
    std::vector<bool> active(static_cast<std::size_t>(n), true);
    std::vector<Merge> merges;
    for (Eigen::Index step = 0; step + 1 < n; ++step) {
        Eigen::Index bi = -1, bj = -1;
        double best = std::numeric_limits<double>::infinity();
        std::pair<int, int> best_ids{INT32_MAX, INT32_MAX};
        for (Eigen::Index i = 0; i < n; ++i) {
            if (!active[static_cast<std::size_t>(i)]) continue;
            for (Eigen::Index j = i + 1; j < n; ++j) {
                if (!active[static_cast<std::size_t>(j)]) continue;
                const auto ids = std::minmax(id[static_cast<std::size_t>(i)], id[static_cast<std::size_t>(j)]);
                const std::pair<int, int> key{ids.first, ids.second};
                if (d(i, j) < best || (d(i, j) == best && key < best_ids)) {
                    best = d(i, j);
                    best_ids = key;
                    bi = i;
                    bj = j;
                }
            }
        }
        const auto si = static_cast<std::size_t>(bi), sj = static_cast<std::size_t>(bj);
        Merge m;
        m.a = best_ids.first;
        m.b = best_ids.second;
        m.height = best;
        m.size = size[si] + size[sj];
        merges.push_back(m);
        for (Eigen::Index k = 0; k < n; ++k) {
            if (!active[static_cast<std::size_t>(k)] || k == bi || k == bj) continue;
            const double v = (size[si] * d(bi, k) + size[sj] * d(bj, k)) / (size[si] + size[sj]);
            d(bi, k) = d(k, bi) = v;
        }
        active[sj] = false;
        size[si] = m.size;
        id[si] = static_cast<int>(n + step);
    }
    return merges;
}

std::vector<int> cut_tree(const std::vector<Merge>& merges, std::size_t n, std::size_t k) {
    if (k == 0 || k > n) throw std::invalid_argument("cut_tree: k must be in [1, n]");
    std::vector<int> parent(2 * n);
    std::iota(parent.begin(), parent.end(), 0);
    auto find = [&](int x) {
        while (parent[static_cast<std::size_t>(x)] != x) x = parent[static_cast<std::size_t>(x)];
        return x;
    };
    for (std::size_t s = 0; s < n - k && s < merges.size(); ++s) {
        const int root = static_cast<int>(n + s);
        parent[static_cast<std::size_t>(find(merges[s].a))] = root;
        parent[static_cast<std::size_t>(find(merges[s].b))] = root;
    }
    std::map<int, int> label;
    std::vector<int> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const int r = find(static_cast<int>(i));
        auto it = label.emplace(r, static_cast<int>(label.size())).first;
        out[i] = it->second;
    }
    return out;
}

std::vector<std::pair<int, int>> mutual_nearest_neighbours(const Eigen::MatrixXd& d) {
    const Eigen::Index n = d.rows();
    std::vector<Eigen::Index> nn(static_cast<std::size_t>(n), -1);
    for (Eigen::Index i = 0; i < n; ++i) {
        double best = std::numeric_limits<double>::infinity();
        for (Eigen::Index j = 0; j < n; ++j)
            if (j != i && d(i, j) < best) {
                best = d(i, j);
                nn[static_cast<std::size_t>(i)] = j;
            }
    }
    std::vector<std::pair<int, int>> out;
    for (Eigen::Index i = 0; i < n; ++i) {
        const Eigen::Index j = nn[static_cast<std::size_t>(i)];
        if (j > i && nn[static_cast<std::size_t>(j)] == i) out.emplace_back(static_cast<int>(i), static_cast<int>(j));
    }
    return out;
}

}  // namespace phasemap::audit::stats
