// Per-request steering for `phasemap serve` (include/phasemap/plan/request_plan.hpp).
#include "phasemap/plan/request_plan.hpp"

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/spec.hpp"

namespace phasemap::plan {

std::vector<capture::Intervention> request_control_vectors(const std::vector<std::string>& specs, const capture::ModelInfo& mi) {
    std::vector<capture::Intervention> out;
    for (const auto& spec : specs) {
        const steer::FileScale fsc = steer::parse_file_scale(spec, "phasemap.control_vectors");
        const steer::ControlVector cv = load_control_vector(fsc.path, mi);
        for (auto& iv : steer::control_vector_interventions(cv, fsc.scale)) out.push_back(std::move(iv));
    }
    return out;
}

std::unique_ptr<steer::Monitor> request_monitor(const MonitorSettings& settings, const capture::ModelInfo& mi,
                                                const std::vector<phasemap::ResolvedLayer>& captured) {
    if (captured.empty()) throw std::invalid_argument("the monitor needs captured layers (the server runs with --layers none)");
    steer::MonitorOptions mo = monitor_options(settings, mi);
    if (!settings.metric_layer.empty()) {
        std::vector<std::string> names;
        for (const auto& l : captured) names.push_back(l.label);
        mo.layer = metrics::resolve_layer_index(metrics::parse_layer_choice(settings.metric_layer, names), names.size());
    }
    return std::make_unique<steer::Monitor>(mo, captured.size(), size_t(mi.n_embd));
}

}  // namespace phasemap::plan
