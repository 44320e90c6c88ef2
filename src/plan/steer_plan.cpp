// Options of the control audit and the monitor evaluation (include/phasemap/plan/steer_plan.hpp).
#include "phasemap/plan/steer_plan.hpp"

#include <fmt/core.h>

#include <stdexcept>

#include "phasemap/plan/run_plan.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "phasemap/steer/spec.hpp"

namespace phasemap::plan {

std::vector<std::string> input_files(const ControlAuditSettings& s) {
    std::vector<std::string> in{s.model};
    if (!s.control_vector.empty()) in.push_back(steer::parse_file_scale(s.control_vector, "--control-vector").path);
    return in;
}

ControlAuditPlan plan_control_audit(const ControlAuditSettings& s) {
    if (s.intervene.empty() && s.control_vector.empty())
        throw std::invalid_argument("declare the intervention: --intervene SPEC or --control-vector FILE");
    // FILE[:SCALE] first: a bad scale is an option error, reported before the model loads.
    std::optional<steer::FileScale> cvs;
    if (!s.control_vector.empty()) cvs = steer::parse_file_scale(s.control_vector, "--control-vector");
    ControlAuditPlan p;
    p.model = capture::Model::load(s.model);
    p.options = s.audit;
    const capture::ModelInfo& mi = p.model->info();
    for (const auto& spec : s.intervene) {
        auto pi = steer::parse_intervention_spec(spec, mi.n_layer);
        if (!pi.prompts.empty()) throw std::invalid_argument(fmt::format("intervention '{}': prompts= is not used by the audit", spec));
        p.options.interventions.push_back(pi.iv);
    }
    if (cvs) {
        const steer::ControlVector cv = load_control_vector(cvs->path, mi);
        for (auto& iv : steer::control_vector_interventions(cv, cvs->scale)) p.options.interventions.push_back(iv);
    }
    return p;
}

MonitorEvalPlan plan_monitor_eval(const MonitorEvalSettings& s) {
    MonitorEvalPlan p;
    p.options = s.eval;
    for (const auto& t : s.triggers) p.options.monitor.triggers.push_back(steer::parse_trigger(t));
    p.model = capture::Model::load(s.model);
    return p;
}

}  // namespace phasemap::plan
