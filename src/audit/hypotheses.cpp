// Section 5: evaluation of the falsification registry.
#include "phasemap/audit/hypotheses.hpp"

#include <algorithm>
#include <set>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::FALSIFIED: return "FALSIFIED";
        case Verdict::INCONCLUSIVE: return "INCONCLUSIVE";
        case Verdict::SURVIVED: return "SURVIVED";
    }
    return "?";
}

PanelTable restrict_panel(const PanelTable& p, const SubPanel& s) {
    auto in = [](const std::vector<std::string>& v, const std::string& x) {
        return v.empty() || std::find(v.begin(), v.end(), x) != v.end();
    };
    PanelTable out;
    std::set<std::string> kept;
    for (const auto& r : p.runs) {
        if (!in(s.models, r.model) || !in(s.categories, r.category)) continue;
        if (!s.families.empty()) {
            const PanelModel* m = p.model(r.model);
            if (!m || !in(s.families, m->family)) continue;
        }
        if (!s.temperatures.empty() &&
            std::none_of(s.temperatures.begin(), s.temperatures.end(),
                         [&](double t) { return std::abs(t - r.temperature) <= 1e-9; }))
            continue;
        out.runs.push_back(r);
        kept.insert(r.model);
    }
    for (const auto& m : p.models)
        if (kept.count(m.label)) out.models.push_back(m);
    return out;
}

namespace {

Verdict interval_verdict(const Interval& ci, std::optional<double> min, std::optional<double> max, std::string& detail) {
    if (!ci.ok()) {
        detail = "no interval (too few data)";
        return Verdict::INCONCLUSIVE;
    }
    if ((min && ci.hi < *min) || (max && ci.lo > *max)) {
        detail = "interval entirely outside the claimed range";
        return Verdict::FALSIFIED;
    }
    if ((!min || ci.lo >= *min) && (!max || ci.hi <= *max)) {
        detail = "interval entirely inside the claimed range";
        return Verdict::SURVIVED;
    }
    detail = "interval overlaps the claimed bound";
    return Verdict::INCONCLUSIVE;
}

// The rule every interval verdict follows (docs/audit.md): the interval decides, and a verdict whose
// conclusion implies an effect beyond the null value (e.g. "share > max_share ≥ 0", "r ≥ min_r > 0")
// also needs the hypothesis' own test of no effect at p < α; otherwise it is INCONCLUSIVE.
Verdict tested_verdict(const Interval& ci, std::optional<double> min, std::optional<double> max, double p,
                       double alpha, double null_value, std::string& detail) {
    const Verdict v = interval_verdict(ci, min, max, detail);
    bool relies = false;
    if (v == Verdict::FALSIFIED) {
        if (min && ci.hi < *min) relies = *min <= null_value;
        else relies = max && *max >= null_value;
    } else if (v == Verdict::SURVIVED) {
        relies = (min && *min > null_value) || (max && *max < null_value);
    }
    if (relies && !(p < alpha)) {
        detail += fmt::format(", but that implies an effect and the test of no effect has p = {} ≥ α = {}", f(p), f(alpha));
        return Verdict::INCONCLUSIVE;
    }
    return v;
}

Evaluation compare(const Hypothesis& h, const PanelTable& p, const Options& o, std::uint64_t stream) {
    Evaluation e;
    const std::string norm = resolve_norm(p, o);
    std::map<std::string, std::vector<double>> by_model;
    for (const PanelRun* r : runs_for(p, norm)) {
        const double v = metric_of(*r, h.metric);
        if (std::isfinite(v)) by_model[r->model].push_back(v);
    }
    std::vector<double> a, b;
    auto in = [](const std::vector<std::string>& v, const std::string& x) {
        return std::find(v.begin(), v.end(), x) != v.end();
    };
    for (const auto& [m, xs] : by_model) {
        const std::string g = h.group_by == "family" ? family_of(p, m) : m;
        const bool ia = in(h.a, g), ib = in(h.b, g);
        if (!ia && !ib) continue;
        auto& dst = ia ? a : b;
        if (h.unit == "model") dst.push_back(stats::mean(xs));
        else dst.insert(dst.end(), xs.begin(), xs.end());
    }
    e.n = a.size() + b.size();
    e.statistic_name = "mean(a) − mean(b)";
    if (a.size() < 2 || b.size() < 2) {
        e.detail = fmt::format("too few {}s with {} ({} in a, {} in b; need ≥ 2 each)", h.unit, h.metric, a.size(), b.size());
        return e;
    }
    e.statistic = stats::mean(a) - stats::mean(b);
    auto rng = rng_for(o, kHypothesis + 2 * stream);
    std::vector<double> draws(o.bootstrap);
    for (auto& d : draws) {
        const double ma = stats::resample_mean(a, rng);   // a first, then b: one statement each (draw order)
        d = ma - stats::resample_mean(b, rng);
    }
    e.ci = stats::percentile_interval(draws, o.level);
    e.interval_reflects = h.unit == "model" ? "resampling of the model means within each group"
                                            : "resampling of the runs within each group (run-level noise)";
    double p_less = stats::kNaN, p_greater = stats::kNaN;
    if (h.test == "welch_t" || h.test == "mann_whitney") {
        const auto t = h.test == "welch_t" ? stats::welch_t(a, b) : stats::mann_whitney(a, b);
        p_less = t.p_less;
        p_greater = t.p_greater;
    } else {
        std::vector<double> pool(a);
        pool.insert(pool.end(), b.begin(), b.end());
        auto prng = rng_for(o, kHypothesis + 2 * stream + 1);
        std::vector<std::uint32_t> order(pool.size());
        std::size_t le = 0, ge = 0;
        for (std::size_t k = 0; k < o.permutations; ++k) {
            for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
            stats::shuffle_in_place(order, prng);
            double sa = 0, sb = 0;
            for (std::size_t i = 0; i < pool.size(); ++i) (i < a.size() ? sa : sb) += pool[order[i]];
            const double d = sa / static_cast<double>(a.size()) - sb / static_cast<double>(b.size());
            const double tol = 1e-12 * std::max(1.0, std::abs(e.statistic));
            le += d <= e.statistic + tol;
            ge += d >= e.statistic - tol;
        }
        p_less = static_cast<double>(1 + le) / static_cast<double>(1 + o.permutations);
        p_greater = static_cast<double>(1 + ge) / static_cast<double>(1 + o.permutations);
    }
    const double p_claim = h.direction == "less" ? p_less : p_greater;
    const double p_opp = h.direction == "less" ? p_greater : p_less;
    e.p = p_claim;
    if (p_claim < h.alpha) {
        e.verdict = Verdict::SURVIVED;
        e.detail = fmt::format("{} test: claimed direction significant (p = {})", h.test, f(p_claim));
    } else if (p_opp < h.alpha) {
        e.verdict = Verdict::FALSIFIED;
        e.detail = fmt::format("{} test: opposite direction significant (p = {})", h.test, f(p_opp));
    } else {
        e.detail = fmt::format("{} test: neither direction significant at α = {}", h.test, f(h.alpha));
    }
    return e;
}

Evaluation variance_share(const Hypothesis& h, const PanelTable& p, const Options& o0) {
    Evaluation e;
    Options o = o0;
    o.metric = h.metric;
    o.factor = h.factor == "category" ? "model" : h.factor;
    o.reml_bootstrap = 0;
    const auto v = variance_decomposition(p, o);
    e.statistic_name = "type-II SS share of " + h.factor;
    if (!v.ok()) {
        e.detail = v.reason;
        return e;
    }
    const std::size_t t = h.factor == "category" ? 1 : 0;
    e.statistic = v.anova.type2[t].share;
    e.ci = v.type2_ci[t];
    e.p = t < v.type2_perm_p.size() ? v.type2_perm_p[t] : stats::kNaN;
    e.n = v.n;
    e.interval_reflects = "run-level noise given the panel's models and categories (residual bootstrap within cells)";
    e.verdict = tested_verdict(e.ci, h.min_share, h.max_share, e.p, h.alpha, 0.0, e.detail);
    return e;
}

Evaluation regime(const Hypothesis& h, const PanelTable& p, const Options& o) {
    Evaluation e;
    e.statistic_name = "mean ratio_norm of " + h.model;
    const auto t = regime_table(p, o);
    if (!t.ok()) {
        e.detail = t.reason;
        return e;
    }
    const auto it = std::find_if(t.models.begin(), t.models.end(), [&](const RegimeRow& r) { return r.model == h.model; });
    if (it == t.models.end()) {
        e.detail = "model " + h.model + " has no run with ratio_norm in this panel";
        return e;
    }
    e.statistic = it->mean;
    e.ci = it->ci;
    e.n = it->n;
    const auto& c = o.cuts;
    std::optional<double> lo, hi;
    if (h.regime == "ADAPTIVE") lo = c.underactive_below, hi = c.adaptive_below;
    if (h.regime == "TRANSITION") lo = c.adaptive_below, hi = c.transition_below;
    if (h.regime == "UNDERACTIVE") hi = c.underactive_below;
    if (h.regime == "CHAOTIC") lo = c.transition_below;
    e.interval_reflects = "resampling of this model's runs (run-level noise); no test: interval rule only";
    e.verdict = interval_verdict(e.ci, lo, hi, e.detail);
    e.detail += fmt::format("; label of the mean {}, bootstrap label share {}", it->label, f(it->label_share));
    return e;
}

Evaluation ranking(const Hypothesis& h, const PanelTable& p, const Options& o0) {
    Evaluation e;
    Options o = o0;
    o.metric = h.metric;
    e.statistic_name = "min Kendall τ-b across " + h.across + " levels";
    std::string reason;
    e.interval_reflects = "resampling of the runs within model × level (run-level noise given the models)";
    const auto rs = ranking_stability(p, o, h.across, reason);
    if (rs.empty()) {
        e.detail = reason;
        return e;
    }
    bool all_above = true, any_below = false, all_significant = true;
    double worst_p = stats::kNaN;
    for (const auto& r : rs) {
        if (!(r.tau.p < h.alpha)) all_significant = false;
        if (!(r.tau.p <= worst_p)) worst_p = r.tau.p;
        if (!(r.tau.tau >= e.statistic)) {
            e.statistic = r.tau.tau;
            e.ci = r.ci;
            e.p = r.tau.p;
            e.n = r.tau.n;
        }
        all_above = all_above && r.ci.ok() && r.ci.lo >= h.min_tau;
        any_below = any_below || (r.ci.ok() && r.ci.hi < h.min_tau);
    }
    if (any_below) {
        e.verdict = Verdict::FALSIFIED;
        e.detail = "a pair of levels has its τ interval entirely below " + f(h.min_tau);
    } else if (all_above && (h.min_tau <= 0 || all_significant)) {
        e.verdict = Verdict::SURVIVED;
        e.detail = "every pair of levels has its τ interval at or above " + f(h.min_tau);
    } else if (all_above) {
        e.detail = "every pair of levels has its τ interval at or above " + f(h.min_tau) +
                   ", but a pair's test of τ = 0 has p = " + f(worst_p) + " ≥ α = " + f(h.alpha);
    } else {
        e.detail = "τ intervals overlap " + f(h.min_tau);
    }
    return e;
}

Evaluation correlation(const Hypothesis& h, const PanelTable& p, const Options& o) {
    Evaluation e;
    const std::string norm = resolve_norm(p, o);
    bool model_level = false;
    for (const auto& m : p.models) model_level = model_level || m.covariates.count(h.covariate);
    std::vector<double> x, y;
    if (model_level) {
        std::map<std::string, std::vector<double>> by_model;
        for (const PanelRun* r : runs_for(p, norm)) {
            const double v = metric_of(*r, h.metric);
            if (std::isfinite(v)) by_model[r->model].push_back(v);
        }
        for (const auto& m : p.models) {
            const auto it = m.covariates.find(h.covariate);
            if (it == m.covariates.end() || !by_model.count(m.label)) continue;
            x.push_back(stats::mean(by_model[m.label]));
            y.push_back(it->second);
        }
    } else {
        for (const PanelRun* r : runs_for(p, norm)) {
            x.push_back(metric_of(*r, h.metric));
            y.push_back(metric_of(*r, h.covariate));
        }
    }
    const auto c = stats::pearson(x, y, o.level);
    e.statistic_name = std::string("Pearson r (") + (model_level ? "model means" : "runs") + ") of " + h.metric +
                       " with " + h.covariate;
    e.statistic = c.r;
    e.ci = {c.lo, c.hi};
    e.p = c.p;
    e.n = c.n;
    if (c.n < 4) {
        e.ci = {};
        e.detail = "fewer than 4 " + std::string(model_level ? "models" : "runs") + " with both values";
        return e;
    }
    e.interval_reflects = std::string("Fisher-z interval over the ") + (model_level ? "models" : "runs");
    e.verdict = tested_verdict(e.ci, h.min_r, h.max_r, e.p, h.alpha, 0.0, e.detail);
    return e;
}

}  // namespace

Evaluation evaluate(const Hypothesis& h, const PanelTable& p, const Options& o, std::uint64_t stream) {
    if (p.runs.empty()) {
        Evaluation e;
        e.detail = "empty (sub-)panel: no runs";
        return e;
    }
    try {
        if (h.type == "compare") return compare(h, p, o, stream);
        if (h.type == "variance_share") return variance_share(h, p, o);
        if (h.type == "regime") return regime(h, p, o);
        if (h.type == "ranking_stable") return ranking(h, p, o);
        if (h.type == "correlation") return correlation(h, p, o);
    } catch (const std::exception& ex) {
        Evaluation e;
        e.detail = std::string("could not evaluate: ") + ex.what();
        return e;
    }
    Evaluation e;
    e.detail = "unknown hypothesis type \"" + h.type + "\"";
    return e;
}

Registry falsification_registry(const PanelTable& p, const HypothesisFile& file, const Options& o) {
    Registry r;
    if (p.runs.empty()) {
        r.reason = "empty panel: no runs";
        return r;
    }
    r.norm = resolve_norm(p, o);
    std::uint64_t stream = 0;
    for (const auto& h : file.hypotheses) {
        HypothesisResult hr;
        hr.hypothesis = h;
        const SubPanel& sp = h.subpanel ? *h.subpanel : file.subpanel;
        if (sp.empty()) hr.subpanel.detail = "no sub-panel declared";
        else hr.subpanel = evaluate(h, restrict_panel(p, sp), o, stream);
        hr.full = evaluate(h, p, o, stream);
        ++stream;
        r.results.push_back(std::move(hr));
    }
    std::stable_sort(r.results.begin(), r.results.end(), [](const HypothesisResult& a, const HypothesisResult& b) {
        return static_cast<int>(a.full.verdict) < static_cast<int>(b.full.verdict);
    });
    return r;
}

namespace {
json eval_json(const Evaluation& e) {
    return {{"verdict", to_string(e.verdict)}, {"statistic_name", e.statistic_name}, {"statistic", num(e.statistic)},
            {"ci", interval(e.ci)},           {"p", num(e.p)},                      {"n", e.n},
            {"detail", e.detail},          {"interval_reflects", e.interval_reflects}};
}
}  // namespace

json to_json(const Registry& r) {
    json j = {{"section", "hypotheses"}, {"ok", r.ok()}, {"norm", r.norm}};
    if (!r.ok()) {
        j["reason"] = r.reason;
        return j;
    }
    j["results"] = json::array();
    for (const auto& x : r.results)
        j["results"].push_back({{"id", x.hypothesis.id},
                                {"claim", x.hypothesis.claim},
                                {"type", x.hypothesis.type},
                                {"subpanel", eval_json(x.subpanel)},
                                {"full", eval_json(x.full)}});
    return j;
}

std::string to_table(const Registry& r) {
    std::string s = heading("5. Falsification registry (falsified first)", r);
    if (!r.ok()) return s;
    TextTable t({"id", "sub-panel", "full panel", "statistic", "value", "95% CI", "p", "n", "claim"});
    for (const auto& x : r.results)
        t.row({x.hypothesis.id, std::string(to_string(x.subpanel.verdict)), std::string(to_string(x.full.verdict)),
               x.full.statistic_name, f(x.full.statistic), ci(x.full.ci), f(x.full.p), std::to_string(x.full.n),
               x.hypothesis.claim});
    s += t.str();
    for (const auto& x : r.results)
        s += "  " + x.hypothesis.id + ": sub-panel " + f(x.subpanel.statistic) + " " + ci(x.subpanel.ci) + " — " +
             x.subpanel.detail + "; full — " + x.full.detail +
             (x.full.interval_reflects.empty() ? "" : " (interval: " + x.full.interval_reflects + ")") + "\n";
    return s;
}

}  // namespace phasemap::audit
