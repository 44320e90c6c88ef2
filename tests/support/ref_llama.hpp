// Test support: an independent float64 forward pass of the Llama architecture, written from the
// architecture's definition and reading weights through GgufWeights (not through llama.cpp).
// Used by tests to prove that captured hidden states are right.
//
//   x = token_embd[id]                                                  hf:0
//   per block l:  h   = x + Wo · Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n),    n = RMSNorm(x) ⊙ attn_norm
//                 out = h + Wdown · (silu(Wgate·m) ⊙ Wup·m),            m = RMSNorm(h) ⊙ ffn_norm
//                 block:l = out;  hf:l+1 = out for l < L-1
//   hf:L = RMSNorm(block:L-1) ⊙ output_norm;  logits = output · hf:L   (output = token_embd when tied)
//
// RoPE follows llama.cpp: arch "llama" uses the 'normal' ordering, where adjacent pairs
// (2i, 2i+1) of each head rotate together by pos · base^(-2i/n_rot) (GGUF stores Q/K rows in
// that interleaved order: the HF converter un-permutes the HF half-split layout, and llama2.c
// checkpoints use it natively). Arch "qwen2" (same block plus Q/K/V biases and an optional
// output bias) uses the NeoX ordering, where element i pairs with i + n_rot/2. Optional biases, a fused attn_qkv tensor,
// rope_freqs factors and linear rope scaling are honoured; anything else (MoE, other rope
// scalings) is rejected with an exception rather than computed wrongly.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "support/gguf_weights.hpp"

namespace pmtest {

struct RefLlamaHparams {
    std::string arch;
    int n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;     // key/value length per head
    int n_rot = 0;        // rotated dimensions per head (≤ head_dim)
    int n_ff = 0;
    int n_vocab = 0;
    double rms_eps = 1e-5;
    double rope_base = 10000.0;
    double rope_freq_scale = 1.0;
    bool rope_neox = false;   // false: pairs (2i, 2i+1); true: pairs (i, i + n_rot/2)
    double attn_scale = 0.0;  // softmax scale; 1/sqrt(head_dim) unless the GGUF sets one
    bool tied_output = false; // no output.weight: logits use token_embd
};

// States at one position.
struct RefPosition {
    std::vector<std::vector<double>> hf;     // L+1 rows of n_embd: hf:0 … hf:L
    std::vector<std::vector<double>> block;  // L rows: block:0 … block:L-1
    std::vector<double> logits;              // n_vocab
};

class RefLlama {
public:
    // Loads every weight into float64. Throws std::runtime_error for an unsupported architecture
    // or feature, std::out_of_range for a missing tensor or metadata key.
    explicit RefLlama(const GgufWeights& weights);
    ~RefLlama();
    RefLlama(const RefLlama&) = delete;
    RefLlama& operator=(const RefLlama&) = delete;

    const RefLlamaHparams& hparams() const { return hp_; }

    // Incremental decoding with a float64 KV cache: each step() appends one token at the next
    // position and returns the states there.
    class Session {
    public:
        RefPosition step(int32_t token);
        int n_past() const { return n_past_; }

    private:
        friend class RefLlama;
        explicit Session(const RefLlama& model);
        const RefLlama* model_;
        int n_past_ = 0;
        std::vector<std::vector<double>> k_, v_;  // per layer: n_past × (n_head_kv · head_dim)
    };
    Session session() const { return Session(*this); }

    // States at every position of `tokens` (one causal pass; position p sees tokens 0..p).
    std::vector<RefPosition> forward(std::span<const int32_t> tokens) const;

    // Greedy (arg-max, lowest id on ties) continuation of `prompt`: up to n_predict ids, stopping
    // after `stop_id` when it is generated (stop_id < 0: never stops early).
    std::vector<int32_t> greedy(std::span<const int32_t> prompt, int n_predict, int32_t stop_id = -1) const;

private:
    struct Layer;
    RefLlamaHparams hp_;
    GgufTensor tok_embd_, output_norm_, output_;
    std::optional<GgufTensor> output_b_;  // qwen2 only, optional
    std::vector<Layer> layers_;
    std::vector<double> rope_freqs_;  // per rotated pair divisor (empty: all 1)
};

// RMSNorm: x / sqrt(mean(x²) + eps) ⊙ w (w empty → no scaling).
std::vector<double> rms_norm(std::span<const double> x, std::span<const double> w, double eps);
// LayerNorm: (x − mean) / sqrt(var + eps) ⊙ w + b (population variance; w, b empty → identity).
std::vector<double> layer_norm(std::span<const double> x, std::span<const double> w, std::span<const double> b, double eps);

// The final norm and output head of an architecture, read from the GGUF following llama.cpp's
// src/models/<arch>.cpp, so tests can check hf:L = norm(block:L-1) and logits = head(hf:L) on
// models of any supported architecture:
//   RMSNorm (…layer_norm_rms_epsilon): llama, qwen2, gemma2, phi3
//   LayerNorm with bias (…layer_norm_epsilon): gpt2, gptneox, phi2
//   output.weight, or token_embd when absent (gemma2 always uses token_embd); output.bias when
//   present (phi2 always, qwen2 optionally); gemma2 final soft-capping c·tanh(z/c) with
//   c = gemma2.final_logit_softcapping (llama.cpp's default 30 when the key is absent).
// Norm weights are used as stored: gemma2's converter already stores 1 + w (Gemma's RMSNorm
// scales by 1 + w) and llama.cpp multiplies by the stored tensor.
struct RefOutputHead {
    std::string arch;
    bool layer_norm = false;        // false: RMSNorm
    double eps = 0.0;
    std::vector<double> norm_w, norm_b;  // norm_b empty without a bias
    GgufTensor output;                   // {n_embd, n_vocab}
    bool tied = false;                   // output is token_embd
    std::vector<double> output_b;        // empty without a bias
    double final_softcap = 0.0;          // 0: none

    // Throws std::runtime_error for an architecture outside the list above.
    explicit RefOutputHead(const GgufWeights& weights);
    int n_embd() const { return static_cast<int>(output.ne[0]); }
    int n_vocab() const { return static_cast<int>(output.ne[1]); }
    std::vector<double> norm(std::span<const double> x) const;
    std::vector<double> logits(std::span<const double> h) const;
};

}  // namespace pmtest
