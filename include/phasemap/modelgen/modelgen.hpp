// Random-weight GGUF model generator for tests and benchmarks.
//
// Writes a GGUF file that the pinned llama.cpp loads as a model of the given architecture:
// the metadata keys, tensor names and tensor shapes are those llama.cpp's loader requires
// (src/models/<arch>.cpp: load_arch_hparams / load_arch_tensors), the tokenizer is copied
// verbatim from one of llama.cpp's vocab files (models/ggml-vocab-*.gguf), and the weights
// are seeded, deterministic random numbers scaled like a real initialisation.
//
// This header does not expose ggml/gguf types.
//
// Owns: nothing kept; specs are plain values, files are written atomically. Throws: as stated per function.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace phasemap::modelgen {

namespace fs = std::filesystem;

// Storage type of the 2-D weight matrices (embeddings included). 1-D tensors (norm weights,
// biases, rope factors) are always F32, as llama.cpp's converters write them.
enum class WeightType { f32, f16 };
const char* weight_type_name(WeightType t);        // "f32" / "f16"
WeightType parse_weight_type(const std::string& s);  // throws std::invalid_argument

// Shape and hyper-parameters of one generated model. Fields an architecture has no use for
// are ignored by the writer (e.g. sliding_window outside gemma2).
struct ModelSpec {
    std::string arch;       // llama.cpp architecture name, written to general.architecture
    std::string size;       // preset label ("tiny", "real", or anything for custom specs)
    std::string vocab;      // vocab file stem: <vocab_dir>/ggml-vocab-<vocab>.gguf
    uint32_t n_embd = 0;     // hidden size d
    uint32_t n_layer = 0;    // transformer blocks
    uint32_t n_head = 0;     // attention heads
    uint32_t n_head_kv = 0;  // key/value heads (== n_head without GQA)
    uint32_t n_ff = 0;       // feed-forward width (phi3: per half of the fused gate/up matrix)
    uint32_t n_ctx = 0;      // training context length (gpt2: rows of position_embd)
    uint32_t head_dim = 0;   // per-head size; 0 means n_embd / n_head
    uint32_t n_rot = 0;      // rotary dimensions per head; 0 means the full head
    float rope_theta = 10000.0f;
    float norm_eps = 1e-5f;          // layer-norm or RMS-norm epsilon, whichever the arch uses
    bool tied_embeddings = false;    // no output.weight: the output head reuses token_embd
    bool llama3_rope_freqs = false;  // llama: add Llama-3.x rope_freqs (factor 32, orig ctx 8192)
    uint32_t sliding_window = 0;     // gemma2: window of the sliding-window layers
    float attn_softcap = 50.0f;      // gemma2: attention logit soft-capping
    float final_softcap = 30.0f;     // gemma2: final logit soft-capping
    WeightType type = WeightType::f32;
    uint64_t seed = 0;
    // llama only: a Mixtral-style MoE when n_expert > 0. Every block's MLP becomes n_expert SwiGLU
    // experts of width n_ff (ffn_{gate,up,down}_exps) and a router ffn_gate_inp; llama.cpp selects
    // the n_expert_used experts of highest softmax probability and renormalises their weights.
    uint32_t n_expert = 0;       // 0 = dense; else 2 … 1024
    uint32_t n_expert_used = 0;  // k, 1 … n_expert (required with n_expert)
};

// Architectures the writer supports, sorted: gemma2 gpt2 gptneox llama phi2 phi3 qwen2.
std::vector<std::string> supported_archs();
// Preset sizes of one architecture: "tiny" for all, "real" for llama, qwen2 and gpt2.
// Throws std::invalid_argument for an unknown architecture.
std::vector<std::string> supported_sizes(const std::string& arch);

// The preset for (arch, size). tiny: d 64, 4 blocks, 4 heads (2 KV heads for GQA archs),
// context 512, f32. real: Llama-3.2-1B (llama), Qwen2.5-0.5B (qwen2), GPT-2 small (gpt2), f16.
// Throws std::invalid_argument naming the supported archs/sizes.
ModelSpec preset(const std::string& arch, const std::string& size);

// Checks the spec is consistent (divisibility, arch-specific constraints such as gemma2's
// always-tied embeddings). Throws std::invalid_argument with the reason.
void validate(const ModelSpec& spec);

// One tensor the writer emits (shape in ggml order: ne[0] is the contiguous dimension).
struct TensorDesc {
    std::string name;
    std::vector<int64_t> shape;
    bool f16 = false;  // stored as F16 (otherwise F32)
};
// The tensors written for `spec` with a vocabulary of n_vocab tokens, in file order.
std::vector<TensorDesc> tensor_layout(const ModelSpec& spec, uint32_t n_vocab);

// <vocab_dir>/ggml-vocab-<spec.vocab>.gguf
fs::path vocab_file(const ModelSpec& spec, const fs::path& vocab_dir);
// Number of tokens (tokenizer.ggml.tokens) in a GGUF vocab file; throws std::runtime_error.
uint32_t vocab_size(const fs::path& vocab_file);

// Where the vocab files are looked for, in order:
//   1. $PHASEMAP_VOCAB_DIR
//   2. $PHASEMAP_LLAMA_SRC/models
//   3. the compile-time PHASEMAP_MODELGEN_VOCAB_DIR, when the build defines it
//   4. <cache>/llama.cpp-<llama_commit>/src/models, where <cache> is scripts/deps.sh's cache
//      ($PHASEMAP_CACHE, else $XDG_CACHE_HOME/phasemap, else $HOME/.cache/phasemap);
//      only when llama_commit is given.
std::vector<fs::path> vocab_dir_candidates(std::string_view llama_commit = {});
// The first candidate that exists and holds at least one ggml-vocab-*.gguf; empty when none.
fs::path default_vocab_dir(std::string_view llama_commit = {});

struct WriteResult {
    fs::path path;          // the written model
    fs::path vocab_file;    // tokenizer source
    uint32_t n_vocab = 0;
    uint64_t n_params = 0;  // elements over all tensors
    uint64_t n_tensors = 0;
    uint64_t file_bytes = 0;
};

// Writes the model to `out`: to a temporary file in the same directory first, renamed over
// `out` once complete, so no partial file is ever left behind. Tensor data is generated and
// written one chunk at a time (memory stays small for billion-parameter shapes).
// Same spec (seed included) -> byte-identical file.
// Throws std::invalid_argument for a bad spec, std::runtime_error for I/O or vocab problems.
WriteResult write_random_model(const ModelSpec& spec, const fs::path& vocab_dir, const fs::path& out);

// ---------------------------------------------------------------- LoRA adapters
//
// A random-weight LoRA adapter for an existing GGUF model, in the layout the pinned llama.cpp
// loads (src/llama-adapter.cpp): general.type "adapter", general.architecture of the base model,
// adapter.type "lora", adapter.lora.alpha; for every adapted weight W of shape {n_in, n_out}
// (ggml order) the tensors "<W>.lora_a" of shape {n_in, rank} and "<W>.lora_b" of shape
// {rank, n_out}. llama.cpp then computes W·x + scale · (alpha / rank) · B·(A·x).

struct LoraSpec {
    // Which base weights to adapt. Each target matches the 2-D tensors whose name is the target,
    // "<target>.weight", or ends in ".<target>.weight" (so "attn_q" adapts blk.N.attn_q.weight of
    // every block, "output" the LM head output.weight, "blk.2.ffn_up" one matrix).
    // token_embd (whose adapter layout is transposed) is not offered.
    std::vector<std::string> targets{"attn_q", "attn_v"};
    uint32_t rank = 8;
    float alpha = 0.0f;            // written to adapter.lora.alpha; 0 means "= rank"
    WeightType type = WeightType::f32;
    uint64_t seed = 0;
    // A ~ N(0, 1/n_in) entries (std 1/sqrt(n_in)), B ~ N(0, b_std^2): unlike a fresh fine-tune
    // (B = 0) the adapter changes the model from the start.
    float b_std = 0.02f;
};

struct LoraWriteResult {
    fs::path path;
    std::string architecture;          // of the base model
    std::vector<std::string> weights;  // adapted base tensors, in base-file order
    uint32_t rank = 0;
    float alpha = 0.0f;
    uint64_t n_params = 0;             // elements of all lora_a / lora_b tensors
    uint64_t file_bytes = 0;
};

// Writes the adapter for `base_model` to `out` (atomically, like write_random_model).
// Same spec and base shapes -> byte-identical file. Throws std::invalid_argument for a bad
// spec or a target that matches no 2-D weight of the base (the message lists the weights it
// has), std::runtime_error for an unreadable base or I/O problems.
LoraWriteResult write_random_lora(const fs::path& base_model, const LoraSpec& spec, const fs::path& out);

}  // namespace phasemap::modelgen
