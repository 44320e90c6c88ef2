// Model specs for the random GGUF generator: presets, validation, the tensor layout each
// architecture needs, and where llama.cpp's vocab files are found.
//
// The layouts mirror the pinned llama.cpp loaders (src/models/<arch>.cpp, load_arch_tensors):
// every tensor the loader requires is emitted, optional ones only where the corresponding
// real model has them (llama.cpp rejects files with tensors it did not create).
#include "phasemap/modelgen/modelgen.hpp"

#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace phasemap::modelgen {

namespace {

// One supported architecture: its default vocab and whether it has a "real" preset.
struct ArchDef {
    const char* name;
    const char* vocab;  // ggml-vocab-<vocab>.gguf in llama.cpp's models/
    bool has_real;
};

// Vocab choices: the tokenizer family of the real models of each architecture.
//   gemma2: llama.cpp ships no Gemma-1/2 vocab; gemma2 models use a SentencePiece ("llama")
//           tokenizer, so llama-spm (32000 tokens) stands in (ggml-vocab-gemma-4 needs the
//           separate "gemma4" tokenizer model and has 262144 tokens).
//   phi2:   Phi-2 uses the GPT-2/CodeGen BPE vocabulary.
constexpr ArchDef kArchs[] = {
    {"gemma2", "llama-spm", false},
    {"gpt2", "gpt-2", true},
    {"gptneox", "gpt-neox", false},
    {"llama", "llama-bpe", true},
    {"phi2", "gpt-2", false},
    {"phi3", "phi-3", false},
    {"qwen2", "qwen2", true},
};

const ArchDef* find_arch(const std::string& arch) {
    for (const auto& a : kArchs)
        if (arch == a.name) return &a;
    return nullptr;
}

const ArchDef& require_arch(const std::string& arch) {
    if (const ArchDef* a = find_arch(arch)) return *a;
    throw std::invalid_argument(fmt::format("unknown architecture '{}' (supported: {})", arch,
                                            fmt::join(supported_archs(), ", ")));
}

uint32_t head_dim_of(const ModelSpec& s) { return s.head_dim ? s.head_dim : s.n_embd / s.n_head; }
uint32_t n_rot_of(const ModelSpec& s) { return s.n_rot ? s.n_rot : head_dim_of(s); }

}  // namespace

const char* weight_type_name(WeightType t) { return t == WeightType::f16 ? "f16" : "f32"; }

WeightType parse_weight_type(const std::string& s) {
    if (s == "f32") return WeightType::f32;
    if (s == "f16") return WeightType::f16;
    throw std::invalid_argument(fmt::format("unknown weight type '{}' (expected f32 or f16)", s));
}

std::vector<std::string> supported_archs() {
    std::vector<std::string> v;
    for (const auto& a : kArchs) v.emplace_back(a.name);
    return v;
}

std::vector<std::string> supported_sizes(const std::string& arch) {
    const ArchDef& a = require_arch(arch);
    if (a.has_real) return {"tiny", "real"};
    return {"tiny"};
}

ModelSpec preset(const std::string& arch, const std::string& size) {
    const ArchDef& a = require_arch(arch);
    ModelSpec s;
    s.arch = arch;
    s.size = size;
    s.vocab = a.vocab;

    if (size == "tiny") {
        // Small enough that loading + a few decode steps take milliseconds; the embedding
        // table (n_vocab x 64) dominates the file size.
        s.n_embd = 64;
        s.n_layer = 4;
        s.n_head = 4;
        s.n_head_kv = 4;
        s.n_ctx = 512;
        s.type = WeightType::f32;
        if (arch == "llama") {
            s.n_head_kv = 2;
            s.n_ff = 128;
            s.rope_theta = 500000.0f;
            s.norm_eps = 1e-5f;
            s.tied_embeddings = true;
        } else if (arch == "qwen2") {
            s.n_head_kv = 2;
            s.n_ff = 128;
            s.rope_theta = 1000000.0f;
            s.norm_eps = 1e-6f;
            s.tied_embeddings = true;
        } else if (arch == "gemma2") {
            s.n_head_kv = 2;
            s.n_ff = 128;
            s.norm_eps = 1e-6f;
            s.tied_embeddings = true;
            s.sliding_window = 128;  // smaller than the context so the SWA layers matter
        } else if (arch == "phi3") {
            s.n_head_kv = 2;
            s.n_ff = 128;
            s.norm_eps = 1e-5f;
        } else if (arch == "gpt2") {
            s.n_ff = 256;
            s.tied_embeddings = true;
        } else if (arch == "gptneox") {
            s.n_ff = 256;
            s.n_rot = 4;  // Pythia: rotary_pct 0.25
        } else if (arch == "phi2") {
            s.n_ff = 256;
            s.n_rot = 6;  // Phi-2: partial_rotary_factor 0.4 -> int(0.4 * 64) / 4 heads
        }
        return s;
    }

    if (size == "real" && a.has_real) {
        s.type = WeightType::f16;
        if (arch == "qwen2") {  // Qwen2.5-0.5B
            s.n_embd = 896;
            s.n_layer = 24;
            s.n_head = 14;
            s.n_head_kv = 2;
            s.n_ff = 4864;
            s.n_ctx = 32768;
            s.rope_theta = 1000000.0f;
            s.norm_eps = 1e-6f;
            s.tied_embeddings = true;
        } else if (arch == "llama") {  // Llama-3.2-1B
            s.n_embd = 2048;
            s.n_layer = 16;
            s.n_head = 32;
            s.n_head_kv = 8;
            s.n_ff = 8192;
            s.n_ctx = 131072;
            s.rope_theta = 500000.0f;
            s.norm_eps = 1e-5f;
            s.tied_embeddings = true;
            s.llama3_rope_freqs = true;
        } else if (arch == "gpt2") {  // GPT-2 small (124M)
            s.n_embd = 768;
            s.n_layer = 12;
            s.n_head = 12;
            s.n_head_kv = 12;
            s.n_ff = 3072;
            s.n_ctx = 1024;
            s.norm_eps = 1e-5f;
            s.tied_embeddings = true;
        }
        return s;
    }

    throw std::invalid_argument(fmt::format("unknown size '{}' for architecture '{}' (available: {})", size,
                                            arch, fmt::join(supported_sizes(arch), ", ")));
}

void validate(const ModelSpec& s) {
    require_arch(s.arch);
    auto fail = [&](const std::string& why) {
        throw std::invalid_argument(fmt::format("invalid {} model spec: {}", s.arch, why));
    };
    if (s.vocab.empty() || s.vocab.find('/') != std::string::npos) fail(fmt::format("bad vocab name '{}'", s.vocab));
    if (!s.n_embd || !s.n_layer || !s.n_head || !s.n_head_kv || !s.n_ff || !s.n_ctx)
        fail("n_embd, n_layer, n_head, n_head_kv, n_ff and n_ctx must all be positive");
    if (s.n_layer > 512) fail("n_layer exceeds llama.cpp's limit of 512");
    if (s.n_head % s.n_head_kv) fail(fmt::format("n_head {} is not a multiple of n_head_kv {}", s.n_head, s.n_head_kv));
    if (!s.head_dim && s.n_embd % s.n_head) fail(fmt::format("n_embd {} is not a multiple of n_head {}", s.n_embd, s.n_head));
    // Only llama and gemma2 size Q/K/V by head_dim * heads; the others assume d / n_head.
    if (s.head_dim && s.head_dim * s.n_head != s.n_embd && s.arch != "llama" && s.arch != "gemma2")
        fail("head_dim must equal n_embd / n_head for this architecture");
    const uint32_t hd = head_dim_of(s), rot = n_rot_of(s);
    if (rot > hd || rot % 2) fail(fmt::format("n_rot {} must be even and at most the head size {}", rot, hd));
    if (s.arch == "llama" && rot != hd) fail("llama requires n_rot == head size");
    if ((s.arch == "gpt2" || s.arch == "gptneox" || s.arch == "phi2") && s.n_head_kv != s.n_head)
        fail("this architecture has no grouped-query attention (n_head_kv must equal n_head)");
    if (s.arch == "gemma2" && !s.tied_embeddings) fail("gemma2 always ties the output head to token_embd");
    if ((s.arch == "gptneox" || s.arch == "phi2") && s.tied_embeddings) fail("this architecture requires a separate output head");
    if (s.arch == "gemma2" && !s.sliding_window) fail("gemma2 needs a sliding_window");
    if (s.llama3_rope_freqs && s.arch != "llama") fail("llama3_rope_freqs applies to llama only");
    if (!(s.norm_eps > 0.0f) || !(s.rope_theta > 0.0f)) fail("norm_eps and rope_theta must be positive");
    if (s.n_expert || s.n_expert_used) {
        if (s.arch != "llama") fail("experts (a Mixtral-style MoE) are written for llama only");
        if (s.n_expert < 2 || s.n_expert > 1024) fail(fmt::format("n_expert {} is outside 2 … 1024", s.n_expert));
        if (s.n_expert_used < 1 || s.n_expert_used > s.n_expert)
            fail(fmt::format("n_expert_used {} must be between 1 and n_expert {}", s.n_expert_used, s.n_expert));
    }
}

std::vector<TensorDesc> tensor_layout(const ModelSpec& s, uint32_t n_vocab) {
    validate(s);
    if (n_vocab == 0) throw std::invalid_argument("vocabulary is empty");
    const int64_t d = s.n_embd, V = n_vocab, ff = s.n_ff;
    const int64_t hd = head_dim_of(s);
    const int64_t q_dim = hd * s.n_head, kv_dim = hd * s.n_head_kv;
    const bool f16 = s.type == WeightType::f16;
    const std::string& a = s.arch;

    std::vector<TensorDesc> t;
    auto mat = [&](std::string name, int64_t ne0, int64_t ne1) { t.push_back({std::move(name), {ne0, ne1}, f16}); };
    auto vec = [&](std::string name, int64_t ne0) { t.push_back({std::move(name), {ne0}, false}); };
    auto blk = [](uint32_t i, const char* rest) { return fmt::format("blk.{}.{}", i, rest); };

    // ---- global tensors
    mat("token_embd.weight", d, V);
    if (a == "gpt2") mat("position_embd.weight", d, s.n_ctx);
    vec("output_norm.weight", d);
    if (a == "gpt2" || a == "gptneox" || a == "phi2") vec("output_norm.bias", d);
    if (!s.tied_embeddings) mat("output.weight", d, V);
    if (a == "phi2") vec("output.bias", V);
    if (s.llama3_rope_freqs) vec("rope_freqs.weight", n_rot_of(s) / 2);

    // ---- blocks
    for (uint32_t i = 0; i < s.n_layer; ++i) {
        if (a == "llama" || a == "qwen2" || a == "gemma2") {
            vec(blk(i, "attn_norm.weight"), d);
            mat(blk(i, "attn_q.weight"), d, q_dim);
            mat(blk(i, "attn_k.weight"), d, kv_dim);
            mat(blk(i, "attn_v.weight"), d, kv_dim);
            if (a == "qwen2") {
                vec(blk(i, "attn_q.bias"), q_dim);
                vec(blk(i, "attn_k.bias"), kv_dim);
                vec(blk(i, "attn_v.bias"), kv_dim);
            }
            mat(blk(i, "attn_output.weight"), q_dim, d);
            if (a == "gemma2") vec(blk(i, "post_attention_norm.weight"), d);
            vec(blk(i, "ffn_norm.weight"), d);
            if (s.n_expert > 0) {
                const int64_t E = s.n_expert;
                mat(blk(i, "ffn_gate_inp.weight"), d, E);
                t.push_back({blk(i, "ffn_gate_exps.weight"), {d, ff, E}, f16});
                t.push_back({blk(i, "ffn_down_exps.weight"), {ff, d, E}, f16});
                t.push_back({blk(i, "ffn_up_exps.weight"), {d, ff, E}, f16});
            } else {
                mat(blk(i, "ffn_gate.weight"), d, ff);
                mat(blk(i, "ffn_up.weight"), d, ff);
                mat(blk(i, "ffn_down.weight"), ff, d);
            }
            if (a == "gemma2") vec(blk(i, "post_ffw_norm.weight"), d);
        } else if (a == "gpt2" || a == "gptneox") {
            vec(blk(i, "attn_norm.weight"), d);
            vec(blk(i, "attn_norm.bias"), d);
            mat(blk(i, "attn_qkv.weight"), d, d + 2 * kv_dim);
            vec(blk(i, "attn_qkv.bias"), d + 2 * kv_dim);
            mat(blk(i, "attn_output.weight"), d, d);
            vec(blk(i, "attn_output.bias"), d);
            vec(blk(i, "ffn_norm.weight"), d);
            vec(blk(i, "ffn_norm.bias"), d);
            mat(blk(i, "ffn_up.weight"), d, ff);
            vec(blk(i, "ffn_up.bias"), ff);
            mat(blk(i, "ffn_down.weight"), ff, d);
            vec(blk(i, "ffn_down.bias"), d);
        } else if (a == "phi2") {
            // Current Hugging Face Phi-2 checkpoints have separate q/k/v projections with biases
            // (the loader also accepts a fused attn_qkv); attention and MLP run in parallel off
            // one layer norm, so there is no ffn_norm.
            vec(blk(i, "attn_norm.weight"), d);
            vec(blk(i, "attn_norm.bias"), d);
            mat(blk(i, "attn_q.weight"), d, d);
            mat(blk(i, "attn_k.weight"), d, kv_dim);
            mat(blk(i, "attn_v.weight"), d, kv_dim);
            vec(blk(i, "attn_q.bias"), d);
            vec(blk(i, "attn_k.bias"), kv_dim);
            vec(blk(i, "attn_v.bias"), kv_dim);
            mat(blk(i, "attn_output.weight"), d, d);
            vec(blk(i, "attn_output.bias"), d);
            mat(blk(i, "ffn_up.weight"), d, ff);
            vec(blk(i, "ffn_up.bias"), ff);
            mat(blk(i, "ffn_down.weight"), ff, d);
            vec(blk(i, "ffn_down.bias"), d);
        } else if (a == "phi3") {
            // Phi-3 fuses q/k/v into attn_qkv and gate/up into ffn_up (2 * n_ff wide), no biases.
            vec(blk(i, "attn_norm.weight"), d);
            mat(blk(i, "attn_qkv.weight"), d, d + 2 * kv_dim);
            mat(blk(i, "attn_output.weight"), d, d);
            vec(blk(i, "ffn_norm.weight"), d);
            mat(blk(i, "ffn_up.weight"), d, 2 * ff);
            mat(blk(i, "ffn_down.weight"), ff, d);
        }
    }
    return t;
}

fs::path vocab_file(const ModelSpec& spec, const fs::path& vocab_dir) {
    return vocab_dir / ("ggml-vocab-" + spec.vocab + ".gguf");
}

std::vector<fs::path> vocab_dir_candidates(std::string_view llama_commit) {
    std::vector<fs::path> v;
    auto env = [](const char* name) -> std::string {
        const char* e = std::getenv(name);
        return e ? std::string(e) : std::string();
    };
    if (auto e = env("PHASEMAP_VOCAB_DIR"); !e.empty()) v.emplace_back(e);
    if (auto e = env("PHASEMAP_LLAMA_SRC"); !e.empty()) v.push_back(fs::path(e) / "models");
#ifdef PHASEMAP_MODELGEN_VOCAB_DIR
    v.emplace_back(PHASEMAP_MODELGEN_VOCAB_DIR);
#endif
    if (!llama_commit.empty()) {
        // scripts/deps.sh: CACHE=${PHASEMAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phasemap},
        // llama.cpp checked out in $CACHE/llama.cpp-<commit>/src.
        fs::path cache;
        if (auto e = env("PHASEMAP_CACHE"); !e.empty()) cache = e;
        else if (auto x = env("XDG_CACHE_HOME"); !x.empty()) cache = fs::path(x) / "phasemap";
        else if (auto h = env("HOME"); !h.empty()) cache = fs::path(h) / ".cache" / "phasemap";
        if (!cache.empty())
            v.push_back(cache / ("llama.cpp-" + std::string(llama_commit)) / "src" / "models");
    }
    return v;
}

fs::path default_vocab_dir(std::string_view llama_commit) {
    for (const fs::path& dir : vocab_dir_candidates(llama_commit)) {
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string f = entry.path().filename().string();
            if (f.starts_with("ggml-vocab-") && f.ends_with(".gguf")) return dir;
        }
    }
    return {};
}

}  // namespace phasemap::modelgen
