// Section 3: variance decomposition of a run metric (two-way ANOVA shares and REML components).
#include <algorithm>
#include <set>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

namespace {

// Type-II share of term `t` (0 = A, 1 = B, 2 = A:B) for a permuted response.
double type2_share(const std::vector<double>& y, const std::vector<int>& a, const std::vector<int>& b, std::size_t t,
                   bool interaction) {
    const auto tab = stats::two_way_anova(y, a, b, "a", "b", interaction);
    return t + 1 < tab.type2.size() ? tab.type2[t].share : stats::kNaN;
}

// Permutes `labels` within the strata given by `strata`.
void permute_within(std::vector<int>& labels, const std::vector<std::vector<std::size_t>>& strata,
                    std::mt19937_64& rng, const std::vector<int>& original) {
    for (const auto& s : strata) {
        std::vector<std::uint32_t> order(s.size());
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        stats::shuffle_in_place(order, rng);
        for (std::size_t i = 0; i < s.size(); ++i) labels[s[i]] = original[s[order[i]]];
    }
}

std::vector<std::vector<std::size_t>> strata_of(const std::vector<int>& codes) {
    std::map<int, std::vector<std::size_t>> m;
    for (std::size_t i = 0; i < codes.size(); ++i) m[codes[i]].push_back(i);
    std::vector<std::vector<std::size_t>> out;
    for (auto& [k, v] : m) out.push_back(std::move(v));
    return out;
}

}  // namespace

VarianceDecomposition variance_decomposition(const PanelTable& p, const Options& o) {
    VarianceDecomposition v;
    v.metric = o.metric;
    v.factor = o.factor;
    if (p.runs.empty()) {
        v.reason = "empty panel: no runs";
        return v;
    }
    v.norm = resolve_norm(p, o);
    std::vector<double> y;
    std::vector<std::string> la, lb;
    for (const PanelRun* r : runs_for(p, v.norm)) {
        const double x = metric_of(*r, o.metric);
        if (!std::isfinite(x)) continue;
        y.push_back(x);
        la.push_back(o.factor == "family" ? family_of(p, r->model) : r->model);
        lb.push_back(r->category);
    }
    if (y.empty()) {
        v.reason = "missing metric: no run has a finite " + o.metric;
        return v;
    }
    const Codes A = encode(la), B = encode(lb);
    v.n = y.size();
    v.levels_a = A.names.size();
    v.levels_b = B.names.size();
    if (v.levels_a < 2) {
        v.reason = "single " + o.factor + " (" + A.names[0] + "): the decomposition needs ≥ 2 " + o.factor + " levels";
        return v;
    }
    if (v.levels_b < 2) {
        v.reason = "single category (" + B.names[0] + "): the decomposition needs ≥ 2 categories";
        return v;
    }
    v.anova = stats::two_way_anova(y, A.code, B.code, o.factor, "category", true);
    if (v.anova.type1.back().df <= 0) {
        v.reason = "no residual degrees of freedom (" + std::to_string(v.n) + " runs for " +
                   std::to_string(v.levels_a) + " × " + std::to_string(v.levels_b) + " levels)";
        return v;
    }
    const bool inter = v.anova.interaction;

    // Cells (A × B) for the stratified bootstrap.
    std::map<std::pair<int, int>, std::vector<std::size_t>> cells;
    for (std::size_t i = 0; i < y.size(); ++i) cells[{A.code[i], B.code[i]}].push_back(i);

    // REML: crossed random effects factor + category (+ factor:category when cells are replicated).
    std::vector<std::vector<int>> fac = {A.code, B.code};
    v.reml_terms = {o.factor, "category"};
    if (inter) {
        std::vector<int> ab(y.size());
        for (std::size_t i = 0; i < y.size(); ++i) ab[i] = A.code[i] * static_cast<int>(v.levels_b) + B.code[i];
        fac.push_back(ab);
        v.reml_terms.push_back(o.factor + ":category");
    }
    v.reml_terms.push_back("Residual");
    auto shares_of = [](const std::vector<double>& s2) {
        double tot = 0;
        for (double s : s2) tot += s;
        std::vector<double> sh;
        for (double s : s2) sh.push_back(tot > 0 ? s / tot : stats::kNaN);
        return sh;
    };
    try {
        v.reml = stats::reml(y, fac);
        v.reml_share = shares_of(v.reml.sigma2);
        if (!v.reml.reason.empty()) v.reml_reason = v.reml.reason;
        if (v.reml.reason.empty() && !std::isfinite(v.reml_share.front()))
            v.reml_reason = "the total variance is 0: shares undefined";
    } catch (const std::exception& e) {
        v.reml_reason = e.what();
    }

    // Residual bootstrap within cells: y* = cell mean + a residual drawn from the same cell, scaled
    // by sqrt(n_c / (n_c − 1)) so the within-cell variance is not shrunk (a cell of one run keeps its
    // value). The design (labels, cell sizes) stays fixed.
    auto rng = rng_for(o, kVarBoot);
    const std::size_t T = v.anova.type1.size();
    const std::size_t R = v.reml_terms.size();
    std::vector<std::vector<double>> d1(T), d2(T), dr(R), drs(R);
    std::vector<double> yb(y.size()), cell_mean(y.size()), resid(y.size());
    for (const auto& [k, idx] : cells) {
        double m = 0;
        for (auto i : idx) m += y[i];
        m /= static_cast<double>(idx.size());
        const double infl = idx.size() > 1 ? std::sqrt(static_cast<double>(idx.size()) / static_cast<double>(idx.size() - 1)) : 0.0;
        for (auto i : idx) {
            cell_mean[i] = m;
            resid[i] = (y[i] - m) * infl;
        }
    }
    for (std::size_t b = 0; b < o.bootstrap; ++b) {
        for (const auto& [k, idx] : cells)
            for (auto i : idx) yb[i] = cell_mean[i] + resid[idx[stats::uniform_index(rng, idx.size() - 1)]];
        const auto tab = stats::two_way_anova(yb, A.code, B.code, "a", "b", inter);
        for (std::size_t t = 0; t < T && t < tab.type1.size(); ++t) {
            d1[t].push_back(tab.type1[t].share);
            d2[t].push_back(tab.type2[t].share);
        }
        if (b < o.reml_bootstrap && v.reml.converged && !v.reml_share.empty() && std::isfinite(v.reml_share.front())) {
            const auto rm = stats::reml(yb, fac);
            const auto sh = shares_of(rm.sigma2);
            for (std::size_t t = 0; t < R; ++t) {
                dr[t].push_back(rm.sigma2[t]);
                drs[t].push_back(sh[t]);
            }
        }
    }
    // Bias-shifted percentile intervals: the resampling treats the observed cell means as true and
    // adds noise to them again, which shifts the draws of every between-cell share or component
    // upwards (most visibly the interaction); the shift is estimated and removed. Shares are
    // clamped to [0, 1], components to ≥ 0.
    auto clamp = [](Interval i, double hi) {
        if (i.ok()) {
            i.lo = std::clamp(i.lo, 0.0, hi);
            i.hi = std::clamp(i.hi, 0.0, hi);
        }
        return i;
    };
    const double inf = std::numeric_limits<double>::infinity();
    for (std::size_t t = 0; t < T; ++t) {
        v.type1_ci.push_back(clamp(stats::bias_shifted_interval(d1[t], v.anova.type1[t].share, o.level), 1.0));
        v.type2_ci.push_back(clamp(stats::bias_shifted_interval(d2[t], v.anova.type2[t].share, o.level), 1.0));
    }
    for (std::size_t t = 0; t < R && t < v.reml.sigma2.size(); ++t) {
        v.reml_ci.push_back(clamp(stats::bias_shifted_interval(dr[t], v.reml.sigma2[t], o.level), inf));
        v.reml_share_ci.push_back(clamp(stats::bias_shifted_interval(drs[t], v.reml_share[t], o.level), 1.0));
    }

    // Permutation p-values of the type-II shares: A within categories, B within A levels (exact
    // under "no effect" of the permuted factor in the additive model), A:B by Freedman–Lane
    // (residuals of the additive fit permuted and added back).
    const auto within_b = strata_of(B.code), within_a = strata_of(A.code);
    for (std::size_t t = 0; t + 1 < T; ++t) {
        auto prng = rng_for(o, kVarPermA + t);
        std::vector<double> perm(o.permutations);
        if (t < 2) {
            std::vector<int> lab = t == 0 ? A.code : B.code;
            const std::vector<int>& orig = t == 0 ? A.code : B.code;
            for (auto& s : perm) {
                permute_within(lab, t == 0 ? within_b : within_a, prng, orig);
                s = t == 0 ? type2_share(y, lab, B.code, 0, inter) : type2_share(y, A.code, lab, 1, inter);
            }
        } else {
            const auto fit = stats::additive_fitted(y, A.code, B.code);
            std::vector<double> res(y.size()), yp(y.size());
            for (std::size_t i = 0; i < y.size(); ++i) res[i] = y[i] - fit[i];
            std::vector<std::uint32_t> order(y.size());
            for (auto& s : perm) {
                for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
                stats::shuffle_in_place(order, prng);
                for (std::size_t i = 0; i < y.size(); ++i) yp[i] = fit[i] + res[order[i]];
                s = type2_share(yp, A.code, B.code, 2, inter);
            }
        }
        v.type2_perm_p.push_back(stats::permutation_p(v.anova.type2[t].share, perm));
    }
    return v;
}

namespace {
json terms_json(const std::vector<stats::AnovaTerm>& terms, const std::vector<Interval>& cis,
                const std::vector<double>* perm) {
    json a = json::array();
    for (std::size_t i = 0; i < terms.size(); ++i) {
        const auto& t = terms[i];
        json j = {{"term", t.term}, {"df", t.df},        {"ss", num(t.ss)}, {"ms", num(t.ms)},
                  {"F", num(t.F)},  {"p", num(t.p)},     {"share", num(t.share)}};
        if (i < cis.size()) j["share_ci"] = interval(cis[i]);
        if (perm && i < perm->size()) j["perm_p"] = num((*perm)[i]);
        a.push_back(j);
    }
    return a;
}
}  // namespace

json to_json(const VarianceDecomposition& r) {
    json j = {{"section", "variance"}, {"ok", r.ok()}, {"norm", r.norm}, {"metric", r.metric}, {"factor", r.factor}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["n"] = r.n;
    j["levels"] = {{r.factor, r.levels_a}, {"category", r.levels_b}};
    j["ss_total"] = num(r.anova.ss_total);
    j["interaction"] = r.anova.interaction;
    j["type1"] = terms_json(r.anova.type1, r.type1_ci, nullptr);
    j["type2"] = terms_json(r.anova.type2, r.type2_ci, &r.type2_perm_p);
    json rm = json::array();
    for (std::size_t t = 0; t < r.reml_terms.size() && t < r.reml.sigma2.size(); ++t)
        rm.push_back({{"term", r.reml_terms[t]},
                      {"sigma2", num(r.reml.sigma2[t])},
                      {"sigma2_ci", t < r.reml_ci.size() ? interval(r.reml_ci[t]) : json(nullptr)},
                      {"share", num(r.reml_share[t])},
                      {"share_ci", t < r.reml_share_ci.size() ? interval(r.reml_share_ci[t]) : json(nullptr)},
                      {"at_zero", t < r.reml.at_zero.size() && r.reml.at_zero[t]}});
    json zero = json::array();
    for (std::size_t t = 0; t < r.reml_terms.size() && t < r.reml.at_zero.size(); ++t)
        if (r.reml.at_zero[t]) zero.push_back(r.reml_terms[t]);
    j["reml"] = {{"components", rm}, {"converged", r.reml.converged}, {"iterations", r.reml.iterations},
                 {"loglik", num(r.reml.loglik)}, {"at_zero", zero},
                 {"method", "projected Fisher scoring with an active set on σ² ≥ 0 (cell-mean REML)"}};
    if (!r.reml_reason.empty()) j["reml"]["reason"] = r.reml_reason;
    return j;
}

std::string to_table(const VarianceDecomposition& r) {
    std::string s = heading("3. Variance decomposition of " + r.metric + " (" + r.factor + " / category)", r);
    if (!r.ok()) return s;
    s += fmt::format("  n = {}, {} {} levels, {} categories, SS total = {}\n", r.n, r.levels_a, r.factor, r.levels_b,
                     f(r.anova.ss_total));
    for (int type = 1; type <= 2; ++type) {
        const auto& terms = type == 1 ? r.anova.type1 : r.anova.type2;
        const auto& cis = type == 1 ? r.type1_ci : r.type2_ci;
        s += type == 1 ? "  ANOVA type I (sequential)\n" : "  ANOVA type II (each term adjusted for the others)\n";
        TextTable t({"term", "df", "SS", "F", "p", "share", "95% CI", "perm p"});
        for (std::size_t i = 0; i < terms.size(); ++i) {
            const auto& x = terms[i];
            t.row({x.term, f(x.df), f(x.ss), f(x.F), f(x.p), f(x.share), i < cis.size() ? ci(cis[i]) : "–",
                   type == 2 && i < r.type2_perm_p.size() ? f(r.type2_perm_p[i]) : ""});
        }
        s += t.str();
    }
    s += "  REML variance components (crossed random effects)";
    if (!r.reml_reason.empty()) s += ": " + r.reml_reason;
    s += "\n";
    if (!r.reml.sigma2.empty()) {
        TextTable t({"component", "σ²", "95% CI", "share", "95% CI", ""});
        for (std::size_t i = 0; i < r.reml_terms.size() && i < r.reml.sigma2.size(); ++i)
            t.row({r.reml_terms[i], f(r.reml.sigma2[i]), i < r.reml_ci.size() ? ci(r.reml_ci[i]) : "–",
                   f(r.reml_share[i]), i < r.reml_share_ci.size() ? ci(r.reml_share_ci[i]) : "–",
                   i < r.reml.at_zero.size() && r.reml.at_zero[i] ? "at 0 (boundary)" : ""});
        s += t.str();
        s += fmt::format("  restricted log-likelihood {} ({}converged, {} iterations)\n", f(r.reml.loglik),
                         r.reml.converged ? "" : "not ", r.reml.iterations);
    }
    return s;
}

}  // namespace phasemap::audit
