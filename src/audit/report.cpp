// Section dispatch and PanelTable JSON.
#include "phasemap/audit/report.hpp"

#include <cmath>
#include <stdexcept>

#include "common.hpp"

namespace phasemap {

void to_json(nlohmann::json& j, const PanelModel& m) {
    j = {{"label", m.label},
         {"family", m.family},
         {"architecture", m.architecture},
         {"sha256", m.sha256},
         {"variant_of", m.variant_of ? nlohmann::json(*m.variant_of) : nlohmann::json(nullptr)},
         {"covariates", m.covariates}};
}

void from_json(const nlohmann::json& j, PanelModel& m) {
    m.label = j.at("label").get<std::string>();
    m.family = j.value("family", std::string());
    m.architecture = j.value("architecture", std::string());
    m.sha256 = j.value("sha256", std::string());
    m.variant_of.reset();
    if (j.contains("variant_of") && j["variant_of"].is_string() && !j["variant_of"].get<std::string>().empty())
        m.variant_of = j["variant_of"].get<std::string>();
    m.covariates.clear();
    if (j.contains("covariates"))
        for (const auto& [k, v] : j["covariates"].items())
            m.covariates[k] = v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

void to_json(nlohmann::json& j, const PanelRun& r) {
    nlohmann::json met = nlohmann::json::object();
    for (const auto& [k, v] : r.metrics) met[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    j = {{"run_id", r.run_id},           {"model", r.model},   {"category", r.category},
         {"prompt", r.prompt},           {"temperature", r.temperature}, {"n_predict", r.n_predict},
         {"seed", r.seed},               {"n_generated", r.n_generated}, {"text", r.text},
         {"metrics", met},               {"regime", r.regime}, {"norm", r.norm}};
    if (!r.tokens_digest.empty()) j["tokens_digest"] = r.tokens_digest;
}

void from_json(const nlohmann::json& j, PanelRun& r) {
    r.run_id = j.value("run_id", std::string());
    r.model = j.at("model").get<std::string>();
    r.category = j.value("category", std::string());
    r.prompt = j.value("prompt", std::string());
    r.temperature = j.value("temperature", 0.0);
    r.n_predict = j.value("n_predict", int64_t{0});
    r.seed = j.value("seed", uint64_t{0});
    r.n_generated = j.value("n_generated", int64_t{0});
    r.text = j.value("text", std::string());
    r.tokens_digest = j.value("tokens_digest", std::string());
    r.metrics.clear();
    if (j.contains("metrics"))
        for (const auto& [k, v] : j["metrics"].items())
            r.metrics[k] = v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
    r.regime = j.value("regime", std::string());
    r.norm = j.value("norm", std::string());
}

void to_json(nlohmann::json& j, const PanelTable& t) { j = {{"models", t.models}, {"runs", t.runs}}; }

void from_json(const nlohmann::json& j, PanelTable& t) {
    t.models = j.value("models", std::vector<PanelModel>{});
    t.runs = j.value("runs", std::vector<PanelRun>{});
}

}  // namespace phasemap

namespace phasemap::audit {

const std::vector<std::string>& section_names() {
    static const std::vector<std::string> names = {"regime",  "normalisation", "variance", "topology", "hypotheses",
                                                   "cycles",  "robustness",    "variants", "controls"};
    return names;
}

namespace {
template <class R>
SectionOutput wrap(const std::string& name, const R& r) {
    SectionOutput s;
    s.name = name;
    s.ok = r.ok();
    s.reason = r.reason;
    s.section.name = name;
    s.section.result = r;
    s.data = to_json(s.section);
    s.table = to_table(r);
    return s;
}
// The section plus the statistical units its runs formed (docs/audit.md, "Dependence").
template <class R>
SectionOutput wrap(const std::string& name, const R& r, const PanelTable& p, bool all_modes = false) {
    SectionOutput s = wrap(name, r);
    if (!s.ok || p.runs.empty() || (r.norm.empty() && !all_modes)) return s;
    const RunUnits u = distinct_runs(p, r.norm, false, all_modes);
    s.section.units = unit_counts(u);
    s.data = to_json(s.section);
    if (u.merged_identical + u.nested_budget > 0)
        s.table += fmt::format("  units: {} distinct of {} runs ({} identical temperature-0 runs merged, {} "
                               "shorter-budget prefixes analysed through their longer run)\n",
                               u.runs.size(), u.total, u.merged_identical, u.nested_budget);
    return s;
}
}  // namespace

SectionOutput run_section(const std::string& name, const PanelTable& p, const Options& o,
                          const HypothesisFile* hypotheses) {
    o.validate();
    try {
        if (name == "regime") return wrap(name, regime_table(p, o), p);
        if (name == "normalisation") return wrap(name, normalisation_sensitivity(p, o), p, true);
        if (name == "variance") return wrap(name, variance_decomposition(p, o), p);
        if (name == "topology") return wrap(name, topology(p, o), p);
        if (name == "hypotheses") {
            if (!hypotheses) {
                Registry r;
                r.reason = "no hypotheses file given (--hypotheses FILE)";
                return wrap(name, r);
            }
            return wrap(name, falsification_registry(p, *hypotheses, o), p);
        }
        if (name == "cycles") return wrap(name, cycles(p, o), p);
        if (name == "robustness") return wrap(name, robustness(p, o), p);
        if (name == "variants") return wrap(name, variants(p, o), p);
        if (name == "controls") return wrap(name, controls(p, o), p);
    } catch (const std::exception& e) {
        // A statistic that cannot be computed on this panel: the section reports it, the others run.
        SectionOutput s;
        s.name = name;
        s.reason = std::string("error: ") + e.what();
        s.section.name = name;
        s.section.error = s.reason;
        s.data = to_json(s.section);
        s.table = "== " + name + "\n  " + s.reason + "\n";
        return s;
    }
    std::string list;
    for (const auto& n : section_names()) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown audit section \"" + name + "\" (sections: " + list + ")");
}

json options_json(const Options& o) {
    return {{"metric", o.metric},
            {"factor", o.factor},
            {"norm", o.norm},
            {"bootstrap", o.bootstrap},
            {"reml_bootstrap", o.reml_bootstrap},
            {"permutations", o.permutations},
            {"seed", o.seed},
            {"level", o.level},
            {"robust_share", o.robust_share},
            {"train_fraction", o.train_fraction},
            {"collapse_threshold", o.collapse_threshold},
            {"regime_cuts", {o.cuts.underactive_below, o.cuts.adaptive_below, o.cuts.transition_below}}};
}

}  // namespace phasemap::audit
