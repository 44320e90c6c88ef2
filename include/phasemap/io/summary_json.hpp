// Per-run summary as JSON, in the layout of LIMEN's summary.json (top-level facts, `input`,
// `summary` with n/median/q1/q3 per metric under LIMEN's names) extended with phasemap's
// token-axis, output-state and control sections. Metric names are METRICS.md's names; missing
// values are null with a `<name>_missing_reason` beside them.
#pragma once
#include <nlohmann/json.hpp>
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

}  // namespace phasemap::io
