// Per-token statistics of the output distribution (METRICS.md §1), computed in float64.
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
#pragma once
#include <cstdint>
#include <span>

namespace phasemap::metrics {

struct TokenProbStats {
    double entropy = 0;    // −Σ p ln max(p, 1e-300), nats
    double top1 = 0;       // largest probability
    double margin = 0;     // top1 − second largest probability
    double surprisal = 0;  // −ln p(chosen)
    int32_t top1_id = -1;  // arg-max token
};

// `chosen` value meaning "the arg-max token" (greedy decoding: the first largest logit, as
// llama.cpp's greedy sampler picks it); its surprisal is then that of top1_id.
inline constexpr int32_t kChosenIsTop1 = -2;

// Softmax with max subtraction in float64 over `logits`; `chosen` is the sampled token id
// or kChosenIsTop1 (surprisal is NaN when chosen is outside [0, V) otherwise).
TokenProbStats token_prob_stats(std::span<const float> logits, int32_t chosen);

}  // namespace phasemap::metrics
