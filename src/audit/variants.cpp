// Sections 8 (variants and covariates) and 9 (controls).
#include <algorithm>
#include <set>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

namespace {

// Difference of means with an independent bootstrap of both samples and a two-sided permutation p
// (|Δ| of randomly reassigned runs).
void delta(const std::vector<double>& a, const std::vector<double>& b, const Options& o, std::uint64_t stream,
           double& d, Interval& dci, double& p) {
    d = stats::mean(a) - stats::mean(b);
    if (a.size() < 2 || b.size() < 2) return;
    auto rng = rng_for(o, kVariantBoot + stream);
    std::vector<double> draws(o.bootstrap);
    for (auto& x : draws) {
        const double ma = stats::resample_mean(a, rng);   // a first, then b: one statement each (draw order)
        x = ma - stats::resample_mean(b, rng);
    }
    dci = stats::percentile_interval(draws, o.level);
    std::vector<double> pool(a);
    pool.insert(pool.end(), b.begin(), b.end());
    auto prng = rng_for(o, kVariantPerm + stream);
    std::vector<double> perm(o.permutations);
    std::vector<std::uint32_t> order(pool.size());
    for (auto& x : perm) {
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        stats::shuffle_in_place(order, prng);
        double sa = 0, sb = 0;
        for (std::size_t i = 0; i < pool.size(); ++i) (i < a.size() ? sa : sb) += pool[order[i]];
        x = std::abs(sa / static_cast<double>(a.size()) - sb / static_cast<double>(b.size()));
    }
    p = stats::permutation_p(std::abs(d), perm);
}

// Paired Δ: mean of the differences d_i, bootstrap over the pairs, two-sided sign-flip permutation
// p of |mean d| (every sign vector when 2^n ≤ the permutation budget, then exact; else random flips).
void paired_delta(const std::vector<double>& diff, const Options& o, std::uint64_t stream, double& d, Interval& dci,
                  double& p, std::string& method) {
    const std::size_t n = diff.size();
    d = stats::mean(diff);
    auto rng = rng_for(o, kVariantBoot + stream);
    dci = stats::percentile_interval(stats::bootstrap_draws(diff, o.bootstrap, stats::Statistic::mean, rng), o.level);
    const double obs = std::abs(d), tol = 1e-12 * std::max(1.0, obs);
    if (n < 63 && (std::uint64_t{1} << n) <= o.permutations) {
        const std::uint64_t total = std::uint64_t{1} << n;
        std::uint64_t ge = 0;
        for (std::uint64_t mask = 0; mask < total; ++mask) {
            double s = 0;
            for (std::size_t i = 0; i < n; ++i) s += (mask >> i & 1U) ? -diff[i] : diff[i];
            ge += std::abs(s / static_cast<double>(n)) >= obs - tol;
        }
        p = static_cast<double>(ge) / static_cast<double>(total);
        method = "exact sign-flip enumeration";
        return;
    }
    auto prng = rng_for(o, kVariantPerm + stream);
    std::vector<double> perm(o.permutations);
    for (auto& x : perm) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) s += stats::uniform_index(prng, 1) ? -diff[i] : diff[i];
        x = std::abs(s / static_cast<double>(n));
    }
    p = stats::permutation_p(obs, perm);
    method = "random sign flips";
}

// Key of a run for matching variant and base runs: same prompt and settings, and the same seed
// when sampling (at temperature 0 the seed does not enter).
std::string match_key(const PanelRun& r) {
    return fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}", r.category, r.prompt, r.temperature, r.n_predict,
                       r.temperature == 0 ? std::uint64_t{0} : r.seed);
}

double perm_corr_p(const std::vector<double>& x, const std::vector<double>& y, const Options& o, std::uint64_t stream) {
    const double r = stats::pearson(x, y).r;
    auto rng = rng_for(o, stream);
    std::vector<double> perm(o.permutations), yp(y.size());
    std::vector<std::uint32_t> order(y.size());
    for (auto& v : perm) {
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        stats::shuffle_in_place(order, rng);
        for (std::size_t i = 0; i < y.size(); ++i) yp[i] = y[order[i]];
        v = std::abs(stats::pearson(x, yp).r);
    }
    return stats::permutation_p(std::abs(r), perm);
}

}  // namespace

Variants variants(const PanelTable& p, const Options& o) {
    Variants v;
    if (p.runs.empty()) {
        v.reason = "empty panel: no runs";
        return v;
    }
    v.norm = resolve_norm(p, o);
    std::map<std::string, std::vector<double>> by_model;
    std::map<std::string, std::map<std::string, std::vector<double>>> by_cell, by_key;
    for (const PanelRun* r : runs_for(p, v.norm)) {
        const double x = metric_of(*r, "ratio_norm");
        if (!std::isfinite(x)) continue;
        by_model[r->model].push_back(x);
        by_cell[r->model][r->category].push_back(x);
        by_key[r->model][match_key(*r)].push_back(x);
    }
    if (by_model.empty()) {
        v.reason = "missing metric: no run has a finite ratio_norm";
        return v;
    }
    std::uint64_t stream = 0;
    for (const auto& m : p.models) {
        if (!m.variant_of) continue;
        ++stream;
        if (!by_model.count(m.label) || !by_model.count(*m.variant_of)) continue;
        VariantRow row;
        row.model = m.label;
        row.base = *m.variant_of;
        const auto& a = by_model[m.label];
        const auto& b = by_model[row.base];
        row.n_variant = a.size();
        row.n_base = b.size();
        row.label_variant = regime_label(stats::mean(a), o.cuts);
        row.label_base = regime_label(stats::mean(b), o.cuts);
        std::vector<std::string> la, lb;
        for (const auto& [c, xs] : by_cell[m.label]) {
            const auto it = by_cell[row.base].find(c);
            if (it == by_cell[row.base].end()) continue;
            la.push_back(regime_label(stats::mean(xs), o.cuts));
            lb.push_back(regime_label(stats::mean(it->second), o.cuts));
        }
        row.categories = la.size();
        if (!la.empty()) {
            std::size_t same = 0;
            for (std::size_t i = 0; i < la.size(); ++i) same += la[i] == lb[i];
            row.category_agreement = static_cast<double>(same) / static_cast<double>(la.size());
            row.category_kappa = stats::cohens_kappa(la, lb);
        }
        // Matched runs (several distinct runs under one key are averaged first).
        std::vector<double> diff;
        for (const auto& [k, xs] : by_key[m.label]) {
            const auto it = by_key[row.base].find(k);
            if (it != by_key[row.base].end()) diff.push_back(stats::mean(xs) - stats::mean(it->second));
        }
        row.pairs = diff.size();
        if (diff.size() >= 2) {
            row.test = "paired";
            paired_delta(diff, o, stream, row.delta, row.delta_ci, row.perm_p, row.p_method);
        } else {
            row.test = "unpaired";
            row.p_method = "label permutation";
            delta(a, b, o, stream, row.delta, row.delta_ci, row.perm_p);
        }
        v.variants.push_back(std::move(row));
    }
    if (v.variants.empty())
        v.variant_reason = "no model declares variant_of a base model that has runs in the panel";

    std::set<std::string> covs;
    for (const auto& m : p.models)
        for (const auto& [k, x] : m.covariates) covs.insert(k);
    std::uint64_t cs = 0;
    std::vector<std::string> skipped;
    for (const auto& cov : covs) {
        std::vector<double> x, y;
        for (const auto& m : p.models) {
            const auto it = m.covariates.find(cov);
            if (it == m.covariates.end() || !std::isfinite(it->second) || !by_model.count(m.label)) continue;
            x.push_back(stats::mean(by_model[m.label]));
            y.push_back(it->second);
        }
        if (x.size() < 3) {
            skipped.push_back(cov + " (" + std::to_string(x.size()) + " models)");
            continue;
        }
        CovariateRow row;
        row.covariate = cov;
        row.pearson = stats::pearson(x, y, o.level);
        row.spearman = stats::spearman(x, y, o.level);
        row.perm_p = perm_corr_p(x, y, o, kCovPerm * 1000 + cs++);
        v.covariates.push_back(row);
    }
    if (covs.empty()) v.covariate_reason = "no model declares covariates";
    else if (!skipped.empty()) {
        v.covariate_reason = "fewer than 3 models with ratio_norm for:";
        for (const auto& s : skipped) v.covariate_reason += " " + s;
    }
    return v;
}

Controls controls(const PanelTable& p, const Options& o) {
    Controls c;
    if (p.runs.empty()) {
        c.reason = "empty panel: no runs";
        return c;
    }
    c.norm = resolve_norm(p, o);
    const auto runs = runs_for(p, c.norm);
    std::vector<double> y;
    std::vector<std::string> lm, lf, lc;
    for (const PanelRun* r : runs) {
        const double x = metric_of(*r, o.metric);
        if (!std::isfinite(x)) continue;
        y.push_back(x);
        lm.push_back(r->model);
        lf.push_back(family_of(p, r->model));
        lc.push_back(r->category);
    }
    // η² permutation tests of each factor (labels permuted over all runs).
    std::uint64_t stream = 0;
    for (const auto& [name, labels] : {std::pair<std::string, const std::vector<std::string>*>{"model", &lm},
                                       {"family", &lf}, {"category", &lc}}) {
        ++stream;
        const Codes k = encode(*labels);
        if (k.names.size() < 2) continue;
        Effect e;
        e.effect = name + " on " + o.metric;
        e.statistic = "η²";
        e.value = stats::eta_squared(y, k.code);
        e.permutations = o.permutations;
        e.scheme = name + " labels permuted over runs";
        auto rng = rng_for(o, kControlPerm * 1000 + stream);
        std::vector<double> perm(o.permutations);
        std::vector<std::uint32_t> order(y.size());
        std::vector<int> g(y.size());
        for (auto& v : perm) {
            for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
            stats::shuffle_in_place(order, rng);
            for (std::size_t i = 0; i < y.size(); ++i) g[i] = k.code[order[i]];
            v = stats::eta_squared(y, g);
        }
        e.p = stats::permutation_p(e.value, perm);
        c.effects.push_back(e);
    }
    if (y.empty()) c.effects.clear();

    // The §6 shuffled-order baselines the store recorded per run (run metrics named
    // token_order_p* / layer_order_p*): median p and share of runs with p < 0.05 per model.
    std::set<std::string> keys;
    for (const PanelRun* r : runs)
        for (const auto& [k, x] : r->metrics)
            if ((k.rfind("token_order_p", 0) == 0 || k.rfind("layer_order_p", 0) == 0) && std::isfinite(x)) keys.insert(k);
    auto rng = rng_for(o, kControlBoot);
    for (const auto& key : keys) {
        std::map<std::string, std::vector<double>> by_model;
        for (const PanelRun* r : runs) {
            const double x = metric_of(*r, key);
            if (std::isfinite(x)) by_model[r->model].push_back(x);
        }
        for (const auto& [m, ps] : by_model) {
            ShuffleBaseline b;
            b.model = m;
            b.key = key;
            b.runs = ps.size();
            b.median_p = stats::median(ps);
            std::vector<double> sig;
            for (double x : ps) sig.push_back(x < 0.05 ? 1.0 : 0.0);
            b.share_significant = bootstrap_mean(sig, o, rng);
            c.baselines.push_back(b);
        }
    }
    if (keys.empty())
        c.baseline_reason = "no run carries a shuffled-order control p-value (run metrics token_order_p* / layer_order_p*)";
    if (c.effects.empty() && c.baselines.empty())
        c.reason = y.empty() ? "missing metric: no run has a finite " + o.metric + "; " + c.baseline_reason
                             : "single model and single category: no effect to test; " + c.baseline_reason;
    return c;
}

json to_json(const Variants& r) {
    json j = {{"section", "variants"}, {"ok", r.ok()}, {"norm", r.norm}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["variants"] = json::array();
    for (const auto& x : r.variants)
        j["variants"].push_back({{"model", x.model},
                                 {"base", x.base},
                                 {"n_variant", x.n_variant},
                                 {"n_base", x.n_base},
                                 {"label_variant", x.label_variant},
                                 {"label_base", x.label_base},
                                 {"same_label", x.label_variant == x.label_base},
                                 {"categories", x.categories},
                                 {"category_agreement", num(x.category_agreement)},
                                 {"category_kappa", num(x.category_kappa)},
                                 {"delta_ratio_norm", num(x.delta)},
                                 {"delta_ci", interval(x.delta_ci)},
                                 {"test", x.test},
                                 {"pairs", x.pairs},
                                 {"perm_p", num(x.perm_p)},
                                 {"p_method", x.p_method}});
    if (!r.variant_reason.empty()) j["variant_reason"] = r.variant_reason;
    j["covariates"] = json::array();
    for (const auto& x : r.covariates)
        j["covariates"].push_back({{"covariate", x.covariate},
                                   {"n", x.pearson.n},
                                   {"pearson", {{"r", num(x.pearson.r)}, {"ci", json::array({num(x.pearson.lo), num(x.pearson.hi)})}, {"p", num(x.pearson.p)}}},
                                   {"spearman", {{"r", num(x.spearman.r)}, {"ci", json::array({num(x.spearman.lo), num(x.spearman.hi)})}, {"p", num(x.spearman.p)}}},
                                   {"perm_p", num(x.perm_p)}});
    if (!r.covariate_reason.empty()) j["covariate_reason"] = r.covariate_reason;
    return j;
}

std::string to_table(const Variants& r) {
    std::string s = heading("8. Variants and covariates (ratio_norm)", r);
    if (!r.ok()) return s;
    if (!r.variant_reason.empty()) {
        s += "  variants: " + r.variant_reason + "\n";
    } else {
        TextTable t({"variant", "base", "n", "regime", "base regime", "cat. agreement", "κ", "Δratio_norm", "95% CI",
                     "test", "perm p"});
        for (const auto& x : r.variants)
            t.row({x.model, x.base, std::to_string(x.n_variant) + "/" + std::to_string(x.n_base), x.label_variant,
                   x.label_base, f(x.category_agreement), f(x.category_kappa), f(x.delta), ci(x.delta_ci),
                   x.test == "paired" ? "paired (" + std::to_string(x.pairs) + " pairs)" : x.test, f(x.perm_p)});
        s += t.str();
    }
    if (!r.covariates.empty()) {
        TextTable t({"covariate", "models", "Pearson r", "95% CI", "p", "Spearman ρ", "95% CI", "perm p"});
        for (const auto& x : r.covariates)
            t.row({x.covariate, std::to_string(x.pearson.n), f(x.pearson.r), ci({x.pearson.lo, x.pearson.hi}),
                   f(x.pearson.p), f(x.spearman.r), ci({x.spearman.lo, x.spearman.hi}), f(x.perm_p)});
        s += t.str();
    }
    if (!r.covariate_reason.empty()) s += "  covariates: " + r.covariate_reason + "\n";
    return s;
}

json to_json(const Controls& r) {
    json j = {{"section", "controls"}, {"ok", r.ok()}, {"norm", r.norm}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["effects"] = json::array();
    for (const auto& e : r.effects)
        j["effects"].push_back({{"effect", e.effect}, {"statistic", e.statistic}, {"value", num(e.value)},
                                {"p", num(e.p)}, {"permutations", e.permutations}, {"scheme", e.scheme}});
    j["shuffled_order_baselines"] = json::array();
    for (const auto& b : r.baselines)
        j["shuffled_order_baselines"].push_back({{"model", b.model}, {"key", b.key}, {"runs", b.runs},
                                                 {"median_p", num(b.median_p)},
                                                 {"share_p_below_0_05", estimate(b.share_significant)}});
    if (!r.baseline_reason.empty()) j["baseline_reason"] = r.baseline_reason;
    return j;
}

std::string to_table(const Controls& r) {
    std::string s = heading("9. Controls (permutation p-values; §6 shuffled-order baselines)", r);
    if (!r.ok()) return s;
    if (!r.effects.empty()) {
        TextTable t({"effect", "statistic", "value", "perm p", "K", "scheme"});
        for (const auto& e : r.effects)
            t.row({e.effect, e.statistic, f(e.value), f(e.p), std::to_string(e.permutations), e.scheme});
        s += t.str();
    }
    if (!r.baseline_reason.empty()) return s + "  shuffled-order baselines: " + r.baseline_reason + "\n";
    TextTable t({"model", "control", "runs", "median p", "share p < 0.05", "95% CI"});
    for (const auto& b : r.baselines)
        t.row({b.model, b.key, std::to_string(b.runs), f(b.median_p), f(b.share_significant.value),
               ci(b.share_significant.ci)});
    return s + t.str();
}

}  // namespace phasemap::audit
