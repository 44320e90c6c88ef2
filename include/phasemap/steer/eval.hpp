// Drivers on top of the capture Engine: building control vectors from contrastive prompts, the
// control audit and the monitor/guard evaluation (issue 6 §2–§4), plus their small statistics
// and the CSV reader for labelled data sets. The results are the types of result.hpp.
// Lifetimes: the drivers take the model by shared_ptr and keep no reference to it after they
// return; controllers and engines they create live only inside the call. Bad input (options,
// CSV files, labels) throws std::invalid_argument; a failure inside llama.cpp std::runtime_error.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/metrics/output_states.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/result.hpp"
#include "phasemap/steer/vectors.hpp"

namespace phasemap::steer {

// ------------------------------------------------------------------ statistics, CSV

// Mean of xs (non-finite values dropped) with a percentile bootstrap CI (B resamples, seeded,
// portable; MeanCi in result.hpp). lo/hi are NaN when fewer than 2 finite values exist.
MeanCi bootstrap_mean(std::span<const double> xs, size_t resamples, uint64_t seed, double level = 0.95);

// RFC-4180 CSV (quoted fields, doubled quotes, CRLF) with a header row.
struct CsvTable {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    // Column index by name; throws std::invalid_argument naming the file's columns when absent.
    size_t column(const std::string& name) const;
    std::string source;
};
CsvTable read_csv(const std::string& path);

// ------------------------------------------------------------------ control vectors

struct BuildOptions {
    std::vector<std::string> pos, neg;   // contrastive prompts, paired by index
    std::vector<int> blocks;             // blocks ≥ 1 (empty: 1 … L−1)
    VectorMethod method = VectorMethod::mean_diff;
    bool chat = false;
    int n_threads = 0;
};
// Captures the states at the last prompt token of every prompt (block:i = l_out-i, the tensor
// the control vector is added to) and builds one direction per block. Throws
// std::invalid_argument for bad input (unequal counts, block out of range).
ControlVector build_control_vector(const std::shared_ptr<capture::Model>& model, const BuildOptions& opt);

// Interventions equivalent to applying `cv` × scale through llama.cpp's cvec path: add
// direction.N at block:N on every position (prefill and every generated token).
std::vector<capture::Intervention> control_vector_interventions(const ControlVector& cv, float scale);

// ------------------------------------------------------------------ control audit

struct AuditOptions {
    std::vector<std::string> prompts;
    std::vector<capture::Intervention> interventions;  // the intervened arm
    int n_predict = 48;
    capture::SamplingOptions sampling;                 // the same seed for every arm (twins)
    bool chat = false;
    std::string layers = "hf:last";                    // captured layers
    std::string metric_layer;                          // token-axis layer (metrics/layer_id.hpp rule); "" = the last captured
    metrics::TokenAxisOptions axis;
    metrics::StateThresholds states;
    size_t bootstrap = 2000;
    uint64_t seed = 20240521;                          // bootstrap and random-direction seeds
    int n_threads = 0;
    // labelled true/false statements (geometry-of-truth layout: statement,label)
    std::string truth_csv;
    size_t truth_limit = 200;
    std::string truth_template = "{statement} This statement is";
    std::string label_true = " True", label_false = " False";
    // exact-match answers (question / answer columns)
    std::string qa_csv;
    std::string qa_question = "", qa_answer = "";      // "" → Question/Best Answer, else prompt/answer
    size_t qa_limit = 50;
    int qa_n_predict = 16;
};
// Arms: baseline, intervened, random (equal-norm random directions; only when every
// intervention is add / project-out), zero (strength at the op's identity). The arms of one prompt
// are decoded together as twins sharing the prompt prefix (llama_memory_seq_cp; a prefill per
// twin for recurrent memory). Throws std::invalid_argument for bad input.
ControlAuditResult run_control_audit(const std::shared_ptr<capture::Model>& model, const AuditOptions& opt);

// The identity element of an intervention (add/project-out/damp/noise: 0, scale: 1,
// clamp: +∞ norm), keeping everything else.
capture::Intervention zero_strength(const capture::Intervention& iv);

// Agreement of a twin's tokens with the baseline's: matching positions / max length, and the
// first index where they differ (= min length when one is a prefix of the other; −1 if equal).
struct Agreement {
    double match_rate = 1;
    int first_divergence = -1;
};
Agreement token_agreement(std::span<const int32_t> base, std::span<const int32_t> other);

// Exact match of a generated answer: the first non-empty line, lower-cased, with surrounding
// spaces and trailing punctuation removed, starts with the normalised answer (followed by the
// end or a non-alphanumeric character).
bool exact_match(const std::string& generated, const std::string& answer);

// ------------------------------------------------------------------ monitor / guard evaluation

struct MonitorEvalOptions {
    std::string data_csv;
    std::string prompt_col, answer_col;   // "" → Question/Best Answer if present, else prompt/answer
    size_t limit = 50;
    int n_predict = 48;
    capture::SamplingOptions sampling;
    bool chat = false;
    MonitorOptions monitor;               // triggers; action and layer are set by the driver
    std::string layers = "hf:last";       // captured layers
    std::string metric_layer;             // the monitor's layer (metrics/layer_id.hpp rule); "" = the last captured
    int guard_at = 8;                     // guard-only: insert after generated token guard_at
    std::string match = "contains";       // contains | exact
    size_t bootstrap = 2000;
    uint64_t seed = 20240521;
    int n_threads = 0;
};
// Four arms — baseline, monitor-only (log), guard-only (guard text after token guard_at,
// unconditionally), monitor+guard (guard text when a trigger fires) — on the labelled prompts. The
// monitors watch `metric_layer` of the captured `layers` (recorded in the result when chosen).
MonitorEvalResult run_monitor_eval(const std::shared_ptr<capture::Model>& model, const MonitorEvalOptions& opt);

}  // namespace phasemap::steer
