// Layer selection grammar (METRICS.md §1) and its resolution to llama.cpp graph tensor names.
//
//   SPEC  := ITEM (',' ITEM)*
//   ITEM  := 'all' | 'none' | N | KIND ':' SEL | 'tensor:' NAME '-' N   ('all' = 'hf:all', N = hf:N)
//   KIND  := 'hf' | 'block' | 'resid_mid' | 'attn_out' | 'ffn_out'
//   SEL   := 'all' | N | A '-' B | '-' N | 'last'   (negative N counts from the end: hf:-1 = hf:L)
//   NAME  := [A-Za-z0-9_.]+                          (a llama.cpp graph tensor name without "-N")
//
// hf:0 = embedding output, hf:i (1 ≤ i < L) = output of block i-1, hf:L = post-final-norm;
// block:i = raw output of block i (0 ≤ i < L). Inside block i (0 ≤ i < L):
//   resid_mid:i  the residual stream after attention, before the MLP (llama.cpp's ffn_inp-i);
//   attn_out:i   the attention output (after the output projection) added to the residual (attn_out-i);
//   ffn_out:i    the MLP / MoE output added to the residual (ffn_out-i, else ffn_moe_out-i);
//   tensor:NAME-i  any graph tensor named NAME-i with n_embd values per token.
// Whether an architecture computes a component is settled by the engine on the model's graph
// (an error names the architecture and the component when it does not). Duplicates are removed,
// order of first mention kept.
//
// Owns: nothing; ResolvedLayer is a plain value. Throws: std::invalid_argument from the parser (named item).
#pragma once
#include <string>
#include <vector>

#include "phasemap/metrics/layer_id.hpp"

namespace phasemap {

// The labels, kinds, integer rule and depths are LayerId's (include/phasemap/metrics/layer_id.hpp).
struct ResolvedLayer {
    metrics::LayerId id;  // the layer
    std::string label;    // id.label(), e.g. "hf:3" or "block:2"
    std::string tensor;   // graph tensor name: "l_out-2", "result_norm", or "embd" (see below)
    int hf_index = -1;    // equivalent hf index when one exists (block:i ≡ hf:i+1 for i < L-1), else -1
    // Further graph names the engine tries, in order, when the graph has no single `tensor`
    // (ffn_out:i: "ffn_moe_out-i" where the MoE output carries that name). Empty for hf/block.
    std::vector<std::string> alternatives;
    int block = -1;       // the block of a component or tensor: item, else -1
    bool component() const { return block >= 0; }
};

// Parses and resolves a layer spec for a model with n_layer blocks. Throws std::invalid_argument
// with a message naming the offending item (syntax error, index out of range, empty selection).
// The embedding entry resolves to the tensor name "embd" — the capture engine maps it to the
// graph's input-embedding tensor of the architecture (inp_embd, inp_scaled or inpL).
std::vector<ResolvedLayer> resolve_layers(const std::string& spec, int n_layer);

}  // namespace phasemap
