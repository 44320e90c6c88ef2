// Control-audit and monitor-evaluation results as results-DB entries (include/phasemap/plan/results.hpp).
#include "phasemap/plan/results.hpp"

#include <stdexcept>

namespace phasemap::plan {

using steer::AuditOptions;
using steer::MonitorEvalOptions;

namespace {

nlohmann::json sampling_json(const capture::SamplingOptions& s) {
    return {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", s.seed}};
}

store::AuditEntry entry(const char* kind, const std::string& name, nlohmann::json options, const nlohmann::json& report,
                        const std::string& source) {
    if (name.empty()) throw std::invalid_argument("the result needs a name (--name)");
    if (!report.is_object() || !report.contains("arms")) throw std::invalid_argument(std::string(kind) + ": not a result document");
    store::AuditEntry e;
    e.kind = kind;
    e.name = name;
    e.ok = true;
    e.options = std::move(options);
    e.data = report;
    e.source = source;
    return e;
}

}  // namespace

nlohmann::json options_json(const AuditOptions& o) {
    nlohmann::json ivs = nlohmann::json::array();
    for (const auto& iv : o.interventions) ivs.push_back(iv.describe());
    nlohmann::json j = {{"prompts", o.prompts.size()}, {"interventions", ivs},     {"n_predict", o.n_predict},
                        {"sampling", sampling_json(o.sampling)},                  {"chat", o.chat},
                        {"layers", o.layers},             {"bootstrap", o.bootstrap}, {"seed", o.seed}};
    if (!o.truth_csv.empty())
        j["truth"] = {{"file", o.truth_csv}, {"limit", o.truth_limit}, {"template", o.truth_template},
                      {"labels", {o.label_true, o.label_false}}};
    if (!o.qa_csv.empty()) j["qa"] = {{"file", o.qa_csv}, {"limit", o.qa_limit}, {"n_predict", o.qa_n_predict}};
    return j;
}

nlohmann::json options_json(const MonitorEvalOptions& o) {
    nlohmann::json trig = nlohmann::json::array();
    for (const auto& t : o.monitor.triggers) trig.push_back(steer::trigger_name(t.kind));
    return {{"data", o.data_csv},
            {"prompt_col", o.prompt_col},
            {"answer_col", o.answer_col},
            {"limit", o.limit},
            {"n_predict", o.n_predict},
            {"sampling", sampling_json(o.sampling)},
            {"chat", o.chat},
            {"triggers", trig},   // empty: collapse, spike and streak (the report lists their parameters)
            {"guard_text", o.monitor.guard_text},
            {"guard_at", o.guard_at},
            {"match", o.match},
            {"bootstrap", o.bootstrap},
            {"seed", o.seed}};
}

store::AuditEntry control_audit_entry(const std::string& name, const AuditOptions& opt, const nlohmann::json& report,
                                      const std::string& source) {
    return entry(kControlAuditKind, name, options_json(opt), report, source);
}

store::AuditEntry monitor_eval_entry(const std::string& name, const MonitorEvalOptions& opt, const nlohmann::json& report,
                                     const std::string& source) {
    return entry(kMonitorEvalKind, name, options_json(opt), report, source);
}

void store_result(store::Store& db, const store::AuditEntry& e) { db.put_audits({e}); }

}  // namespace phasemap::plan
