// Two-way ANOVA and REML variance components (include/phasemap/stats/linear.hpp).
#include "phasemap/stats/linear.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>

#include <Eigen/Dense>
#include <boost/math/distributions/fisher_f.hpp>

#include "detail.hpp"

namespace phasemap::stats {

namespace bm = boost::math;
using detail::same_size;

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

}  // namespace phasemap::stats
