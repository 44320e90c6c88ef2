// `phasemap make-model`: writes a random-weight GGUF model of a supported architecture
// (tests and benchmarks; see include/phasemap/modelgen/modelgen.hpp), or with --lora-for a random-weight
// LoRA adapter for an existing GGUF model.
#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/capture/version.hpp"
#include "cli_util.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace {

namespace mg = phasemap::modelgen;
using phasemap::cli::check_output;
using phasemap::cli::in;
using phasemap::cli::kPath;
namespace opt = phasemap::opt;
using phasemap::cli::UserError;

struct Options {
    std::string arch, size = "tiny", type, out, vocab_dir, vocab;
    uint64_t seed = 0;
    bool list = false;
    uint32_t experts = 0, experts_used = 0, n_embd = 0, n_layer = 0, n_ff = 0;  // 0 = the preset's
    // --lora-for: a LoRA adapter for this base model instead of a model
    std::string lora_for, targets = "attn_q,attn_v";
    uint32_t rank = 8;
    float alpha = 0.0f, b_std = 0.02f;
};

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at <= s.size()) {
        const size_t c = std::min(s.find(',', at), s.size());
        std::string item = s.substr(at, c - at);
        while (!item.empty() && item.front() == ' ') item.erase(0, 1);
        while (!item.empty() && item.back() == ' ') item.pop_back();
        if (!item.empty()) out.push_back(item);
        at = c + 1;
    }
    return out;
}

int run_lora(const Options& o) {
    if (!o.arch.empty() || o.size != "tiny" || !o.vocab.empty() || !o.vocab_dir.empty())
        throw UserError("--lora-for writes an adapter for an existing model: --arch, --size, --vocab and --vocab-dir do not apply");
    mg::LoraSpec spec;
    spec.targets = split_commas(o.targets);
    spec.rank = o.rank;
    spec.alpha = o.alpha;
    spec.b_std = o.b_std;
    spec.seed = o.seed;
    mg::LoraWriteResult r;
    try {
        if (!o.type.empty()) spec.type = mg::parse_weight_type(o.type);
        r = mg::write_random_lora(o.lora_for, spec, o.out);
    } catch (const std::invalid_argument& e) {
        throw UserError(e.what());
    } catch (const std::runtime_error& e) {
        throw UserError(e.what());
    }
    fmt::print("wrote {}: LoRA adapter for {} ({}), rank {}, alpha {}, {} weights adapted, {} params, {} weights, seed {}\n",
               r.path.string(), o.lora_for, r.architecture, r.rank, r.alpha, r.weights.size(), r.n_params,
               mg::weight_type_name(spec.type), spec.seed);
    return 0;
}

void print_list() {
    fmt::print("{:<8}  {:<5}  {:<10}  {}\n", "arch", "size", "vocab", "shape");
    for (const std::string& arch : mg::supported_archs()) {
        for (const std::string& size : mg::supported_sizes(arch)) {
            const mg::ModelSpec s = mg::preset(arch, size);
            fmt::print("{:<8}  {:<5}  {:<10}  d={} blocks={} heads={}/{} ff={} ctx={} {}{}\n", arch, size, s.vocab,
                       s.n_embd, s.n_layer, s.n_head, s.n_head_kv, s.n_ff, s.n_ctx, mg::weight_type_name(s.type),
                       s.tied_embeddings ? " tied" : "");
        }
    }
}

int run(const Options& o) {
    if (o.list) {
        print_list();
        return 0;
    }
    if (o.out.empty()) throw UserError("-o/--output is required");
    check_output(o.out, {o.lora_for}, "-o");
    if (!o.lora_for.empty()) return run_lora(o);
    if (o.arch.empty()) throw UserError("--arch (a model) or --lora-for BASE.gguf (an adapter) is required (see --list)");

    mg::ModelSpec spec;
    try {
        spec = mg::preset(o.arch, o.size);
        if (!o.type.empty()) spec.type = mg::parse_weight_type(o.type);
    } catch (const std::invalid_argument& e) {
        throw UserError(e.what());
    }
    spec.seed = o.seed;
    if (!o.vocab.empty()) spec.vocab = o.vocab;
    if (o.n_embd) spec.n_embd = o.n_embd;
    if (o.n_layer) spec.n_layer = o.n_layer;
    if (o.n_ff) spec.n_ff = o.n_ff;
    spec.n_expert = o.experts;
    spec.n_expert_used = o.experts_used;
    if (o.experts && !o.experts_used) spec.n_expert_used = std::min<uint32_t>(2, o.experts);
    if (o.experts_used && !o.experts) throw UserError("--experts-used needs --experts (the number of experts per block)");
    try {
        mg::validate(spec);
    } catch (const std::invalid_argument& e) {
        throw UserError(e.what());
    }

    mg::fs::path vocab_dir = o.vocab_dir;
    if (vocab_dir.empty()) vocab_dir = mg::default_vocab_dir(phasemap::llama_commit());
    if (vocab_dir.empty())
        throw UserError(
            "no llama.cpp vocab directory found: pass --vocab-dir (llama.cpp's models/ folder) or set "
            "PHASEMAP_VOCAB_DIR");

    const auto t0 = std::chrono::steady_clock::now();
    mg::WriteResult r;
    try {
        r = mg::write_random_model(spec, vocab_dir, o.out);
    } catch (const std::invalid_argument& e) {
        throw UserError(e.what());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("wrote {}: {} {} ({} blocks, d={}{}, vocab {} from {}), {:.1f}M params, {} tensors, {:.1f} MB, "
               "{} weights, seed {}, {:.2f} s\n",
               r.path.string(), spec.arch, spec.size, spec.n_layer, spec.n_embd,
               spec.n_expert ? fmt::format(", {} experts, k={}", spec.n_expert, spec.n_expert_used) : std::string(), r.n_vocab,
               r.vocab_file.filename().string(), double(r.n_params) / 1e6, r.n_tensors, double(r.file_bytes) / 1e6,
               mg::weight_type_name(spec.type), spec.seed, secs);
    return 0;
}

std::function<int()> setup(CLI::App& app) {
    auto o = std::make_shared<Options>();
    app.add_flag("--list", o->list, "print the supported architectures and preset sizes, then exit");
    app.add_option("--arch", o->arch, "architecture: gemma2, gpt2, gptneox, llama, phi2, phi3, qwen2");
    app.add_option("--size", o->size, "preset size: tiny (tests) or real (benchmarks; llama, qwen2, gpt2)")
        ->capture_default_str();
    app.add_option("--seed", o->seed, "random seed (same seed -> byte-identical file)")->capture_default_str();
    app.add_option("--type", o->type, "weight type of the matrices: f32 or f16 (default: f32 tiny, f16 real)");
    app.add_option("-o,--output", o->out, "output .gguf path (written atomically)")->check(kPath);
    app.add_option("--vocab-dir", o->vocab_dir,
                   "directory holding llama.cpp's ggml-vocab-*.gguf files (default: $PHASEMAP_VOCAB_DIR, "
                   "$PHASEMAP_LLAMA_SRC/models, then the scripts/deps.sh cache of the pinned llama.cpp)");
    app.add_option("--experts", o->experts, "llama: a Mixtral-style MoE with this many experts per block (default: dense)")
        ->check(in(opt::kExperts));
    app.add_option("--experts-used", o->experts_used, "with --experts: experts selected per token, k (default 2)")
        ->check(in(opt::kExpertsUsed));
    app.add_option("--n-embd", o->n_embd, "hidden size d overriding the preset (a multiple of the preset's heads)")
        ->check(in(opt::kModelDim));
    app.add_option("--n-layer", o->n_layer, "blocks overriding the preset")->check(in(opt::kModelBlocks));
    app.add_option("--n-ff", o->n_ff, "feed-forward width (per expert with --experts) overriding the preset")
        ->check(in(opt::kModelDim));
    app.add_option("--vocab", o->vocab, "vocab file stem overriding the arch default, e.g. llama-spm");
    app.add_option("--lora-for", o->lora_for,
                   "write a random-weight LoRA adapter GGUF for this base model instead of a model "
                   "(use with generate --lora or a manifest's adapters)")->check(kPath);
    app.add_option("--targets", o->targets,
                   "--lora-for: comma-separated weights to adapt: a short name for every block (attn_q, ffn_up, ...), "
                   "output (the LM head) or a full tensor name")
        ->capture_default_str();
    app.add_option("--rank", o->rank, "--lora-for: LoRA rank r")->capture_default_str()->check(CLI::PositiveNumber)->check(in({1, 1 << 20, false, true}));
    app.add_option("--alpha", o->alpha, "--lora-for: adapter.lora.alpha (0 = rank); the update is scale * alpha / r * B A x")
        ->capture_default_str()->check(in({0, 1e6}));
    app.add_option("--b-std", o->b_std, "--lora-for: standard deviation of the B entries (A has 1/sqrt(n_in))")
        ->capture_default_str()->check(in({0, 1e6}));
    return [o] { return run(*o); };
}

phasemap::cli::Verb reg{"make-model", "write a random-weight GGUF model (tests, benchmarks)", setup};

}  // namespace
