// MoE routing metrics (docs/metrics-moe.md): pure functions over the captured routing channel,
// per generated token t and MoE block m the k experts the router selected and the weights their
// outputs are mixed with (generate --routing: routing_experts / routing_weights [T, M, k]).
//
// Owns: nothing; pure functions (no I/O, no threads, no llama.cpp). Lifetimes: spans and views are read
// during the call only, never kept; results are owned values. Throws: metrics::MetricError (value.hpp) for
// invalid options or inputs a function cannot take; data problems become missing values with a reason.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "phasemap/metrics/quantile.hpp"
#include "phasemap/metrics/value.hpp"

namespace phasemap::metrics {

// Non-owning view of one run's routing: experts[(t·M + m)·k + j] (int32) and weights[same] (float32),
// j in the router's order. `n_expert` is E, the experts per MoE block; `block_ids` (size M, may be
// empty) are the model's block indices of the M MoE blocks.
struct RoutingView {
    const std::int32_t* experts = nullptr;
    const float* weights = nullptr;
    std::size_t tokens = 0, blocks = 0, k = 0, n_expert = 0;
    std::span<const int> block_ids{};

    std::size_t at(std::size_t t, std::size_t m) const { return (t * blocks + m) * k; }
};

// Per MoE block.
struct RoutingLayerResult {
    int block = 0;                 // model block index (m when no block_ids were given)
    Summary entropy;               // routing entropy H_{t,m} over tokens (nats)
    Value switch_rate;             // share of consecutive token pairs whose top-k set differs
    std::vector<double> load;      // E shares: selections of expert e / (T·k); sums to 1
    Value load_entropy;            // −Σ load ln load / ln E, in [0, 1]
    Value load_imbalance;          // E · max_e load, in [1, E/k]
};

// Per pair of adjacent MoE blocks (m, m+1).
struct RoutingPairResult {
    int block_a = 0, block_b = 0;
    Value top1_nmi;                // I(X; Y) / √(H(X) H(Y)) of the top-1 experts over tokens
    Value switch_agreement;        // Jaccard index of the two blocks' switch-event sets
};

struct RoutingResult {
    std::size_t tokens = 0, blocks = 0, k = 0, n_expert = 0;
    std::vector<double> entropy;       // [T] mean over blocks of H_{t,m} (NaN where no block defines it)
    std::vector<double> switch_share;  // [T] share of blocks whose top-k set differs from t−1 (NaN at t = 0)
    std::vector<RoutingLayerResult> layers;  // [M]
    std::vector<RoutingPairResult> pairs;    // [M − 1]
    Value switch_rate;                 // pooled: all switch events / (M · (T − 1))
    Value load_entropy;                // mean over blocks of RoutingLayerResult::load_entropy
    Value load_imbalance;              // mean over blocks of RoutingLayerResult::load_imbalance
    Value top1_nmi;                    // mean over adjacent pairs of the defined top1_nmi
    Value switch_agreement;            // mean over adjacent pairs of the defined switch_agreement
};

// Entropy (nats) of the normalised weights w_j / Σ w of one token and block; NaN when a weight is
// negative or not finite, or the sum is not positive. 0 for k = 1.
double routing_entropy(std::span<const float> weights);

// All routing metrics of one run. Throws MetricError for a view that cannot be routing: no data,
// k = 0, E = 0, k > E, an expert id outside [0, E), an expert selected twice in one (t, m), or
// block_ids of a size other than M.
RoutingResult routing_metrics(const RoutingView& v);

}  // namespace phasemap::metrics
