// Control-audit and monitor-evaluation results in a results DB (`--db` of `phasemap
// control-audit` / `monitor-eval`): the result of steer::run_control_audit / run_monitor_eval
// (steer/result.hpp) stored as a store::AuditEntry of kind "control_audit" / "monitor_eval" — its
// to_json document — with the options it was computed with. The store keeps the document, its
// scalar values and a relational table per array of objects (per_prompt, summary_rows; see
// store::AuditEntry). Lives in plan (not steer) so that steer never depends on the store.
//
// control_audit() / monitor_eval() are the whole of the two verbs below their flags: plan (load
// the model, parse interventions / triggers), check the outputs, run, write the JSON file
// atomically, store the entry. Errors: std::invalid_argument / std::runtime_error with one
// message naming the option or file (run_plan.hpp), before any output is created; store::StoreError
// for a locked or foreign DB.
//
// Owns: nothing kept; store_result writes into the caller's Store; control_audit / monitor_eval open the DB
// of ResultOutputs and close it before they return. Results and entries are plain values.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "phasemap/plan/steer_plan.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/result.hpp"
#include "phasemap/store/store.hpp"

namespace phasemap::plan {

inline constexpr const char* kControlAuditKind = "control_audit";
inline constexpr const char* kMonitorEvalKind = "monitor_eval";

// The options a result was computed with (sampling, lengths, interventions, data files, …).
nlohmann::json options_json(const steer::AuditOptions& opt);
nlohmann::json options_json(const steer::MonitorEvalOptions& opt);

// The entry for a result; `source` names the inputs (prompt file, data CSV). Throws
// std::invalid_argument for an empty name.
store::AuditEntry control_audit_entry(const std::string& name, const steer::AuditOptions& opt, const steer::ControlAuditResult& r,
                                      const std::string& source);
store::AuditEntry monitor_eval_entry(const std::string& name, const steer::MonitorEvalOptions& opt, const steer::MonitorEvalResult& r,
                                     const std::string& source);

// Puts one entry into the results DB `db` (replacing a stored one of that kind and name).
void store_result(store::Store& db, const store::AuditEntry& e);

// Where a result goes: a JSON file (to_json, written atomically) and/or a results DB entry.
struct ResultOutputs {
    std::string json;                  // "" = no file
    std::string db;                    // "" = no DB (created when missing)
    std::string name;                  // the entry's name in the DB (must not be empty with a DB)
};

// `phasemap control-audit`: settings.audit.prompts already read from the file `prompts_file`
// (the entry's source; checked not to be the JSON output).
steer::ControlAuditResult control_audit(const ControlAuditSettings& settings, const std::string& prompts_file, const ResultOutputs& out);
// `phasemap monitor-eval`.
steer::MonitorEvalResult monitor_eval(const MonitorEvalSettings& settings, const ResultOutputs& out);

}  // namespace phasemap::plan
