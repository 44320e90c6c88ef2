// Writes a random-weight GGUF model: metadata through ggml's gguf API, then the tensor data
// streamed chunk by chunk into a temporary file that is renamed over the target at the end.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>
#include <ggml.h>
#include <gguf.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numbers>
#include <random>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/io/files.hpp"
#include "phasemap/stats/rng.hpp"

namespace phasemap::modelgen {

namespace {

// ---------------------------------------------------------------- random numbers
//
// Portable by construction: std::mt19937_64's output sequence is fixed by the standard, and the
// transformation below is plain integer arithmetic plus one float multiply, so a given seed
// yields the same bits with any standard library (std::normal_distribution would not).

uint64_t splitmix64(uint64_t x) { return stats::derive_seed(x, 0); }  // stats/rng.hpp: splitmix64's first output from x

uint64_t fnv1a(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

// Approximately standard-normal samples: the Irwin-Hall sum of four 16-bit uniforms taken from
// one 64-bit draw, centred and scaled to unit variance (bell-shaped, bounded at +-3.46).
class Gauss {
public:
    explicit Gauss(uint64_t seed) : eng_(seed) {}
    float operator()() {
        const uint64_t b = eng_();
        const int32_t s = int32_t((b & 0xffff) + ((b >> 16) & 0xffff) + ((b >> 32) & 0xffff) + (b >> 48));
        return float(s - 131070) * kScale;  // mean 4 * 65535 / 2, sd 65536 / sqrt(3)
    }

private:
    static constexpr float kScale = 1.7320508075688772f / 65536.0f;
    std::mt19937_64 eng_;
};

// ---------------------------------------------------------------- initialisation

constexpr float kInitStd = 0.02f;  // GPT-2 / Llama initializer_range

// How a tensor is filled, decided from its name.
struct Init {
    enum Kind { normal, ones_plus_noise, rope_freqs } kind = normal;
    float std = kInitStd;
};

Init init_for(const std::string& name, const ModelSpec& s) {
    auto ends = [&](std::string_view suf) { return name.ends_with(suf); };
    if (name == "rope_freqs.weight") return {Init::rope_freqs, 0.0f};
    // Norm gains around 1 (GGUF stores gemma's norm weights already offset by +1).
    if (ends("norm.weight")) return {Init::ones_plus_noise, kInitStd};
    if (ends(".bias")) return {Init::normal, kInitStd};
    if (name == "position_embd.weight") return {Init::normal, 0.01f};
    // Projections back into the residual stream: GPT-2's 1/sqrt(2 * n_layer) scaling keeps the
    // residual stream's growth bounded across depth.
    if (ends("attn_output.weight") || ends("ffn_down.weight") || ends("ffn_down_exps.weight"))
        return {Init::normal, kInitStd / std::sqrt(2.0f * float(s.n_layer))};
    // MoE router: std 1/sqrt(d) gives router logits of order 1 on the unit-RMS normed input, so
    // the softmax over experts is neither flat nor one-hot and the top-k selection varies by token.
    if (ends("ffn_gate_inp.weight")) return {Init::normal, 1.0f / std::sqrt(float(s.n_embd))};
    return {Init::normal, kInitStd};
}

// Llama-3.x rope scaling factors, as convert_hf_to_gguf.py computes them for rope_type "llama3"
// (factor 32, low/high frequency factors 1 and 4, original context 8192: Llama-3.2).
std::vector<float> llama3_rope_factors(const ModelSpec& s, int64_t n) {
    const double base = s.rope_theta, dim = double(2 * n);
    const double factor = 32.0, low_ff = 1.0, high_ff = 4.0, old_ctx = 8192.0;
    const double low_wavelen = old_ctx / low_ff, high_wavelen = old_ctx / high_ff;
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const double freq = 1.0 / std::pow(base, double(2 * i) / dim);
        const double wavelen = 2.0 * std::numbers::pi / freq;
        double f;
        if (wavelen < high_wavelen) f = 1.0;
        else if (wavelen > low_wavelen) f = factor;
        else {
            const double smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff);
            f = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[size_t(i)] = float(f);
    }
    return out;
}

// ---------------------------------------------------------------- gguf helpers

struct GgufFree {
    void operator()(gguf_context* c) const { gguf_free(c); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufFree>;
struct GgmlFree {
    void operator()(ggml_context* c) const { ggml_free(c); }
};
using GgmlPtr = std::unique_ptr<ggml_context, GgmlFree>;

GgufPtr open_vocab(const fs::path& file) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
        throw std::runtime_error(fmt::format(
            "vocab file not found: {} (point the vocab directory at llama.cpp's models/, e.g. with "
            "PHASEMAP_VOCAB_DIR)", file.string()));
    gguf_init_params p{/*no_alloc =*/true, /*ctx =*/nullptr};
    GgufPtr ctx(gguf_init_from_file(file.c_str(), p));
    if (!ctx) throw std::runtime_error(fmt::format("cannot read GGUF vocab file {}", file.string()));
    return ctx;
}

uint32_t token_count(const gguf_context* v, const fs::path& file) {
    const int64_t k = gguf_find_key(v, "tokenizer.ggml.tokens");
    if (k < 0 || gguf_get_kv_type(v, k) != GGUF_TYPE_ARRAY || gguf_get_arr_type(v, k) != GGUF_TYPE_STRING)
        throw std::runtime_error(fmt::format("{} has no tokenizer.ggml.tokens string array", file.string()));
    return uint32_t(gguf_get_arr_n(v, k));
}

// Copies every tokenizer.* key of the vocab file, keeping each value's exact GGUF type.
void copy_tokenizer_kv(gguf_context* dst, const gguf_context* src) {
    const int64_t n = gguf_get_n_kv(src);
    for (int64_t i = 0; i < n; ++i) {
        const char* key = gguf_get_key(src, i);
        if (std::string_view(key).rfind("tokenizer.", 0) != 0) continue;
        switch (gguf_get_kv_type(src, i)) {
            case GGUF_TYPE_UINT8: gguf_set_val_u8(dst, key, gguf_get_val_u8(src, i)); break;
            case GGUF_TYPE_INT8: gguf_set_val_i8(dst, key, gguf_get_val_i8(src, i)); break;
            case GGUF_TYPE_UINT16: gguf_set_val_u16(dst, key, gguf_get_val_u16(src, i)); break;
            case GGUF_TYPE_INT16: gguf_set_val_i16(dst, key, gguf_get_val_i16(src, i)); break;
            case GGUF_TYPE_UINT32: gguf_set_val_u32(dst, key, gguf_get_val_u32(src, i)); break;
            case GGUF_TYPE_INT32: gguf_set_val_i32(dst, key, gguf_get_val_i32(src, i)); break;
            case GGUF_TYPE_UINT64: gguf_set_val_u64(dst, key, gguf_get_val_u64(src, i)); break;
            case GGUF_TYPE_INT64: gguf_set_val_i64(dst, key, gguf_get_val_i64(src, i)); break;
            case GGUF_TYPE_FLOAT32: gguf_set_val_f32(dst, key, gguf_get_val_f32(src, i)); break;
            case GGUF_TYPE_FLOAT64: gguf_set_val_f64(dst, key, gguf_get_val_f64(src, i)); break;
            case GGUF_TYPE_BOOL: gguf_set_val_bool(dst, key, gguf_get_val_bool(src, i)); break;
            case GGUF_TYPE_STRING: gguf_set_val_str(dst, key, gguf_get_val_str(src, i)); break;
            case GGUF_TYPE_ARRAY: {
                const gguf_type at = gguf_get_arr_type(src, i);
                const size_t len = gguf_get_arr_n(src, i);
                if (at == GGUF_TYPE_STRING) {
                    std::vector<const char*> strs(len);
                    for (size_t j = 0; j < len; ++j) strs[j] = gguf_get_arr_str(src, i, j);
                    gguf_set_arr_str(dst, key, strs.data(), len);
                } else if (at == GGUF_TYPE_ARRAY) {
                    throw std::runtime_error(fmt::format("vocab key {}: nested arrays are not supported", key));
                } else {
                    gguf_set_arr_data(dst, key, at, gguf_get_arr_data(src, i), len);
                }
                break;
            }
            default:
                throw std::runtime_error(fmt::format("vocab key {}: unsupported GGUF type", key));
        }
    }
}

// The architecture's hyper-parameter keys, named and typed as llama.cpp reads them
// (llama-arch.cpp LLM_KV_NAMES; values as the HF->GGUF converters write them).
void set_arch_kv(gguf_context* g, const ModelSpec& s, uint32_t n_vocab) {
    const std::string& a = s.arch;
    auto key = [&](const char* rest) { return a + "." + rest; };
    auto u32 = [&](const char* rest, uint32_t v) { gguf_set_val_u32(g, key(rest).c_str(), v); };
    auto f32 = [&](const char* rest, float v) { gguf_set_val_f32(g, key(rest).c_str(), v); };
    const uint32_t head_dim = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
    const uint32_t n_rot = s.n_rot ? s.n_rot : head_dim;
    const bool rms = a == "llama" || a == "qwen2" || a == "gemma2" || a == "phi3";

    u32("context_length", s.n_ctx);
    u32("embedding_length", s.n_embd);
    u32("block_count", s.n_layer);
    u32("feed_forward_length", s.n_ff);
    u32("attention.head_count", s.n_head);
    if (a != "gpt2" && a != "gptneox") u32("attention.head_count_kv", s.n_head_kv);
    if (a == "llama" || a == "qwen2" || a == "phi3") f32("rope.freq_base", s.rope_theta);
    f32(rms ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon", s.norm_eps);
    if (a == "llama" || a == "gptneox" || a == "phi2" || a == "phi3") u32("rope.dimension_count", n_rot);
    if (a == "llama") u32("vocab_size", n_vocab);
    if (a == "gemma2" || (a == "llama" && head_dim * s.n_head != s.n_embd)) {
        u32("attention.key_length", head_dim);
        u32("attention.value_length", head_dim);
    }
    if (a == "gemma2") {
        f32("attn_logit_softcapping", s.attn_softcap);
        f32("final_logit_softcapping", s.final_softcap);
        u32("attention.sliding_window", s.sliding_window);
    }
    if (a == "gptneox") gguf_set_val_bool(g, key("use_parallel_residual").c_str(), true);
    if (a == "phi3") u32("rope.scaling.original_context_length", s.n_ctx);
    if (s.n_expert > 0) {
        u32("expert_count", s.n_expert);
        u32("expert_used_count", s.n_expert_used);
    }
}

// ---------------------------------------------------------------- output file

// The output through the atomic writer's temporary folder (io::TempArea: removed unless commit()
// renamed the file into place, and on SIGINT/SIGTERM), written with a large stdio buffer.
class TempOutput {
public:
    explicit TempOutput(const fs::path& target) : target_(target), area_(target) {
        path_ = area_.dir() / "data";
        file_ = std::fopen(path_.c_str(), "wb");
        if (!file_) throw std::runtime_error(fmt::format("cannot write '{}': {}", target.string(), std::strerror(errno)));
        std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
    }
    ~TempOutput() {
        if (file_) std::fclose(file_);
    }
    TempOutput(const TempOutput&) = delete;
    TempOutput& operator=(const TempOutput&) = delete;

    FILE* file() { return file_; }
    uint64_t written() const { return written_; }
    void count(uint64_t n) { written_ += n; }

    void write(const void* data, size_t n) {
        if (n && std::fwrite(data, 1, n, file_) != n)
            throw std::runtime_error(fmt::format("cannot write '{}': {}", target_.string(), std::strerror(errno)));
        written_ += n;
    }
    void commit() {
        FILE* f = file_;
        file_ = nullptr;
        if (std::fflush(f) != 0 || std::ferror(f)) {
            const int e = errno;
            std::fclose(f);
            throw std::runtime_error(fmt::format("cannot write '{}': {}", target_.string(), std::strerror(e)));
        }
        if (std::fclose(f) != 0)
            throw std::runtime_error(fmt::format("cannot write '{}': {}", target_.string(), std::strerror(errno)));
        area_.commit_file(path_, target_);
    }

private:
    fs::path target_, path_;
    io::TempArea area_;
    FILE* file_ = nullptr;
    uint64_t written_ = 0;
};

// Generates one tensor's values and streams them to `out` in fixed-size chunks.
void write_tensor_data(TempOutput& out, const TensorDesc& t, const ModelSpec& s) {
    int64_t n = 1;
    for (int64_t ne : t.shape) n *= ne;
    const Init init = init_for(t.name, s);

    if (init.kind == Init::rope_freqs) {
        const std::vector<float> f = llama3_rope_factors(s, n);
        out.write(f.data(), f.size() * sizeof(float));
        return;
    }
    // Each tensor has its own stream, derived from the seed and the tensor's name: its values
    // do not depend on which other tensors the file holds.
    Gauss gauss(splitmix64(s.seed ^ fnv1a(t.name)));
    constexpr int64_t kChunk = int64_t(1) << 20;
    std::vector<float> buf(size_t(std::min(n, kChunk)));
    std::vector<ggml_fp16_t> half(t.f16 ? buf.size() : 0);
    for (int64_t done = 0; done < n; done += kChunk) {
        const int64_t m = std::min(kChunk, n - done);
        for (int64_t j = 0; j < m; ++j) buf[size_t(j)] = gauss() * init.std;
        if (init.kind == Init::ones_plus_noise)
            for (int64_t j = 0; j < m; ++j) buf[size_t(j)] += 1.0f;
        if (t.f16) {
            ggml_fp32_to_fp16_row(buf.data(), half.data(), m);
            out.write(half.data(), size_t(m) * sizeof(ggml_fp16_t));
        } else {
            out.write(buf.data(), size_t(m) * sizeof(float));
        }
    }
}

// Writes `g`'s metadata (tensor infos included) and then each tensor's data, padded to the
// file's alignment, to a temporary file renamed onto `out`; write_data(tmp, i) appends tensor i's
// bytes. Returns the file size.
template <class WriteData>
uint64_t write_gguf_file(gguf_context* g, const fs::path& out, const std::vector<std::string>& names, WriteData&& write_data) {
    TempOutput tmp(out);
    // The metadata block (padded to the alignment: the data section starts right after it),
    // written through the checked writer rather than gguf's own, which prints its failures.
    const uint64_t data_offset = gguf_get_meta_size(g);
    {
        std::vector<char> meta(data_offset);
        gguf_get_meta_data(g, meta.data());
        tmp.write(meta.data(), meta.size());
    }
    const size_t align = gguf_get_alignment(g);
    const std::vector<char> zeros(align, 0);
    for (size_t i = 0; i < names.size(); ++i) {
        if (tmp.written() != data_offset + gguf_get_tensor_offset(g, int64_t(i)))
            throw std::logic_error("tensor data offset mismatch for " + names[i]);
        write_data(tmp, i);
        tmp.write(zeros.data(), (align - tmp.written() % align) % align);
    }
    const uint64_t bytes = tmp.written();
    tmp.commit();
    return bytes;
}

}  // namespace

uint32_t vocab_size(const fs::path& file) {
    GgufPtr v = open_vocab(file);
    return token_count(v.get(), file);
}

WriteResult write_random_model(const ModelSpec& spec, const fs::path& vocab_dir, const fs::path& out) {
    validate(spec);
    if (out.empty() || !out.has_filename())
        throw std::invalid_argument(fmt::format("bad output path '{}'", out.string()));
    std::error_code ec;
    if (fs::is_directory(out, ec)) throw std::runtime_error(fmt::format("output {} is a directory", out.string()));
    const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    if (!fs::is_directory(parent, ec))
        throw std::runtime_error(fmt::format("output directory {} does not exist", parent.string()));

    WriteResult res;
    res.path = out;
    res.vocab_file = vocab_file(spec, vocab_dir);
    GgufPtr vocab = open_vocab(res.vocab_file);
    res.n_vocab = token_count(vocab.get(), res.vocab_file);
    const std::vector<TensorDesc> layout = tensor_layout(spec, res.n_vocab);

    // ---- metadata
    GgufPtr g(gguf_init_empty());
    gguf_set_val_str(g.get(), "general.architecture", spec.arch.c_str());
    gguf_set_val_str(g.get(), "general.name", fmt::format("phasemap-random-{}-{}", spec.arch, spec.size).c_str());
    gguf_set_val_u32(g.get(), "general.file_type", spec.type == WeightType::f16 ? 1u : 0u);  // LLAMA_FTYPE_*
    gguf_set_val_u64(g.get(), "phasemap.modelgen.seed", spec.seed);
    set_arch_kv(g.get(), spec, res.n_vocab);
    copy_tokenizer_kv(g.get(), vocab.get());
    // ggml-vocab-gpt-neox.gguf predates tokenizer.ggml.pre; llama.cpp's own converter fills in
    // "mpt" (the same GPT-NeoX-20B tokenizer) when it builds a model from this file
    // (conversion/base.py, _set_vocab_builtin), and so do we.
    if (spec.vocab == "gpt-neox" && gguf_find_key(g.get(), "tokenizer.ggml.pre") < 0)
        gguf_set_val_str(g.get(), "tokenizer.ggml.pre", "mpt");
    vocab.reset();

    // Tensor descriptors only (no_alloc): the data is generated while writing.
    ggml_init_params ip{/*mem_size =*/ggml_tensor_overhead() * (layout.size() + 1), /*mem_buffer =*/nullptr,
                        /*no_alloc =*/true};
    GgmlPtr meta(ggml_init(ip));
    if (!meta) throw std::runtime_error("ggml_init failed");
    for (const TensorDesc& t : layout) {
        ggml_tensor* x = ggml_new_tensor(meta.get(), t.f16 ? GGML_TYPE_F16 : GGML_TYPE_F32, int(t.shape.size()),
                                         t.shape.data());
        ggml_set_name(x, t.name.c_str());
        gguf_add_tensor(g.get(), x);
        res.n_params += uint64_t(ggml_nelements(x));
    }
    res.n_tensors = layout.size();

    // ---- file: header + KV + tensor infos (padded), then each tensor's data (padded)
    std::vector<std::string> names;
    for (const auto& t : layout) names.push_back(t.name);
    res.file_bytes = write_gguf_file(g.get(), out, names,
                                     [&](TempOutput& tmp, size_t i) { write_tensor_data(tmp, layout[i], spec); });
    return res;
}

namespace {

// Writes n values of N(0, std^2) from `gauss`, as F32 or F16, in chunks.
void write_gauss(TempOutput& out, Gauss& gauss, int64_t n, float std, bool f16) {
    constexpr int64_t kChunk = int64_t(1) << 20;
    std::vector<float> buf(size_t(std::min(n, kChunk)));
    std::vector<ggml_fp16_t> half(f16 ? buf.size() : 0);
    for (int64_t done = 0; done < n; done += kChunk) {
        const int64_t m = std::min(kChunk, n - done);
        for (int64_t j = 0; j < m; ++j) buf[size_t(j)] = gauss() * std;
        if (f16) {
            ggml_fp32_to_fp16_row(buf.data(), half.data(), m);
            out.write(half.data(), size_t(m) * sizeof(ggml_fp16_t));
        } else {
            out.write(buf.data(), size_t(m) * sizeof(float));
        }
    }
}

bool target_matches(const std::string& tensor, const std::string& target) {
    return tensor == target || tensor == target + ".weight" || tensor.ends_with("." + target + ".weight");
}

// "blk.3.attn_q.weight" -> "attn_q"; "output.weight" -> "output" (for listing what a base has).
std::string short_weight_name(const std::string& tensor) {
    std::string s = tensor;
    if (s.ends_with(".weight")) s.resize(s.size() - 7);
    if (s.rfind("blk.", 0) == 0) {
        const size_t dot = s.find('.', 4);
        if (dot != std::string::npos) s.erase(0, dot + 1);
    }
    return s;
}

}  // namespace

LoraWriteResult write_random_lora(const fs::path& base_model, const LoraSpec& spec, const fs::path& out) {
    if (spec.rank < 1) throw std::invalid_argument("LoRA rank must be at least 1");
    if (!(spec.alpha >= 0.0f) || !std::isfinite(spec.alpha)) throw std::invalid_argument("LoRA alpha must be a finite number >= 0");
    if (!(spec.b_std >= 0.0f) || !std::isfinite(spec.b_std)) throw std::invalid_argument("LoRA b_std must be a finite number >= 0");
    if (spec.targets.empty()) throw std::invalid_argument("no LoRA target given");
    for (const auto& t : spec.targets) {
        if (t.empty()) throw std::invalid_argument("empty LoRA target name");
        if (t == "token_embd" || t.rfind("token_embd.", 0) == 0)
            throw std::invalid_argument("token_embd is not offered as a LoRA target (its adapter layout is transposed)");
    }
    if (out.empty() || !out.has_filename()) throw std::invalid_argument(fmt::format("bad output path '{}'", out.string()));
    std::error_code ec;
    if (fs::is_directory(out, ec)) throw std::runtime_error(fmt::format("output {} is a directory", out.string()));
    const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    if (!fs::is_directory(parent, ec))
        throw std::runtime_error(fmt::format("output directory {} does not exist", parent.string()));
    if (!fs::is_regular_file(base_model, ec))
        throw std::runtime_error(fmt::format("base model {} does not exist", base_model.string()));

    // The base model's metadata and tensor shapes (no data).
    ggml_context* base_ctx_raw = nullptr;
    gguf_init_params bp{/*no_alloc =*/true, /*ctx =*/&base_ctx_raw};
    GgufPtr base(gguf_init_from_file(base_model.c_str(), bp));
    GgmlPtr base_ctx(base_ctx_raw);
    if (!base || !base_ctx) throw std::runtime_error(fmt::format("cannot read GGUF base model {}", base_model.string()));
    const int64_t ka = gguf_find_key(base.get(), "general.architecture");
    if (ka < 0 || gguf_get_kv_type(base.get(), ka) != GGUF_TYPE_STRING)
        throw std::runtime_error(fmt::format("{} has no general.architecture", base_model.string()));
    const int64_t kt = gguf_find_key(base.get(), "general.type");
    if (kt >= 0 && gguf_get_kv_type(base.get(), kt) == GGUF_TYPE_STRING && std::string_view(gguf_get_val_str(base.get(), kt)) == "adapter")
        throw std::invalid_argument(fmt::format("{} is an adapter, not a base model", base_model.string()));

    LoraWriteResult res;
    res.path = out;
    res.architecture = gguf_get_val_str(base.get(), ka);
    res.rank = spec.rank;
    res.alpha = spec.alpha > 0.0f ? spec.alpha : float(spec.rank);

    // Adapted weights in base-file order; every target must match at least one.
    struct Pair {
        std::string name;
        int64_t n_in, n_out;
    };
    std::vector<Pair> pairs;
    std::vector<bool> used(spec.targets.size(), false);
    std::vector<std::string> available;
    for (int64_t i = 0; i < gguf_get_n_tensors(base.get()); ++i) {
        const std::string name = gguf_get_tensor_name(base.get(), i);
        const ggml_tensor* t = ggml_get_tensor(base_ctx.get(), name.c_str());
        if (!t || ggml_n_dims(t) != 2 || name.rfind("token_embd", 0) == 0) continue;
        const std::string sn = short_weight_name(name);
        if (std::find(available.begin(), available.end(), sn) == available.end()) available.push_back(sn);
        bool hit = false;
        for (size_t k = 0; k < spec.targets.size(); ++k)
            if (target_matches(name, spec.targets[k])) used[k] = hit = true;
        if (hit) pairs.push_back({name, t->ne[0], t->ne[1]});
    }
    for (size_t k = 0; k < spec.targets.size(); ++k)
        if (!used[k]) {
            std::string list;
            for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
            throw std::invalid_argument(fmt::format("LoRA target '{}' matches no 2-D weight of {} (it has: {})", spec.targets[k],
                                                    base_model.filename().string(), list));
        }
    for (const Pair& p : pairs) res.weights.push_back(p.name);
    // The rank is bounded by the adapted matrices (a rank above min(n_in, n_out) adds nothing but
    // size): checked before any tensor is allocated or written.
    for (const Pair& p : pairs)
        if (int64_t(spec.rank) > std::min(p.n_in, p.n_out))
            throw std::invalid_argument(fmt::format("--rank {} exceeds the {}×{} weight {} (a LoRA rank is at most min(n_in, n_out) = {})",
                                                    spec.rank, p.n_in, p.n_out, p.name, std::min(p.n_in, p.n_out)));

    GgufPtr g(gguf_init_empty());
    gguf_set_val_str(g.get(), "general.type", "adapter");
    gguf_set_val_str(g.get(), "general.architecture", res.architecture.c_str());
    gguf_set_val_str(g.get(), "general.name", fmt::format("phasemap-random-lora-r{}", spec.rank).c_str());
    gguf_set_val_str(g.get(), "adapter.type", "lora");
    gguf_set_val_f32(g.get(), "adapter.lora.alpha", res.alpha);
    gguf_set_val_u64(g.get(), "phasemap.modelgen.seed", spec.seed);
    gguf_set_val_str(g.get(), "phasemap.modelgen.lora_base", base_model.filename().string().c_str());

    struct Desc {
        std::string name;
        int64_t ne0, ne1;
        float std;
    };
    std::vector<Desc> descs;
    for (const Pair& p : pairs) {
        descs.push_back({p.name + ".lora_a", p.n_in, int64_t(spec.rank), 1.0f / std::sqrt(float(p.n_in))});
        descs.push_back({p.name + ".lora_b", int64_t(spec.rank), p.n_out, spec.b_std});
    }
    for (const Desc& d : descs)
        if (d.name.size() >= GGML_MAX_NAME)
            throw std::invalid_argument(fmt::format("tensor name '{}' is too long for GGUF", d.name));
    const bool f16 = spec.type == WeightType::f16;
    ggml_init_params ip{/*mem_size =*/ggml_tensor_overhead() * (descs.size() + 1), /*mem_buffer =*/nullptr, /*no_alloc =*/true};
    GgmlPtr meta(ggml_init(ip));
    if (!meta) throw std::runtime_error("ggml_init failed");
    for (const Desc& d : descs) {
        ggml_tensor* x = ggml_new_tensor_2d(meta.get(), f16 ? GGML_TYPE_F16 : GGML_TYPE_F32, d.ne0, d.ne1);
        ggml_set_name(x, d.name.c_str());
        gguf_add_tensor(g.get(), x);
        res.n_params += uint64_t(ggml_nelements(x));
    }

    std::vector<std::string> names;
    for (const Desc& d : descs) names.push_back(d.name);
    res.file_bytes = write_gguf_file(g.get(), out, names, [&](TempOutput& tmp, size_t i) {
        Gauss gauss(splitmix64(spec.seed ^ fnv1a(descs[i].name)));
        write_gauss(tmp, gauss, descs[i].ne0 * descs[i].ne1, descs[i].std, f16);
    });
    return res;
}

}  // namespace phasemap::modelgen
