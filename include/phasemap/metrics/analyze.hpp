// One entry point for a per-run summary (METRICS.md §2–§6): what the CLI calls.
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "phasemap/metrics/controls.hpp"
#include "phasemap/metrics/layer_axis.hpp"
#include "phasemap/metrics/output_states.hpp"
#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/routing.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/metrics/token_stats.hpp"
#include "phasemap/metrics/views.hpp"

namespace phasemap::metrics {

// §6 controls (off by default: shuffles = 0).
struct ControlOptions {
    std::size_t shuffles = 0;           // K shuffles per baseline ("controls.shuffles"); 0 = off
    std::uint64_t seed = 20240521;      // std::mt19937_64 seed ("controls.seed")
    Tail token_tail = Tail::greater;    // tail of the shuffled-token-order p-value ("controls.token_tail")
    Tail layer_tail = Tail::less;       // tail of the shuffled-layer-order p-values ("controls.layer_tail")
};

// Every option of a per-run analysis. Defaults are the spec's defaults (or, where the spec is
// silent, our documented choice); options_record() lists them by name for recording with the run.
struct AnalysisOptions {
    // Captured-layer index of the token axis ("layer"); negative values count from the end, so
    // the default −1 is the last captured layer, which is hf:L in the LIMEN protocol (§2).
    std::int64_t layer = -1;
    TokenAxisOptions token{};           // §2, §4
    bool layer_axis = true;             // compute §3 ("layer_axis")
    StateThresholds states{};           // §5
    ControlOptions controls{};          // §6
    void validate() const;              // throws MetricError
};

// The analysis options as the front ends name them — the flags of `phasemap analyze` without their
// dashes, the keyword arguments of phasemap.analyze — as plain text and numbers, with the
// defaults of AnalysisOptions. analysis_options() is the one parser and check of them, shared by
// the CLI, the Python package and the server; reading @FILE arguments is the front end's part.
struct AnalysisSettings {
    std::string layer;                   // token-axis layer: a label or an index (layer_id.hpp rule); "" = the last
    std::string norm{to_string(TokenAxisOptions{}.norm)};            // raw | clipped_mad
    double mad_k = TokenAxisOptions{}.mad_k;
    std::string curvature{to_string(TokenAxisOptions{}.curvature)};  // one_minus_cos | angle | second_diff
    bool ct_clip = TokenAxisOptions{}.ct_clip;
    double ct_clip_k = TokenAxisOptions{}.ct_clip_k;
    double late_window = TokenAxisOptions{}.late_window;
    double collapse_threshold = TokenAxisOptions{}.collapse_threshold;
    std::string regime_cuts;             // "a,b,c" (parse_regime_cuts); "" = the default cut-points
    bool layer_axis = true;
    double collapse_top1 = StateThresholds{}.collapse_top1;
    double rivalry_margin = StateThresholds{}.rivalry_margin;
    double diffuse_entropy = StateThresholds{}.diffuse_entropy;
    std::size_t shuffles = ControlOptions{}.shuffles;
    std::uint64_t control_seed = ControlOptions{}.seed;
};

// Parses and validates `s` for a run whose analysed layers are `layer_names` (the names the layer
// choice is resolved against). Throws MetricError with a message naming the option.
AnalysisOptions analysis_options(const AnalysisSettings& s, std::span<const std::string> layer_names);

// Option name → value as text (shortest round-trip form for numbers), in a fixed order:
// the record of "every option" that §6 asks to keep with each run. Names match MetricInfo::options.
std::vector<std::pair<std::string, std::string>> options_record(const AnalysisOptions& opt);

// §6 probability baselines beside the geometric metrics: summaries over tokens.
struct ProbabilityBaselines {
    Summary entropy, top1, margin, surprisal;
};

struct RunSummary {
    std::size_t tokens = 0, layers = 0, dim = 0;
    AnalysisOptions options;            // as used
    std::size_t layer_index = 0;        // resolved captured-layer index of the token axis
    std::string layer_name;             // its name, e.g. "hf:22"
    TokenAxisResult token;              // §2 on that layer
    LayerAxisResult layer;              // §3 (missing_reason "disabled by option layer_axis" when off)
    // §5, present when probability stats were given; otherwise output_missing_reason says why.
    std::optional<OutputStatesResult> output;
    std::string output_missing_reason;
    std::vector<TokenProbStats> stats;  // the per-token stats as given (empty when none)
    ProbabilityBaselines baselines;     // n = 0 when no stats
    // §6, present when options.controls.shuffles > 0 and the real value exists; else the reason.
    std::optional<ControlResult> token_control;
    std::optional<std::array<ControlResult, kLayerMetricCount>> layer_control;
    std::string controls_missing_reason;
    // MoE routing (docs/metrics-moe.md), present when the run carries a routing channel (generate
    // --routing on an MoE model) and the caller set it with routing_metrics(); else the reason.
    std::optional<RoutingResult> routing;
    std::string routing_missing_reason = "the run has no MoE routing (routing_experts / routing_weights: generate --routing on an MoE model)";
};

// Analyses one run. `states` is [T, L', d] float32 row-major with the captured layer names;
// `stats` (per generated token, §1) may be empty, else it must have T entries.
// Throws MetricError for invalid options, a layer index outside the captured layers, or a stats
// size that does not match T. Data problems (too few tokens/layers, non-finite values) never
// throw: they become missing values with reasons. Deterministic: the same input and options give
// bit-identical output.
RunSummary analyze_run(const StatesView& states, std::span<const TokenProbStats> stats, const AnalysisOptions& opt = {});

// Resolves AnalysisOptions::layer against L' captured layers (throws MetricError when out of range).
std::size_t resolve_layer_index(std::int64_t layer, std::size_t captured_layers);

// Turns a user's layer choice into AnalysisOptions::layer, against the names of the analysed
// layers (hf:0 already dropped when LIMEN's protocol drops it). The integer rule of
// metrics/layer_id.hpp: a label ("hf:22", "block:5", "attn_out:1") or an integer N ≥ 0 (= hf:N)
// picks the layer of that name; a negative integer −k is the k-th layer from the end (returned as
// is). When no name is a layer label (files in LIMEN's layout, "layer[i]"), N is the position.
// Throws MetricError, listing the analysed names, when the layer is not among them or the text
// is neither.
std::int64_t parse_layer_choice(std::string_view choice, std::span<const std::string> layer_names);

}  // namespace phasemap::metrics
