// phasemap.analysis → metrics::AnalysisSettings (types only) → metrics::analysis_options (values).
#include "analysis_json.hpp"

#include <fmt/core.h>

#include <cstdint>
#include <limits>

namespace phasemap::serve {

using nlohmann::json;

namespace {

std::string field(const std::string& k) { return "'phasemap.analysis." + k + "'"; }

std::string text(const json& v, const std::string& k) {
    if (!v.is_string()) throw FieldError(field(k) + " must be a string");
    return v.get<std::string>();
}
double number(const json& v, const std::string& k) {
    if (!v.is_number()) throw FieldError(field(k) + " must be a number");
    return v.get<double>();
}
bool boolean(const json& v, const std::string& k) {
    if (!v.is_boolean()) throw FieldError(field(k) + " must be true or false");
    return v.get<bool>();
}
std::uint64_t count(const json& v, const std::string& k) {
    // nlohmann keeps a non-negative integer literal as unsigned; a negative one is signed.
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer()) throw FieldError(field(k) + " must be a non-negative integer");
    throw FieldError(field(k) + " must be an integer");
}

}  // namespace

metrics::AnalysisSettings analysis_settings(const json& o) {
    if (!o.is_object()) throw FieldError("'phasemap.analysis' must be true, false or an object of analysis options");
    metrics::AnalysisSettings s;
    for (const auto& [k, v] : o.items()) {
        if (k == "layer") {
            if (v.is_string()) s.layer = v.get<std::string>();
            else if (v.is_number_integer()) s.layer = std::to_string(v.get<std::int64_t>());
            else throw FieldError(field(k) + " must be a layer name or an integer");
        } else if (k == "norm") s.norm = text(v, k);
        else if (k == "mad_k") s.mad_k = number(v, k);
        else if (k == "curvature") s.curvature = text(v, k);
        else if (k == "ct_clip") s.ct_clip = boolean(v, k);
        else if (k == "ct_clip_k") s.ct_clip_k = number(v, k);
        else if (k == "late_window") s.late_window = number(v, k);
        else if (k == "collapse_threshold") s.collapse_threshold = number(v, k);
        else if (k == "regime_cuts") {
            // The text "a,b,c" that parse_regime_cuts reads, or three numbers written in that form
            // (shortest round-trip digits, so the values arrive unchanged).
            if (v.is_string()) s.regime_cuts = v.get<std::string>();
            else if (v.is_array() && v.size() == 3) {
                for (size_t i = 0; i < 3; ++i) {
                    if (!v[i].is_number()) throw FieldError(field(k) + " must be \"a,b,c\" or an array of three numbers");
                    s.regime_cuts += fmt::format("{}{}", i ? "," : "", v[i].get<double>());
                }
            } else throw FieldError(field(k) + " must be \"a,b,c\" or an array of three numbers");
        } else if (k == "layer_axis") s.layer_axis = boolean(v, k);
        else if (k == "collapse_top1") s.collapse_top1 = number(v, k);
        else if (k == "rivalry_margin") s.rivalry_margin = number(v, k);
        else if (k == "diffuse_entropy") s.diffuse_entropy = number(v, k);
        else if (k == "shuffles") {
            const std::uint64_t n = count(v, k);
            // analysis_options checks the range; a value beyond size_t would wrap before it.
            s.shuffles = n > std::numeric_limits<std::size_t>::max() ? std::numeric_limits<std::size_t>::max() : std::size_t(n);
        } else if (k == "control_seed") s.control_seed = count(v, k);
        else
            throw FieldError(fmt::format("unknown field 'phasemap.analysis.{}' (the options are layer, norm, mad_k, curvature, ct_clip, ct_clip_k, "
                                         "late_window, collapse_threshold, regime_cuts, layer_axis, collapse_top1, rivalry_margin, "
                                         "diffuse_entropy, shuffles, control_seed)", k));
    }
    return s;
}

metrics::AnalysisOptions checked_analysis_options(const metrics::AnalysisSettings& s, std::span<const std::string> analysed_layers) {
    try {
        return metrics::analysis_options(s, analysed_layers);
    } catch (const metrics::MetricError& e) {
        throw FieldError(std::string("phasemap.analysis: ") + e.what());
    }
}

}  // namespace phasemap::serve
