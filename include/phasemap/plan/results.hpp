// Control-audit and monitor-evaluation results in a results DB (`--db` of `phasemap
// control-audit` / `monitor-eval`): the report document of steer::run_control_audit /
// run_monitor_eval stored as a store::AuditEntry of kind "control_audit" / "monitor_eval", with
// the options it was computed with. The store keeps the document, its scalar values and a
// relational table per array of objects (per_prompt, summary_rows; see store::AuditEntry).
// Lives in plan (not steer) so that steer never depends on the store.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "phasemap/steer/eval.hpp"
#include "phasemap/store/store.hpp"

namespace phasemap::plan {

inline constexpr const char* kControlAuditKind = "control_audit";
inline constexpr const char* kMonitorEvalKind = "monitor_eval";

// The options a result was computed with (sampling, lengths, interventions, data files, …).
nlohmann::json options_json(const steer::AuditOptions& opt);
nlohmann::json options_json(const steer::MonitorEvalOptions& opt);

// The entry for a report document; `source` names the inputs (prompt file, data CSV).
// Throws std::invalid_argument for an empty name or a document without "arms".
store::AuditEntry control_audit_entry(const std::string& name, const steer::AuditOptions& opt, const nlohmann::json& report,
                                      const std::string& source);
store::AuditEntry monitor_eval_entry(const std::string& name, const steer::MonitorEvalOptions& opt, const nlohmann::json& report,
                                     const std::string& source);

// Puts one entry into the results DB `db` (replacing a stored one of that kind and name).
void store_result(store::Store& db, const store::AuditEntry& e);

}  // namespace phasemap::plan
