// The results of the steer drivers as C++ types: steer::run_control_audit returns a
// ControlAuditResult, steer::run_monitor_eval a MonitorEvalResult. JSON exists only at the edges:
// to_json gives the document `control-audit -o` / `monitor-eval -o` write (and the results DB's
// document column, plan/results.hpp); from_json reads such a document back. For every document
// the drivers write, to_json(from_json(j)) == j (tests/steer/test_result.cpp, with documents
// written before the results were typed).
//
// Ownership: plain values (no references into a model or engine); a result outlives the model
// it was computed with. Errors: every from_json throws steer::JsonError, what() = "PATH: problem"
// ("per_prompt[2].zero.text: missing"); the caller adds the file name.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/monitor.hpp"

namespace phasemap::steer {

struct JsonError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Mean of xs (non-finite values dropped) with a percentile bootstrap CI; lo/hi NaN when fewer
// than 2 finite values exist. JSON {"n", "mean", "ci95": [lo, hi]}, NaN as null.
struct MeanCi {
    size_t n = 0;
    double mean = 0, lo = 0, hi = 0;
};
nlohmann::json to_json(const MeanCi& c);

// measure name → MeanCi (one arm's summary: "ratio_norm", "delta_ratio_norm", "accuracy", …).
using MeasureTable = std::map<std::string, MeanCi>;

// One row of a result's flat per-arm table (`summary_rows` of the documents): the MeanCi of one
// measure in one arm. NaN is null in JSON.
struct SummaryRow {
    std::string arm, measure;
    size_t n = 0;
    double mean = 0, ci_low = 0, ci_high = 0;
};
nlohmann::json to_json(const SummaryRow& r);
// Throws JsonError naming the field that is missing or of the wrong type.
SummaryRow summary_row_from_json(const nlohmann::json& j);

// The model a result was computed with.
struct ModelRef {
    std::string path, sha256, architecture;
};

// ------------------------------------------------------------------ control audit

// The dynamics measured on every twin (token axis of the metric layer, output-state rates,
// mean entropy), in the order of the report's tables.
inline constexpr std::array<const char*, 8> kDynamicsMeasures = {"ratio_norm",   "mean_ct",      "late_ct",     "rate_COLLAPSE",
                                                                 "rate_RIVALRY", "rate_DIFFUSE", "rate_STEADY", "mean_entropy"};

struct TwinRun {                       // one arm of one prompt
    std::string text;
    int n_generated = 0;
    std::map<std::string, double> dynamics;  // every kDynamicsMeasures entry (NaN: not measurable)
    double token_match_rate = 1;             // agreement with the baseline twin (token_agreement)
    int first_divergence = -1;
};

struct TwinPrompt {
    std::string prompt;
    std::map<std::string, TwinRun> arms;     // by arm name
};

// Labelled true/false statements: next-token logits of the label pair (AuditOptions::truth_csv).
struct TruthResult {
    std::string file, prompt_template;
    size_t n = 0;
    std::array<std::string, 2> labels, scored_tokens;  // true, false
    std::map<std::string, MeasureTable> arms;          // accuracy (+ delta_accuracy beside the baseline)
};

// Exact-match answers (AuditOptions::qa_csv).
struct ExactMatchResult {
    std::string file;
    size_t n = 0;
    std::map<std::string, MeasureTable> arms;          // exact_match (+ delta_exact_match)
};

struct BootstrapInfo {
    size_t resamples = 0;
    uint64_t seed = 0;
    double level = 0.95;
    std::string method;
};

struct ControlAuditResult {
    ModelRef model;
    int n_layer = 0, n_embd = 0;
    bool recurrent = false;
    std::vector<std::string> interventions;     // Intervention::describe() of the intervened arm
    std::vector<std::string> arms;              // baseline, intervened, [random,] zero
    std::string random_direction_control, prefix_sharing;
    capture::SamplingOptions sampling;
    int n_predict = 0;
    std::string layers;                         // captured layers (spec)
    std::optional<std::string> metric_layer;    // label of the token-axis layer, when chosen (--metric-layer)
    BootstrapInfo bootstrap;
    std::vector<TwinPrompt> per_prompt;
    std::map<std::string, MeasureTable> summary;  // arm → dynamics, their paired deltas, token agreement
    std::optional<TruthResult> truth;
    std::optional<ExactMatchResult> exact_match;
    std::string headline;
};
// The flat table of every MeanCi: per arm (in arm order) the summary, truth and exact-match
// measures (the document's `summary_rows`).
std::vector<SummaryRow> summary_rows(const ControlAuditResult& r);
nlohmann::json to_json(const ControlAuditResult& r);
ControlAuditResult control_audit_from_json(const nlohmann::json& j);

// ------------------------------------------------------------------ monitor / guard evaluation

struct GuardedRun {                    // one arm of one prompt
    std::string text;
    bool correct = false, fired = false;
    std::vector<std::string> events;
    std::vector<int> insertion_after_t;        // one per insertion
    std::vector<std::string> insertion_text;
};

struct GuardedPrompt {
    std::string prompt, answer;
    std::map<std::string, GuardedRun> arms;
};

struct MonitorEvalResult {
    ModelRef model;
    std::string data, match, guard_text;
    size_t n = 0;
    int guard_at = 0;
    std::vector<TriggerSpec> triggers;         // as run (the defaults when none was declared); max_period is not stored
    std::optional<std::string> layers, metric_layer;  // captured layers and the monitor's layer, when --metric-layer chose it
    std::vector<std::string> arms;             // baseline, monitor_only, guard_only, monitor_guard
    std::vector<GuardedPrompt> per_prompt;
    std::map<std::string, MeasureTable> summary;  // arm → accuracy, trigger_rate, insertion_rate (+ delta_accuracy)
};
std::vector<SummaryRow> summary_rows(const MonitorEvalResult& r);
nlohmann::json to_json(const MonitorEvalResult& r);
MonitorEvalResult monitor_eval_from_json(const nlohmann::json& j);

}  // namespace phasemap::steer
