// One served request's own steering (`phasemap serve`: phasemap.control_vectors and
// phasemap.monitor), built with the same parsers and options as `generate`, applied to that
// request's sequence only.
//
// Owns: the caller owns the Monitor returned; a Request whose controller points to it must not outlive it.
// Throws: std::invalid_argument / std::runtime_error naming the field or file, as run_plan.hpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/plan/run_plan.hpp"
#include "phasemap/steer/monitor.hpp"

namespace phasemap::plan {

// Control vectors FILE[:SCALE] (each read and checked against the model, load_control_vector) as
// `add` interventions at each of their blocks, prefill included (steer::control_vector_interventions):
// they edit that sequence's rows only, where Engine::set_control_vector (llama.cpp's cvec, what
// `generate --control-vector` uses) edits every sequence of the context.
std::vector<capture::Intervention> request_control_vectors(const std::vector<std::string>& specs, const capture::ModelInfo& mi);

// A monitor for one request: monitor_options(settings), watching settings.metric_layer among the
// engine's captured layers (the rule of build_run: "" = the last captured).
std::unique_ptr<steer::Monitor> request_monitor(const MonitorSettings& settings, const capture::ModelInfo& mi,
                                                const std::vector<phasemap::ResolvedLayer>& captured);

}  // namespace phasemap::plan
