// Sections 1 (regime table) and 2 (normalisation sensitivity).
#include <algorithm>
#include <set>

#include "common.hpp"
#include "phasemap/stats/stats.hpp"

namespace phasemap::audit {

using namespace detail;

namespace {

RegimeRow regime_row(std::string model, std::string category, const std::vector<double>& xs, const Options& o,
                     std::mt19937_64& rng) {
    RegimeRow r;
    r.model = std::move(model);
    r.category = std::move(category);
    r.n = xs.size();
    r.mean = stats::mean(xs);
    r.median = stats::median(xs);
    r.label = regime_label(r.mean, o.cuts);
    if (xs.size() >= 2) {
        const std::vector<double> draws = stats::bootstrap_draws(xs, o.bootstrap, stats::Statistic::mean, rng);
        std::size_t same = 0;
        for (double d : draws)
            if (regime_label(d, o.cuts) == r.label) ++same;
        r.ci = stats::percentile_interval(draws, o.level);
        r.label_share = static_cast<double>(same) / static_cast<double>(draws.size());
    }
    return r;
}

// The key pairing one generation across normalisation modes.
std::string pair_key(const PanelRun& r) {
    return fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}", r.model, r.category, r.prompt, r.temperature, r.n_predict,
                       r.seed);
}

}  // namespace

RegimeTable regime_table(const PanelTable& p, const Options& o) {
    RegimeTable t;
    if (p.runs.empty()) {
        t.reason = "empty panel: no runs";
        return t;
    }
    t.norm = resolve_norm(p, o);
    std::map<std::string, std::vector<double>> by_model;
    std::map<std::pair<std::string, std::string>, std::vector<double>> by_cell;
    for (const PanelRun* r : runs_for(p, t.norm)) {
        const double v = metric_of(*r, "ratio_norm");
        if (!std::isfinite(v)) continue;
        by_model[r->model].push_back(v);
        by_cell[{r->model, r->category}].push_back(v);
    }
    if (by_model.empty()) {
        t.reason = "missing metric: no run has a finite ratio_norm";
        return t;
    }
    auto rng = rng_for(o, kRegime);
    for (const auto& [m, xs] : by_model) t.models.push_back(regime_row(m, "", xs, o, rng));
    for (const auto& [k, xs] : by_cell) t.cells.push_back(regime_row(k.first, k.second, xs, o, rng));
    return t;
}

NormSensitivity normalisation_sensitivity(const PanelTable& p, const Options& o) {
    NormSensitivity s;
    if (p.runs.empty()) {
        s.reason = "empty panel: no runs";
        return s;
    }
    // mode → (pair key → (model, ratio_norm)); modes are the runs' `norm` values and the
    // "ratio_norm@<mode>" metrics of a run.
    std::map<std::string, std::map<std::string, std::pair<std::string, double>>> modes;
    for (const PanelRun* rp : distinct_runs(p, "", false, true).runs) {
        const PanelRun& r = *rp;
        const std::string key = pair_key(r);
        const double v = metric_of(r, "ratio_norm");
        if (std::isfinite(v)) modes[r.norm].emplace(key, std::make_pair(r.model, v));
        for (const auto& [name, val] : r.metrics)
            if (name.rfind("ratio_norm@", 0) == 0 && std::isfinite(val))
                modes[name.substr(11)].emplace(key, std::make_pair(r.model, val));
    }
    if (modes.empty()) {
        s.reason = "missing metric: no run has a finite ratio_norm";
        return s;
    }
    std::set<std::string> models;
    for (const auto& [m, runs] : modes)
        for (const auto& [k, mv] : runs) models.insert(mv.first);
    if (models.size() < 2)
        s.modes_reason = "single model (" + *models.begin() + "): η² and Kruskal–Wallis between models need ≥ 2 models";
    auto rng_eta = rng_for(o, kNormEta);
    auto rng_perm = rng_for(o, kNormEtaPerm);
    for (const auto& [mode, runs] : modes) {
        if (!s.modes_reason.empty()) break;
        NormModeStats ms;
        ms.mode = mode;
        std::vector<double> x;
        std::vector<std::string> lab;
        for (const auto& [k, mv] : runs) {
            lab.push_back(mv.first);
            x.push_back(mv.second);
        }
        const Codes c = encode(lab);
        ms.runs = x.size();
        ms.models = c.names.size();
        ms.eta2 = stats::eta_squared(x, c.code);
        ms.kw = stats::kruskal_wallis(x, c.code);
        // Bootstrap within model; permutation of the model labels.
        std::vector<std::vector<std::size_t>> members(c.names.size());
        for (std::size_t i = 0; i < x.size(); ++i) members[static_cast<std::size_t>(c.code[i])].push_back(i);
        std::vector<double> draws(o.bootstrap), xb(x.size());
        std::vector<int> gb(x.size());
        for (auto& d : draws) {
            std::size_t j = 0;
            for (std::size_t g = 0; g < members.size(); ++g)
                for (std::size_t i = 0; i < members[g].size(); ++i, ++j) {
                    xb[j] = x[members[g][stats::uniform_index(rng_eta, members[g].size() - 1)]];
                    gb[j] = static_cast<int>(g);
                }
            d = stats::eta_squared(xb, gb);
        }
        ms.eta2_ci = stats::percentile_interval(draws, o.level);
        std::vector<std::uint32_t> order(x.size());
        std::vector<double> perm(o.permutations);
        std::vector<int> gp(x.size());
        for (auto& v : perm) {
            for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
            stats::shuffle_in_place(order, rng_perm);
            for (std::size_t i = 0; i < x.size(); ++i) gp[i] = c.code[order[i]];
            v = stats::eta_squared(x, gp);
        }
        ms.eta2_perm_p = stats::permutation_p(ms.eta2, perm);
        s.modes.push_back(std::move(ms));
    }
    if (modes.size() < 2) {
        s.agreement_reason = "one normalisation mode only (" + modes.begin()->first +
                             "): label agreement needs runs in ≥ 2 modes";
        return s;
    }
    auto rng_k = rng_for(o, kNormKappa);
    for (auto a = modes.begin(); a != modes.end(); ++a)
        for (auto b = std::next(a); b != modes.end(); ++b) {
            NormAgreement ag;
            ag.mode_a = a->first;
            ag.mode_b = b->first;
            std::vector<std::string> la, lb;
            for (const auto& [k, mv] : a->second) {
                const auto it = b->second.find(k);
                if (it == b->second.end()) continue;
                la.push_back(regime_label(mv.second, o.cuts));
                lb.push_back(regime_label(it->second.second, o.cuts));
            }
            ag.pairs = la.size();
            if (!la.empty()) {
                std::size_t same = 0;
                for (std::size_t i = 0; i < la.size(); ++i) same += la[i] == lb[i];
                ag.agreement = static_cast<double>(same) / static_cast<double>(la.size());
                ag.kappa = stats::cohens_kappa(la, lb);
                std::vector<double> draws(o.bootstrap);
                std::vector<std::string> ra(la.size()), rb(la.size());
                for (auto& d : draws) {
                    for (std::size_t i = 0; i < la.size(); ++i) {
                        const auto j = stats::uniform_index(rng_k, la.size() - 1);
                        ra[i] = la[j];
                        rb[i] = lb[j];
                    }
                    d = stats::cohens_kappa(ra, rb);
                }
                ag.kappa_ci = stats::percentile_interval(draws, o.level);
            }
            s.agreement.push_back(std::move(ag));
        }
    return s;
}

// ------------------------------------------------------------------ output
namespace {
json row_json(const RegimeRow& r) {
    json j = {{"model", r.model}, {"n", r.n}, {"mean", num(r.mean)}, {"median", num(r.median)},
              {"ci", interval(r.ci)}, {"label", r.label}, {"label_share", num(r.label_share)}};
    if (!r.category.empty()) j["category"] = r.category;
    return j;
}
}  // namespace

json to_json(const RegimeTable& r) {
    json j = {{"section", "regime"}, {"ok", r.ok()}, {"norm", r.norm}};
    if (!r.ok()) j["reason"] = r.reason;
    j["models"] = json::array();
    j["cells"] = json::array();
    for (const auto& x : r.models) j["models"].push_back(row_json(x));
    for (const auto& x : r.cells) j["cells"].push_back(row_json(x));
    return j;
}

std::string to_table(const RegimeTable& r) {
    std::string s = heading("1. Regime table (ratio_norm)", r);
    if (!r.ok()) return s;
    TextTable t({"model", "category", "n", "mean", "median", "95% CI", "regime", "label share"});
    for (const auto* rows : {&r.models, &r.cells})
        for (const auto& x : *rows)
            t.row({x.model, x.category.empty() ? "(all)" : x.category, std::to_string(x.n), f(x.mean), f(x.median),
                   ci(x.ci), x.label, f(x.label_share)});
    return s + t.str();
}

json to_json(const NormSensitivity& r) {
    json j = {{"section", "normalisation"}, {"ok", r.ok()}};
    if (!r.ok()) j["reason"] = r.reason;
    j["modes"] = json::array();
    for (const auto& m : r.modes)
        j["modes"].push_back({{"mode", m.mode},
                              {"runs", m.runs},
                              {"models", m.models},
                              {"eta2", num(m.eta2)},
                              {"eta2_ci", interval(m.eta2_ci)},
                              {"eta2_perm_p", num(m.eta2_perm_p)},
                              {"kruskal_wallis", {{"H", num(m.kw.H)}, {"df", num(m.kw.df)}, {"p", num(m.kw.p)}}}});
    j["agreement"] = json::array();
    for (const auto& a : r.agreement)
        j["agreement"].push_back({{"mode_a", a.mode_a},
                                  {"mode_b", a.mode_b},
                                  {"pairs", a.pairs},
                                  {"agreement", num(a.agreement)},
                                  {"kappa", num(a.kappa)},
                                  {"kappa_ci", interval(a.kappa_ci)}});
    if (!r.agreement_reason.empty()) j["agreement_reason"] = r.agreement_reason;
    if (!r.modes_reason.empty()) j["modes_reason"] = r.modes_reason;
    return j;
}

std::string to_table(const NormSensitivity& r) {
    std::string s = heading("2. Normalisation sensitivity (ratio_norm by model)", r);
    if (!r.ok()) return s;
    if (!r.modes_reason.empty()) {
        s += "  per mode: " + r.modes_reason + "\n";
    } else {
        TextTable t({"mode", "runs", "models", "η²", "95% CI", "perm p", "KW H", "df", "p"});
        for (const auto& m : r.modes)
            t.row({m.mode, std::to_string(m.runs), std::to_string(m.models), f(m.eta2), ci(m.eta2_ci),
                   f(m.eta2_perm_p), f(m.kw.H), f(m.kw.df), f(m.kw.p)});
        s += t.str();
    }
    if (!r.agreement_reason.empty()) return s + "  label agreement: " + r.agreement_reason + "\n";
    TextTable a({"mode a", "mode b", "paired runs", "agreement", "Cohen κ", "95% CI"});
    for (const auto& x : r.agreement)
        a.row({x.mode_a, x.mode_b, std::to_string(x.pairs), f(x.agreement), f(x.kappa), ci(x.kappa_ci)});
    return s + a.str();
}

}  // namespace phasemap::audit
