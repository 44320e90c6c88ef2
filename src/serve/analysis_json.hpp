// `phasemap.analysis` of a served request: true / false, or an object of analysis options by
// their front-end names (metrics::AnalysisSettings), checked for JSON types here and then by the
// metric library's one parser (metrics::analysis_options). docs/serve.md lists the fields.
#pragma once
#include <nlohmann/json.hpp>

#include <span>
#include <stdexcept>
#include <string>

#include "phasemap/metrics/analyze.hpp"

namespace phasemap::serve {

// A request field the server refuses: the message names the field (an HTTP 400).
struct FieldError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// The settings of an object `phasemap.analysis` = {"norm": "clipped_mad", "curvature": "angle", …}:
// every key one of AnalysisSettings' front-end names (layer, norm, mad_k, curvature, ct_clip,
// ct_clip_k, late_window, collapse_threshold, regime_cuts, layer_axis, collapse_top1,
// rivalry_margin, diffuse_entropy, shuffles, control_seed) with its JSON type (a string, a number,
// a boolean, a non-negative integer; layer a name or an integer; regime_cuts "a,b,c" or three
// numbers). Throws FieldError naming the field for an unknown key or a wrong type. The values
// themselves are checked by metrics::analysis_options.
metrics::AnalysisSettings analysis_settings(const nlohmann::json& object);

// metrics::analysis_options over the analysed layer names, its MetricError turned into a
// FieldError that names phasemap.analysis.
metrics::AnalysisOptions checked_analysis_options(const metrics::AnalysisSettings& s, std::span<const std::string> analysed_layers);

}  // namespace phasemap::serve
