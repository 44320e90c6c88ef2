// A recorded run analysed and turned into results-DB rows the way the panel runner stores it:
// shared by `panel run` (src/plan/panel_run.cpp) and `phasemap serve --db` (src/serve), so a served
// run is stored exactly like a panel run.
//
// Owns: nothing kept; the RunRecord is read during the call, the rows returned are owned values. Throws:
// metrics::MetricError for options the analysis refuses; a run without tokens gives missing values.
#pragma once
#include <string>
#include <vector>

#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/store/store.hpp"

namespace phasemap::panel {

// The analysed layers of a run captured with `captured` layers: LIMEN's protocol leaves the
// embedding output (hf:0) out unless include_embedding (or it is the only layer).
std::vector<std::string> analysed_layer_names(const std::vector<std::string>& captured, bool include_embedding);

// The run summary: metrics::analyze_run over the analysed layers (missing values with a reason
// when the run has no tokens), with the MoE routing metrics when the run carries routing.
metrics::RunSummary analyse_recorded_run(const capture::RunRecord& r, const std::vector<std::string>& captured, bool include_embedding,
                                         const metrics::AnalysisOptions& opt);

// tokens table rows of the run.
std::vector<store::TokenData> token_rows(const capture::RunRecord& r);

// The models row of a loaded model as its file describes it, under `label`: path and sha256, the
// GGUF architecture (also as the architecture tag), description and sizes. The panel runner adds
// its manifest's declarations (family, size, variant_of, covariates, adapters, an architecture tag
// of its own); `serve --db` stores it as it is.
store::ModelRow model_row(const std::string& label, const capture::ModelInfo& info);

// The runs row of a recorded run with the fields every stored run fills alike: what was generated
// (prompt_text, n_generated, stop_reason, text) and what it ran on (the engine's precision and
// n_ctx, the layer spec `layers`). The caller adds the run's identity (run_id, model, category,
// prompt_index, prompt), its generation settings (chat, sampling, n_predict: the panel's are the
// manifest's doubles, the server's the request's), the analysis (norm, metric_options) and
// states_path.
store::RunRow run_row(const capture::RunRecord& r, const capture::EngineFacts& facts, const std::string& layers);

// token_layers rows: the token-axis series (§2, under `topt`) of every captured layer, hf:0
// included when captured, aligned to token index t (NaN where undefined), and the layer axis
// resolved per layer (speed into the layer, turn at the layer).
std::vector<store::LayerTokenData> layer_token_series(const capture::RunRecord& r, const std::vector<std::string>& captured,
                                                      const metrics::TokenAxisOptions& topt);

}  // namespace phasemap::panel
