// The options of the steer drivers (steer::run_control_audit, steer::run_monitor_eval) built
// from what `control-audit` and `monitor-eval` bind: the model loaded, interventions and the
// control vector (FILE[:SCALE], steer::parse_file_scale) parsed and checked against it, the
// triggers parsed. Throws std::invalid_argument / std::runtime_error with one message naming the
// option or file (see run_plan.hpp).
//
// Owns: the options returned own the loaded model (shared_ptr) and parsed vectors; nothing refers to the
// settings after the call.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/eval.hpp"

namespace phasemap::plan {

struct ControlAuditSettings {
    std::string model;
    std::vector<std::string> intervene;  // SPEC (no prompts= qualifier: every prompt carries them)
    std::string control_vector;          // FILE[:SCALE] ("" = none), applied at every position
    steer::AuditOptions audit;           // prompts, sampling, lengths, data sets, … as bound
};

struct ControlAuditPlan {
    std::shared_ptr<capture::Model> model;
    steer::AuditOptions options;         // audit with the interventions filled in
};

// Every file the settings read besides the prompt / data files (model, control vector).
std::vector<std::string> input_files(const ControlAuditSettings& s);
ControlAuditPlan plan_control_audit(const ControlAuditSettings& s);

struct MonitorEvalSettings {
    std::string model;
    std::vector<std::string> triggers;   // steer::parse_trigger grammar
    steer::MonitorEvalOptions eval;      // as bound
};

struct MonitorEvalPlan {
    std::shared_ptr<capture::Model> model;
    steer::MonitorEvalOptions options;   // eval with the triggers filled in
};

MonitorEvalPlan plan_monitor_eval(const MonitorEvalSettings& s);

}  // namespace phasemap::plan
