// Per-run summary as JSON, in the layout of LIMEN's summary.json (top-level facts, `input`,
// `summary` with n/median/q1/q3 per metric under LIMEN's names) extended with phasemap's
// token-axis, output-state and control sections. Metric names are METRICS.md's names; missing
// values are null with a `<name>_missing_reason` beside them.
//
// Owns: nothing; the JSON built or read is an owned value. Throws: the reader, as stated below.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "phasemap/metrics/analyze.hpp"

namespace phasemap::io {

struct SummaryContext {
    std::string prompt;
    std::string generated_text;
    std::vector<size_t> hidden_states_shape;    // as stored/captured [T, L', d]
    std::vector<size_t> logits_shape;           // empty when none
    std::string source_npz_sha256;              // empty when not from a file
    bool embedding_output_included = false;
    std::vector<std::string> token_texts;       // per token (may be empty)
    std::vector<int64_t> token_ids;             // per token (may be empty)
    nlohmann::json provenance;                  // phasemap metadata (model, engine, sampling), or null
};

nlohmann::json summary_json(const metrics::RunSummary& s, const SummaryContext& ctx);

// What a reader of a per-run summary (`phasemap report --runs-json`) takes from it, typed: the
// fields summary_json() writes that the report draws, read from this layout or LIMEN's (top-level
// model_id / family). Owned here, beside the writer, so a renamed field shows in one place. Every
// field is optional in the file (absent → the default below); a field of the wrong type is an error.
struct SummaryRecord {
    struct Model {
        std::string name, file, sha256, architecture;     // provenance.model
    };
    std::string model_id;                               // top-level model_id ("" when absent)
    std::optional<std::string> model_sha256;            // top-level model_sha256
    std::string family;                                 // top-level family (LIMEN)
    std::optional<std::string> category;                // top-level category
    Model model;
    double temperature = std::numeric_limits<double>::quiet_NaN();   // provenance.sampling.temperature
    std::int64_t generated_tokens = 0;                  // input.generated_tokens
    double ratio_norm = std::numeric_limits<double>::quiet_NaN();    // token_axis.ratio_norm (null → NaN)
    std::string regime;                                 // token_axis.regime
    std::optional<std::string> regime_cuts;             // options.regime_cuts ("a,b,c")
    std::map<std::string, double> medians;              // summary.<metric>.median, finite numbers only
    // per_token series (null → NaN / nullopt); ct_t empty when the summary has no token series
    std::vector<double> ct_t, delta_t, curvature_t;
    std::vector<std::optional<std::string>> token, output_state;
    // The run's settings shown verbatim under provenance: the members options, provenance,
    // schema_version, extraction_protocol, model_sha256 and embedding_output_included as written.
    nlohmann::json settings = nlohmann::json::object();
};
// Throws std::runtime_error "FIELD: problem" (e.g. "token_axis.ratio_norm: expected a number or null").
SummaryRecord summary_record_from_json(const nlohmann::json& j);

}  // namespace phasemap::io
