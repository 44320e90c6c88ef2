// Output-distribution states COLLAPSE / RIVALRY / DIFFUSE / STEADY (METRICS.md §5).
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
#include <string_view>
#include <vector>

#include "phasemap/metrics/token_stats.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

// Order matters: it is the row/column order of the transition matrix.
enum class OutputState : std::uint8_t { COLLAPSE = 0, RIVALRY = 1, DIFFUSE = 2, STEADY = 3 };
inline constexpr std::size_t kOutputStateCount = 4;
inline constexpr std::array<OutputState, kOutputStateCount> kOutputStates = {
    OutputState::COLLAPSE, OutputState::RIVALRY, OutputState::DIFFUSE, OutputState::STEADY};
std::string_view to_string(OutputState s);
std::optional<OutputState> parse_output_state(std::string_view s);

// §5 thresholds (defaults = the spec's defaults).
struct StateThresholds {
    double collapse_top1 = 0.90;   // COLLAPSE: top1 ≥ this               ("state.collapse_top1")
    double rivalry_margin = 0.20;  // RIVALRY: not COLLAPSE, margin ≤ this ("state.rivalry_margin")
    double diffuse_entropy = 2.5;  // DIFFUSE: neither, entropy ≥ this (nats) ("state.diffuse_entropy")
    void validate() const;         // throws MetricError for non-finite thresholds
};

// §5 classification of one token. Throws MetricError when entropy, top1 or margin is not finite.
OutputState classify_output_state(const TokenProbStats& s, const StateThresholds& th = {});

// A maximal run of COLLAPSE tokens.
struct Episode {
    std::size_t start = 0;   // first token
    std::size_t length = 0;  // number of tokens
    bool exits = false;      // ends before the run ends (start + length < T)
    bool reopens = false;    // a RIVALRY token follows before the next COLLAPSE (or the end)
};

struct OutputStatesResult {
    std::vector<OutputState> states;                       // per token
    std::array<std::size_t, kOutputStateCount> counts{};   // tokens per state
    std::array<double, kOutputStateCount> rates{};         // counts / T (NaN when T = 0)
    std::vector<Episode> episodes;                         // COLLAPSE episodes in order
    Value exit_rate;        // episodes that end before the run ends / all episodes (missing: no episode)
    Value reopening_rate;   // episodes followed by RIVALRY before the next COLLAPSE or the end / all episodes
    // transitions[i][j] = #{t : state_t = i, state_{t+1} = j}, i, j in kOutputStates order.
    std::array<std::array<std::size_t, kOutputStateCount>, kOutputStateCount> transitions{};
    // Row-normalised transitions; a row with no outgoing transition is all NaN.
    std::array<std::array<double, kOutputStateCount>, kOutputStateCount> transition_probs{};
    // dwell[s]: lengths of the maximal runs of state s, in order of occurrence. The last run of the
    // sequence is cut by the end of generation (right-censored); it is included.
    std::array<std::vector<std::size_t>, kOutputStateCount> dwell;
};

// §5 on a state sequence.
OutputStatesResult output_states(std::span<const OutputState> states);
// §5 from per-token probability statistics (classify_output_state, then the above).
OutputStatesResult output_states(std::span<const TokenProbStats> stats, const StateThresholds& th = {});

}  // namespace phasemap::metrics
