// Plain llama.cpp generation, no phasemap code in the loop: the baseline of the batching figures
// (bench_capture: one prompt in 1 or 16 sequences; bench_panel: the panel's own prompts and budget,
// so that its ×16 ÷ ×1 is compared with plain llama.cpp's on the same work). Header-only.
#pragma once
#include <llama.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common.hpp"

namespace pmbench {

// The prompt's token ids (with BOS, as the engine tokenizes a raw prompt).
inline std::vector<llama_token> plain_tokenize(const llama_model* model, const std::string& text) {
    const llama_vocab* v = llama_model_get_vocab(model);
    std::vector<llama_token> ids(text.size() + 8);
    const int n = llama_tokenize(v, text.c_str(), int(text.size()), ids.data(), int(ids.size()), true, false);
    if (n < 0) {
        std::fprintf(stderr, "plain loop: cannot tokenize the prompt\n");
        std::exit(1);
    }
    ids.resize(size_t(n));
    return ids;
}

// Generates n_tok tokens (greedy, no stop at end-of-generation) after each prompt, `n_seq` prompts
// at a time: the wave's prompts prefilled in one batch, then one decode per step with one token per
// sequence. The context: 512 cells per sequence, unified KV; exact: F32 KV and no flash attention
// (phasemap's exact precision). Timing counts the generated tokens over the whole call (prefill
// included; context creation excluded).
inline Timing plain_generate(llama_model* model, const std::vector<std::vector<llama_token>>& prompts, int n_tok, int threads,
                             bool exact, int n_seq) {
    size_t longest = 1;
    for (const auto& p : prompts) longest = std::max(longest, p.size());
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512 * uint32_t(n_seq);
    cp.n_batch = cp.n_ubatch = std::max<uint32_t>(cp.n_ctx, uint32_t(longest) * uint32_t(n_seq));
    cp.n_seq_max = uint32_t(n_seq);
    cp.n_threads = cp.n_threads_batch = threads;
    cp.kv_unified = true;
    cp.no_perf = true;
    if (exact) {
        cp.type_k = cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "plain loop: cannot create the context\n");
        std::exit(1);
    }
    llama_sampler* smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    llama_batch b = llama_batch_init(int32_t(longest) * n_seq, 0, 1);
    const auto t0 = BenchClock::now();
    const double c0 = cpu_seconds();
    int64_t generated = 0;
    for (size_t w0 = 0; w0 < prompts.size(); w0 += size_t(n_seq)) {
        const int ns = int(std::min(prompts.size() - w0, size_t(n_seq)));
        llama_memory_clear(llama_get_memory(ctx), true);
        b.n_tokens = 0;
        std::vector<int> out_idx(static_cast<size_t>(ns)), pos(static_cast<size_t>(ns));
        for (int s = 0; s < ns; ++s) {
            const auto& ids = prompts[w0 + size_t(s)];
            for (size_t i = 0; i < ids.size(); ++i) {
                const int k = b.n_tokens++;
                b.token[k] = ids[i];
                b.pos[k] = int32_t(i);
                b.n_seq_id[k] = 1;
                b.seq_id[k][0] = s;
                b.logits[k] = i + 1 == ids.size();
            }
            out_idx[size_t(s)] = b.n_tokens - 1;
            pos[size_t(s)] = int(ids.size());
        }
        for (int step = 0; step < n_tok; ++step) {
            if (llama_decode(ctx, b) != 0) {
                std::fprintf(stderr, "plain loop: decode failed\n");
                std::exit(1);
            }
            std::vector<llama_token> next(static_cast<size_t>(ns));
            for (int s = 0; s < ns; ++s) next[size_t(s)] = llama_sampler_sample(smpl, ctx, out_idx[size_t(s)]);
            generated += ns;
            b.n_tokens = 0;
            for (int s = 0; s < ns; ++s) {
                b.token[s] = next[size_t(s)];
                b.pos[s] = pos[size_t(s)]++;
                b.n_seq_id[s] = 1;
                b.seq_id[s][0] = s;
                b.logits[s] = true;
                out_idx[size_t(s)] = s;
                ++b.n_tokens;
            }
        }
    }
    const double sec = std::chrono::duration<double>(BenchClock::now() - t0).count();
    const double c = cpu_seconds() - c0;
    llama_batch_free(b);
    llama_sampler_free(smpl);
    llama_free(ctx);
    return {double(generated) / sec, double(generated) / c};
}

}  // namespace pmbench
