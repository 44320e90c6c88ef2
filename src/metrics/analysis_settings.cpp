// The one parser of the analysis options as the front ends name them (analyze.hpp: AnalysisSettings).
#include <string>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

AnalysisOptions analysis_options(const AnalysisSettings& s, std::span<const std::string> layer_names) {
    AnalysisOptions o;
    if (!s.layer.empty()) o.layer = parse_layer_choice(s.layer, layer_names);
    const auto nm = parse_norm_mode(s.norm);
    if (!nm) throw MetricError("unknown --norm '" + s.norm + "' (use raw or clipped_mad)");
    o.token.norm = *nm;
    const auto cv = parse_curvature(s.curvature);
    if (!cv) throw MetricError("unknown --curvature '" + s.curvature + "' (use one_minus_cos, angle or second_diff)");
    o.token.curvature = *cv;
    o.token.mad_k = s.mad_k;
    o.token.ct_clip = s.ct_clip;
    o.token.ct_clip_k = s.ct_clip_k;
    o.token.late_window = s.late_window;
    o.token.collapse_threshold = s.collapse_threshold;
    if (!s.regime_cuts.empty()) o.token.regime_cuts = parse_regime_cuts(s.regime_cuts);
    o.layer_axis = s.layer_axis;
    o.states.collapse_top1 = s.collapse_top1;
    o.states.rivalry_margin = s.rivalry_margin;
    o.states.diffuse_entropy = s.diffuse_entropy;
    o.controls.shuffles = s.shuffles;
    o.controls.seed = s.control_seed;
    o.validate();
    return o;
}

}  // namespace phasemap::metrics
