// Control-audit and monitor-evaluation results as results-DB entries (include/phasemap/plan/results.hpp).
#include "phasemap/plan/results.hpp"

#include <filesystem>
#include <stdexcept>

#include "phasemap/capture/capture.hpp"
#include "phasemap/io/files.hpp"

namespace phasemap::plan {

using steer::AuditOptions;
using steer::MonitorEvalOptions;

namespace {

nlohmann::json sampling_json(const capture::SamplingOptions& s) {
    return {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", s.seed}};
}

store::AuditEntry entry(const char* kind, const std::string& name, nlohmann::json options, nlohmann::json report,
                        const std::string& source) {
    if (name.empty()) throw std::invalid_argument("the result needs a name (--name)");
    store::AuditEntry e;
    e.kind = kind;
    e.name = name;
    e.ok = true;
    e.options = std::move(options);
    e.data = std::move(report);
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
    nlohmann::json j = {{"data", o.data_csv},
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
    if (!o.metric_layer.empty()) j["layers"] = o.layers, j["metric_layer"] = o.metric_layer;
    return j;
}

store::AuditEntry control_audit_entry(const std::string& name, const AuditOptions& opt, const steer::ControlAuditResult& r,
                                      const std::string& source) {
    return entry(kControlAuditKind, name, options_json(opt), steer::to_json(r), source);
}

store::AuditEntry monitor_eval_entry(const std::string& name, const MonitorEvalOptions& opt, const steer::MonitorEvalResult& r,
                                     const std::string& source) {
    return entry(kMonitorEvalKind, name, options_json(opt), steer::to_json(r), source);
}

void store_result(store::Store& db, const store::AuditEntry& e) { db.put_audits({e}); }

namespace {

// The steps both verbs share around their driver: the outputs checked (JSON path against every
// input; the thread count, which may come from $PHASEMAP_THREADS) before the DB is opened — a
// locked or foreign DB fails before anything is decoded — then run, write, store.
template <class Result, class Run, class Entry>
Result run_and_keep(const ResultOutputs& out, const std::vector<std::string>& inputs, int n_threads, Run run, Entry make_entry) {
    if (!out.json.empty()) io::check_output_path(out.json, std::vector<std::filesystem::path>(inputs.begin(), inputs.end()), "-o");
    if (n_threads <= 0) capture::default_threads();  // throws for a bad $PHASEMAP_THREADS before --db creates a file
    const auto db = out.db.empty() ? nullptr : store::Store::open(out.db);
    Result r = run();
    if (!out.json.empty()) io::write_file_atomic(out.json, steer::to_json(r).dump(2) + "\n");
    if (db) store_result(*db, make_entry(r));
    return r;
}

void check_name(const ResultOutputs& out) {
    if (!out.db.empty() && out.name.empty()) throw std::invalid_argument("--name must not be empty");
}

}  // namespace

steer::ControlAuditResult control_audit(const ControlAuditSettings& settings, const std::string& prompts_file, const ResultOutputs& out) {
    check_name(out);
    const ControlAuditPlan p = plan_control_audit(settings);
    const AuditOptions& o = p.options;
    std::vector<std::string> inputs = input_files(settings);
    inputs.insert(inputs.end(), {prompts_file, o.truth_csv, o.qa_csv, out.db});
    return run_and_keep<steer::ControlAuditResult>(
        out, inputs, o.n_threads, [&] { return steer::run_control_audit(p.model, o); },
        [&](const steer::ControlAuditResult& r) { return control_audit_entry(out.name, o, r, prompts_file); });
}

steer::MonitorEvalResult monitor_eval(const MonitorEvalSettings& settings, const ResultOutputs& out) {
    check_name(out);
    const MonitorEvalPlan p = plan_monitor_eval(settings);
    const MonitorEvalOptions& o = p.options;
    return run_and_keep<steer::MonitorEvalResult>(
        out, {settings.model, o.data_csv, out.db}, o.n_threads, [&] { return steer::run_monitor_eval(p.model, o); },
        [&](const steer::MonitorEvalResult& r) { return monitor_eval_entry(out.name, o, r, o.data_csv); });
}

}  // namespace phasemap::plan
