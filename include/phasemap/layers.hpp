// Layer selection grammar (METRICS.md §1) and its resolution to llama.cpp graph tensor names.
//
//   SPEC  := ITEM (',' ITEM)*
//   ITEM  := 'all' | 'none' | KIND ':' SEL          ('all' = 'hf:all')
//   KIND  := 'hf' | 'block'
//   SEL   := 'all' | N | A '-' B | '-' N | 'last'   (negative N counts from the end: hf:-1 = hf:L)
//
// hf:0 = embedding output, hf:i (1 ≤ i < L) = output of block i-1, hf:L = post-final-norm;
// block:i = raw output of block i (0 ≤ i < L). Duplicates are removed, order of first mention kept.
#pragma once
#include <string>
#include <vector>

namespace phasemap {

struct ResolvedLayer {
    std::string label;    // canonical label, e.g. "hf:3" or "block:2"
    std::string tensor;   // graph tensor name: "l_out-2", "result_norm", or "embd" (see below)
    int hf_index = -1;    // equivalent hf index when one exists (block:i ≡ hf:i+1 for i < L-1), else -1
};

// Parses and resolves a layer spec for a model with n_layer blocks. Throws std::invalid_argument
// with a message naming the offending item (syntax error, index out of range, empty selection).
// The embedding entry resolves to the tensor name "embd" — the capture engine maps it to the
// graph's input-embedding tensor of the architecture (inp_embd, inp_scaled or inpL).
std::vector<ResolvedLayer> resolve_layers(const std::string& spec, int n_layer);

}  // namespace phasemap
