// from_json of every audit section and the AuditResult document (include/phasemap/audit/result.hpp).
// Each reader mirrors its section's to_json field by field: a field to_json always writes is
// required, one it writes only when set is optional.
#include "phasemap/audit/result.hpp"

#include <cmath>
#include <limits>

#include "common.hpp"
#include "phasemap/audit/report.hpp"

namespace phasemap::audit {

namespace {

const double kNan = std::numeric_limits<double>::quiet_NaN();

// A JSON value with its path in the document, for error messages.
struct In {
    const json& j;
    std::string path;

    [[noreturn]] void fail(const std::string& what) const { throw JsonError((path.empty() ? "(document)" : path) + ": " + what); }
    std::string sub(const std::string& key) const { return path.empty() ? key : path + "." + key; }
    bool has(const char* key) const { return j.is_object() && j.contains(key); }
    In operator[](const char* key) const {
        if (!j.is_object()) fail("expected an object");
        auto it = j.find(key);
        if (it == j.end()) In{j, sub(key)}.fail("missing");
        return In{*it, sub(key)};
    }
    In at(std::size_t i) const { return In{j[i], path + "[" + std::to_string(i) + "]"}; }
    std::vector<In> array() const {
        if (!j.is_array()) fail("expected an array");
        std::vector<In> v;
        for (std::size_t i = 0; i < j.size(); ++i) v.push_back(at(i));
        return v;
    }
    std::string str() const {
        if (!j.is_string()) fail("expected a string");
        return j.get<std::string>();
    }
    // null (a non-finite value) reads as NaN
    double num() const {
        if (j.is_null()) return kNan;
        if (!j.is_number()) fail("expected a number or null");
        return j.get<double>();
    }
    std::size_t size() const {
        if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) fail("expected a count");
        return j.get<std::size_t>();
    }
    int integer() const {
        if (!j.is_number_integer()) fail("expected an integer");
        return j.get<int>();
    }
    bool boolean() const {
        if (!j.is_boolean()) fail("expected true or false");
        return j.get<bool>();
    }
    Interval interval() const {
        if (!j.is_array() || j.size() != 2) fail("expected [lo, hi]");
        return {at(0).num(), at(1).num()};
    }
    Estimate estimate() const {
        const In& e = *this;
        return {e["value"].num(), e["ci"].interval(), e["n"].size()};
    }
    std::vector<std::string> strings() const {
        std::vector<std::string> v;
        for (const In& x : array()) v.push_back(x.str());
        return v;
    }
    // optional members (to_json writes them only when set)
    std::string str_or(const char* key) const { return has(key) ? (*this)[key].str() : std::string(); }
};

// The members every section writes: "section" (must be `name`), "ok", "reason" when !ok; returns
// false when the section did not run (to_json wrote nothing else).
bool header(const In& in, const char* name, SectionResult& r, bool has_norm = true) {
    if (in["section"].str() != name) in["section"].fail(std::string("expected \"") + name + "\"");
    const bool ok = in["ok"].boolean();
    r.reason = ok ? std::string() : in["reason"].str();
    if (!ok && r.reason.empty()) in["reason"].fail("empty reason on a section that did not run");
    if (has_norm) r.norm = in["norm"].str();
    return ok;
}

RegimeRow regime_row(const In& x) {
    RegimeRow r;
    r.model = x["model"].str();
    r.category = x.str_or("category");
    r.n = x["n"].size();
    r.mean = x["mean"].num();
    r.median = x["median"].num();
    r.ci = x["ci"].interval();
    r.label = x["label"].str();
    r.label_share = x["label_share"].num();
    return r;
}

void read(const In& in, RegimeTable& r) {
    header(in, "regime", r);
    for (const In& x : in["models"].array()) r.models.push_back(regime_row(x));
    for (const In& x : in["cells"].array()) r.cells.push_back(regime_row(x));
}

void read(const In& in, NormSensitivity& r) {
    header(in, "normalisation", r, false);
    for (const In& x : in["modes"].array()) {
        NormModeStats m;
        m.mode = x["mode"].str();
        m.runs = x["runs"].size();
        m.models = x["models"].size();
        m.eta2 = x["eta2"].num();
        m.eta2_ci = x["eta2_ci"].interval();
        m.eta2_perm_p = x["eta2_perm_p"].num();
        const In kw = x["kruskal_wallis"];
        m.kw.H = kw["H"].num();
        m.kw.df = kw["df"].num();
        m.kw.p = kw["p"].num();
        r.modes.push_back(m);
    }
    for (const In& x : in["agreement"].array()) {
        NormAgreement a;
        a.mode_a = x["mode_a"].str();
        a.mode_b = x["mode_b"].str();
        a.pairs = x["pairs"].size();
        a.agreement = x["agreement"].num();
        a.kappa = x["kappa"].num();
        a.kappa_ci = x["kappa_ci"].interval();
        r.agreement.push_back(a);
    }
    r.agreement_reason = in.str_or("agreement_reason");
    r.modes_reason = in.str_or("modes_reason");
}

std::vector<stats::AnovaTerm> terms(const In& arr, std::vector<Interval>& cis, std::vector<double>* perm) {
    std::vector<stats::AnovaTerm> v;
    for (const In& x : arr.array()) {
        stats::AnovaTerm t;
        t.term = x["term"].str();
        t.df = x["df"].num();
        t.ss = x["ss"].num();
        t.ms = x["ms"].num();
        t.F = x["F"].num();
        t.p = x["p"].num();
        t.share = x["share"].num();
        if (x.has("share_ci")) cis.push_back(x["share_ci"].interval());
        if (perm && x.has("perm_p")) perm->push_back(x["perm_p"].num());
        v.push_back(t);
    }
    return v;
}

void read(const In& in, VarianceDecomposition& r) {
    const bool ok = header(in, "variance", r);
    r.metric = in["metric"].str();
    r.factor = in["factor"].str();
    if (!ok) return;
    r.n = in["n"].size();
    const In levels = in["levels"];
    r.levels_a = levels[r.factor.c_str()].size();
    r.levels_b = levels["category"].size();
    r.anova.ss_total = in["ss_total"].num();
    r.anova.interaction = in["interaction"].boolean();
    r.anova.type1 = terms(in["type1"], r.type1_ci, nullptr);
    r.anova.type2 = terms(in["type2"], r.type2_ci, &r.type2_perm_p);
    const In reml = in["reml"];
    for (const In& x : reml["components"].array()) {
        r.reml_terms.push_back(x["term"].str());
        r.reml.sigma2.push_back(x["sigma2"].num());
        if (!x["sigma2_ci"].j.is_null()) r.reml_ci.push_back(x["sigma2_ci"].interval());
        r.reml_share.push_back(x["share"].num());
        if (!x["share_ci"].j.is_null()) r.reml_share_ci.push_back(x["share_ci"].interval());
        r.reml.at_zero.push_back(x["at_zero"].boolean());
    }
    r.reml.converged = reml["converged"].boolean();
    r.reml.iterations = reml["iterations"].integer();
    r.reml.loglik = reml["loglik"].num();
    r.reml_reason = reml.str_or("reason");
}

Eigen::MatrixXd matrix(const In& in) {
    const std::vector<In> rows = in.array();
    const Eigen::Index n = Eigen::Index(rows.size()), m = rows.empty() ? 0 : Eigen::Index(rows[0].array().size());
    Eigen::MatrixXd a(n, m);
    for (Eigen::Index i = 0; i < n; ++i) {
        const std::vector<In> row = rows[std::size_t(i)].array();
        if (Eigen::Index(row.size()) != m) rows[std::size_t(i)].fail("rows of unequal length");
        for (Eigen::Index k = 0; k < m; ++k) a(i, k) = row[std::size_t(k)].num();
    }
    return a;
}

void read(const In& in, Topology& r) {
    const bool ok = header(in, "topology", r);
    r.metric = in["metric"].str();
    if (!ok) return;
    r.models = in["models"].strings();
    r.families = in["families"].strings();
    r.categories = in["categories"].strings();
    r.signatures = matrix(in["signatures"]);
    r.distances = matrix(in["distances"]);
    for (const In& x : in["merges"].array())
        r.merges.push_back({x["a"].integer(), x["b"].integer(), x["height"].num(), x["size"].integer()});
    for (const In& x : in["mnn"].array()) {
        if (!x.j.is_array() || x.j.size() != 2) x.fail("expected [a, b]");
        r.mnn.push_back({x.at(0).str(), x.at(1).str()});
    }
    for (const In& x : in["pairs"].array())
        r.pairs.push_back({x["a"].str(), x["b"].str(), x["share"].num(), x["robust"].boolean(), x["same_family"].boolean()});
    r.robust_pairs = in["robust_pairs"].size();
    r.fragmentation = in["fragmentation"].num();
    r.family_nn_share = in["family_nn_share"].num();
    for (const In& x : in["clusters"].array()) r.clusters.push_back(x.integer());
    r.ari = in["ari"].num();
    r.ari_perm_p = in["ari_perm_p"].num();
    r.ari_reason = in.str_or("ari_reason");
}

Evaluation evaluation(const In& x) {
    Evaluation e;
    const std::string v = x["verdict"].str();
    bool known = false;
    for (Verdict k : {Verdict::FALSIFIED, Verdict::INCONCLUSIVE, Verdict::SURVIVED})
        if (v == to_string(k)) e.verdict = k, known = true;
    if (!known) x["verdict"].fail("unknown verdict \"" + v + "\"");
    e.statistic_name = x["statistic_name"].str();
    e.statistic = x["statistic"].num();
    e.ci = x["ci"].interval();
    e.p = x["p"].num();
    e.n = x["n"].size();
    e.detail = x["detail"].str();
    e.interval_reflects = x["interval_reflects"].str();
    return e;
}

void read(const In& in, Registry& r) {
    if (!header(in, "hypotheses", r)) return;
    for (const In& x : in["results"].array()) {
        HypothesisResult h;
        h.hypothesis.id = x["id"].str();
        h.hypothesis.claim = x["claim"].str();
        h.hypothesis.type = x["type"].str();
        h.subpanel = evaluation(x["subpanel"]);
        h.full = evaluation(x["full"]);
        r.results.push_back(std::move(h));
    }
}

void read(const In& in, Cycles& r) {
    if (!header(in, "cycles", r)) return;
    const In pooled = in["pooled_reopening"];
    r.pooled_reopening = pooled["value"].num();
    r.pooled_reopening_ci = pooled["ci"].interval();
    r.pooled_episodes = pooled["episodes"].num();
    for (const In& x : in["models"].array()) {
        CycleRow m;
        m.model = x["model"].str();
        m.runs = x["runs"].size();
        m.episodes = x["episodes"].num();
        m.exit_rate = x["exit_rate"].estimate();
        m.reopening_rate = x["reopening_rate"].estimate();
        const In rates = x["state_rates"];
        for (std::size_t s = 0; s < 4; ++s) {
            m.state_rates[s] = rates[kStates[s]].estimate();
            if (x.has("dwell_mean") && x["dwell_mean"].has(kStates[s])) m.dwell_mean[s] = x["dwell_mean"][kStates[s]].estimate();
        }
        if (x.has("transition_probs")) {
            const std::vector<In> rows = x["transition_probs"].array();
            if (rows.size() != 4) x["transition_probs"].fail("expected 4 rows");
            std::array<std::array<double, 4>, 4> t{};
            for (std::size_t a = 0; a < 4; ++a) {
                const std::vector<In> row = rows[a].array();
                if (row.size() != 4) rows[a].fail("expected 4 values");
                for (std::size_t b = 0; b < 4; ++b) t[a][b] = row[b].num();
            }
            m.transitions = t;
        }
        r.models.push_back(m);
    }
    r.transitions_reason = in.str_or("transitions_reason");
    r.dwell_reason = in.str_or("dwell_reason");
}

std::vector<RankingStability> ranks(const In& arr, const std::string& factor) {
    std::vector<RankingStability> v;
    for (const In& x : arr.array()) {
        RankingStability s;
        s.factor = factor;
        s.level_a = x["level_a"].str();
        s.level_b = x["level_b"].str();
        s.tau.n = x["n_models"].size();
        s.tau.tau = x["tau_b"].num();
        s.tau.p = x["p"].num();
        s.tau.method = x["p_method"].str();
        s.ci = x["ci"].interval();
        v.push_back(s);
    }
    return v;
}

stats::Correlation correlation(const In& x, const char* ci_key) {
    const In c = x[ci_key];
    if (!c.j.is_array() || c.j.size() != 2) c.fail("expected [lo, hi]");
    stats::Correlation k;
    k.r = x["r"].num();
    k.lo = c.at(0).num();
    k.hi = c.at(1).num();
    k.p = x["p"].num();
    return k;
}

void read(const In& in, Robustness& r) {
    if (!header(in, "robustness", r)) return;
    r.temperature = ranks(in["temperature"], "temperature");
    r.temperature_reason = in.str_or("temperature_reason");
    r.budget = ranks(in["n_predict"], "n_predict");
    r.budget_reason = in.str_or("n_predict_reason");
    for (const In& x : in["perplexity"].array()) {
        CorrelationResult c;
        c.x = x["x"].str();
        c.y = x["y"].str();
        c.unit = x["unit"].str();
        c.pearson = correlation(x["pearson"], "fisher_ci");
        c.pearson.n = x["pearson"]["n"].size();
        c.pearson_boot = x["pearson"]["bootstrap_ci"].interval();
        c.spearman = correlation(x["spearman"], "fisher_ci");
        c.spearman.n = x["spearman"]["n"].size();
        c.spearman_boot = x["spearman"]["bootstrap_ci"].interval();
        c.perm_p = x["perm_p"].num();
        r.perplexity.push_back(c);
    }
    r.perplexity_reason = in.str_or("perplexity_reason");
    const In p = in["collapse_predictor"];
    CollapsePredictor& c = r.predictor;
    c.label_definition = p["label_definition"].str();
    if (p.has("reason")) {
        r.predictor_reason = p["reason"].str();
        return;
    }
    c.train = p["train"].size();
    c.test = p["test"].size();
    c.train_positive = p["train_collapsed"].size();
    c.test_positive = p["test_collapsed"].size();
    c.rule = p["late_ct_rule"].str();
    c.threshold = p["late_ct_threshold"].num();
    c.train_accuracy = p["train_accuracy"].num();
    c.test_accuracy = p["test_accuracy"].num();
    c.test_auc = p["test_auc"].num();
    c.fixed_threshold_test_accuracy = p["fixed_threshold_test_accuracy"].num();
    c.majority_test_accuracy = p["majority_test_accuracy"].num();
    c.entropy_metric = p["entropy_metric"].str();
    c.entropy_rule = p["entropy_rule"].str();
    c.entropy_threshold = p["entropy_threshold"].num();
    c.entropy_test_accuracy = p["entropy_test_accuracy"].num();
    c.entropy_test_auc = p["entropy_test_auc"].num();
    c.entropy_reason = p.str_or("entropy_reason");
    // The ROC points (absent from audits written before they were kept: no curve then).
    auto roc = [&](const char* key, std::vector<stats::RocPoint>& out) {
        if (!p.has(key)) return;
        for (const In& x : p[key].array()) out.push_back({x["fpr"].num(), x["tpr"].num()});
    };
    roc("test_roc", c.test_roc);
    roc("entropy_test_roc", c.entropy_test_roc);
}

void read(const In& in, Variants& r) {
    if (!header(in, "variants", r)) return;
    for (const In& x : in["variants"].array()) {
        VariantRow v;
        v.model = x["model"].str();
        v.base = x["base"].str();
        v.n_variant = x["n_variant"].size();
        v.n_base = x["n_base"].size();
        v.label_variant = x["label_variant"].str();
        v.label_base = x["label_base"].str();
        if (x["same_label"].boolean() != (v.label_variant == v.label_base)) x["same_label"].fail("disagrees with the labels");
        v.categories = x["categories"].size();
        v.category_agreement = x["category_agreement"].num();
        v.category_kappa = x["category_kappa"].num();
        v.delta = x["delta_ratio_norm"].num();
        v.delta_ci = x["delta_ci"].interval();
        v.test = x["test"].str();
        v.pairs = x["pairs"].size();
        v.perm_p = x["perm_p"].num();
        v.p_method = x["p_method"].str();
        r.variants.push_back(v);
    }
    r.variant_reason = in.str_or("variant_reason");
    for (const In& x : in["covariates"].array()) {
        CovariateRow c;
        c.covariate = x["covariate"].str();
        c.pearson = correlation(x["pearson"], "ci");
        c.spearman = correlation(x["spearman"], "ci");
        c.pearson.n = c.spearman.n = x["n"].size();
        c.perm_p = x["perm_p"].num();
        r.covariates.push_back(c);
    }
    r.covariate_reason = in.str_or("covariate_reason");
}

void read(const In& in, Controls& r) {
    if (!header(in, "controls", r)) return;
    for (const In& x : in["effects"].array())
        r.effects.push_back({x["effect"].str(), x["statistic"].str(), x["value"].num(), x["p"].num(),
                             x["permutations"].size(), x["scheme"].str()});
    for (const In& x : in["shuffled_order_baselines"].array())
        r.baselines.push_back({x["model"].str(), x["key"].str(), x["runs"].size(), x["median_p"].num(),
                               x["share_p_below_0_05"].estimate()});
    r.baseline_reason = in.str_or("baseline_reason");
}

template <class T>
T read_as(const In& in) {
    T r;
    read(in, r);
    return r;
}

SectionData section_data(const std::string& name, const In& in) {
    if (name == "regime") return read_as<RegimeTable>(in);
    if (name == "normalisation") return read_as<NormSensitivity>(in);
    if (name == "variance") return read_as<VarianceDecomposition>(in);
    if (name == "topology") return read_as<Topology>(in);
    if (name == "hypotheses") return read_as<Registry>(in);
    if (name == "cycles") return read_as<Cycles>(in);
    if (name == "robustness") return read_as<Robustness>(in);
    if (name == "variants") return read_as<Variants>(in);
    if (name == "controls") return read_as<Controls>(in);
    in.fail("unknown audit section \"" + name + "\"");
}

AuditSection section_from(const std::string& name, const In& in) {
    AuditSection s;
    s.name = name;
    if (!in.j.is_object()) in.fail("expected an object");
    // A section that threw: {"section", "ok": false, "reason": "error: …"} and nothing else.
    if (in.j.size() == 3 && in.has("section") && in.has("ok") && in.has("reason") && in["ok"].j == false) {
        if (in["section"].str() != name) in["section"].fail("expected \"" + name + "\"");
        s.error = in["reason"].str();
        return s;
    }
    s.result = section_data(name, in);
    if (in.has("units")) {
        const In u = in["units"];
        s.units = UnitCounts{u["runs"].size(), u["distinct"].size(), u["merged_identical"].size(), u["nested_budget"].size()};
    }
    return s;
}

Options options_from(const In& in) {
    Options o;
    o.metric = in["metric"].str();
    o.factor = in["factor"].str();
    o.norm = in["norm"].str();
    o.bootstrap = in["bootstrap"].size();
    o.reml_bootstrap = in["reml_bootstrap"].size();
    o.permutations = in["permutations"].size();
    if (!in["seed"].j.is_number_unsigned() && !in["seed"].j.is_number_integer()) in["seed"].fail("expected an integer");
    o.seed = in["seed"].j.get<std::uint64_t>();
    o.level = in["level"].num();
    o.robust_share = in["robust_share"].num();
    o.train_fraction = in["train_fraction"].num();
    o.collapse_threshold = in["collapse_threshold"].num();
    const In cuts = in["regime_cuts"];
    if (!cuts.j.is_array() || cuts.j.size() != 3) cuts.fail("expected three cut-points");
    o.cuts = {cuts.at(0).num(), cuts.at(1).num(), cuts.at(2).num()};
    return o;
}

}  // namespace

bool AuditSection::ok() const {
    if (!result) return false;
    return std::visit([](const auto& r) { return r.ok(); }, *result);
}

const std::string& AuditSection::reason() const {
    if (!result) return error;
    return std::visit([](const auto& r) -> const std::string& { return r.reason; }, *result);
}

UnitCounts unit_counts(const RunUnits& u) { return {u.total, u.runs.size(), u.merged_identical, u.nested_budget}; }

json to_json(const UnitCounts& u) {
    return {{"runs", u.runs},
            {"distinct", u.distinct},
            {"merged_identical", u.merged_identical},
            {"nested_budget", u.nested_budget},
            {"rule", "temperature-0 runs with the same generation count once; a shorter-budget prefix of a longer "
                     "run of the same stream is analysed through the longer run"}};
}

json to_json(const AuditSection& s) {
    if (!s.result) return {{"section", s.name}, {"ok", false}, {"reason", s.error}};
    json j = std::visit([](const auto& r) { return to_json(r); }, *s.result);
    if (s.units) j["units"] = to_json(*s.units);
    return j;
}

AuditSection audit_section_from_json(const std::string& name, const json& j) { return section_from(name, In{j, ""}); }

json to_json(const AuditResult& r) {
    json j = {{"phasemap_version", r.phasemap_version},
              {"source", r.source},
              {"options", options_json(r.options)},
              {"panel", {{"models", r.panel_models}, {"runs", r.panel_runs}}},
              {"sections", json::object()}};
    for (const auto& s : r.sections) j["sections"][s.name] = to_json(s);
    return j;
}

AuditResult audit_result_from_json(const json& j) {
    const In in{j, ""};
    AuditResult r;
    r.phasemap_version = in["phasemap_version"].str();
    r.source = in["source"].str();
    r.options = options_from(in["options"]);
    r.panel_models = in["panel"]["models"].size();
    r.panel_runs = in["panel"]["runs"].size();
    const In secs = in["sections"];
    if (!secs.j.is_object()) secs.fail("expected an object keyed by section name");
    for (const auto& [name, v] : secs.j.items()) r.sections.push_back(section_from(name, In{v, secs.sub(name)}));
    return r;
}

Options options_from_json(const json& j) { return options_from(In{j, ""}); }

void from_json(const json& j, RegimeTable& r) { r = read_as<RegimeTable>(In{j, ""}); }
void from_json(const json& j, NormSensitivity& r) { r = read_as<NormSensitivity>(In{j, ""}); }
void from_json(const json& j, VarianceDecomposition& r) { r = read_as<VarianceDecomposition>(In{j, ""}); }
void from_json(const json& j, Topology& r) { r = read_as<Topology>(In{j, ""}); }
void from_json(const json& j, Registry& r) { r = read_as<Registry>(In{j, ""}); }
void from_json(const json& j, Cycles& r) { r = read_as<Cycles>(In{j, ""}); }
void from_json(const json& j, Robustness& r) { r = read_as<Robustness>(In{j, ""}); }
void from_json(const json& j, Variants& r) { r = read_as<Variants>(In{j, ""}); }
void from_json(const json& j, Controls& r) { r = read_as<Controls>(In{j, ""}); }

}  // namespace phasemap::audit
