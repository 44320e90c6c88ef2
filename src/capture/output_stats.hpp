// Internal to src/capture: the per-token output statistics of METRICS.md §1 computed in the
// llama.cpp graph (EngineOptions::output_stats = graph), through llama.cpp's backend-sampling
// API (llama_sampler_i::backend_apply), so that a decode step copies a few floats per sequence
// to the host instead of the full logits row.
//
// How llama.cpp runs it (src/llama-graph.cpp build_sampling, src/llama-context.cpp decode):
//  - every sequence id with a backend sampler chain gets, per output row, backend_apply with a
//    1-d view of that row of the (padded) logits tensor; the tensors the sampler returns in
//    llama_sampler_data (probs, candidates, logits, sampled) are graph outputs, copied back
//    asynchronously per row and read with llama_get_sampled_*_ith;
//  - the full logits of a ubatch are copied only when one of its output rows belongs to a
//    sequence WITHOUT a backend sampler (needs_raw_logits) — so the engine attaches the sampler
//    only to greedy sequences, and a sampled sequence (temperature > 0, llama.cpp's CPU chain,
//    which needs the whole row on the host anyway) keeps the host path;
//  - chains are keyed by seq id (the engine's slots); a sampler of a slot that has no row in a
//    ubatch is built on a dummy row and not computed (ggml_build_forward_select), so the graph
//    stays the same while sequences join and leave; llama_memory_seq_rm does not touch it;
//  - the sampler's nodes are ordinary graph nodes: the eval callback (cb_eval) is asked about
//    them like any other and the capture callback ignores them.
//
// One OutputStatsGraph is shared by the chains of all slots: the first backend_apply of a graph
// build computes the statistics of every row of the logits matrix in one set of ops ([V, rows]
// tensors, split over the backend's threads), the others return views of their row.
//
// Per row the graph returns kGraphStatFloats floats — the largest logit m, −s, −w, −(number of
// entries below m), the second-largest logit l2 (the largest below m) — and the id of the first
// largest logit, with
//   e_i = exp(l_i − m) (the difference l_i − m made exact with a TwoSum correction, since f32
//   rounding of l_i − m alone shifts e_i by up to |l_i − m|·2⁻²⁴ relative),
//   s = Σ_{l_i < m} e_i,   w = Σ_i e_i (m − l_i)   (sums accumulated by ggml's sum_rows).
// combine() turns them into TokenProbStats in float64: z = n_max + s, ln z = ln n_max +
// log1p(s / n_max), entropy = ln z + w / z, top1 = 1/z, margin = top1 − exp(l2 − m)/z (0 when
// the maximum is tied), surprisal of the top-1 token = ln z. Keeping s apart from the tied
// maxima keeps near-zero entropies (s ≪ 1) exact to the relative precision of s.
#pragma once
#include <llama.h>

#include <cstdint>

#include "phasemap/capture/capture.hpp"
#include "phasemap/metrics/token_stats.hpp"

namespace phasemap::capture {

inline constexpr int kGraphStatFloats = 5;

class OutputStatsGraph {
public:
    // keep_logits: the chains also return the full logits row (EngineOptions::save_logits), read
    // with llama_get_sampled_logits_ith.
    // on_cpu: also where the logits live on the CPU backend (OutputStats::graph; automatic leaves
    // the CPU backend to the host path).
    OutputStatsGraph(bool keep_logits, bool on_cpu) : keep_logits_(keep_logits), on_cpu_(on_cpu) {}
    OutputStatsGraph(const OutputStatsGraph&) = delete;
    OutputStatsGraph& operator=(const OutputStatsGraph&) = delete;

    // A new sampler chain holding one statistics sampler bound to this object (free it with
    // llama_sampler_free after the context that uses it stops using it).
    llama_sampler* make_chain();
    // False once a backend_init found an op of the graph unsupported by the output device (or
    // the CPU backend without on_cpu).
    bool supported() const { return supported_; }
    bool keep_logits() const { return keep_logits_; }

    // The statistics of one row from its graph floats `g` (kGraphStatFloats), its first arg-max
    // `top1_id` and the vocabulary size; the surprisal is that of the top-1 token (greedy).
    static metrics::TokenProbStats combine(const float* g, int32_t top1_id, int64_t n_vocab);

    // llama_sampler_i callbacks (public for the static interface table in output_stats.cpp).
    bool backend_init(ggml_backend_buffer_type_t buft);
    void backend_apply(ggml_context* ctx, llama_sampler_data* data);
    void backend_reset() { built_ctx_ = nullptr; built_src_ = nullptr; }

    struct Built {
        ggml_tensor* stats = nullptr;  // [kGraphStatFloats, rows] F32
        ggml_tensor* top1 = nullptr;   // [rows] I32
    };
    static Built build(ggml_context* ctx, ggml_tensor* logits);  // logits: [V, rows] F32, contiguous

private:

    bool keep_logits_;
    bool on_cpu_;
    bool supported_ = true;
    // The statistics of the logits matrix of the graph being built (reset before every build).
    ggml_context* built_ctx_ = nullptr;
    ggml_tensor* built_src_ = nullptr;
    Built built_;
};

}  // namespace phasemap::capture
