// Model loading and tokenizer access.
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "llama_common.hpp"
#include "phasemap/gguf/gguf_checks.hpp"
#include "phasemap/io/run_file.hpp"

namespace phasemap::capture {
namespace {

std::mutex g_log_mu;
std::string g_log_errors;

void log_callback(ggml_log_level level, const char* text, void*) {
    static const bool verbose = [] {
        const char* v = std::getenv("PHASEMAP_LLAMA_LOG");
        return v && *v && std::strcmp(v, "0") != 0;
    }();
    if (verbose) std::fputs(text, stderr);
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::lock_guard<std::mutex> lk(g_log_mu);
        g_log_errors += text;
        if (g_log_errors.size() > 2000) g_log_errors.erase(0, g_log_errors.size() - 2000);
    }
}

std::string meta_str(const llama_model* m, const char* key) {
    std::array<char, 512> buf{};
    const int n = llama_model_meta_val_str(m, key, buf.data(), buf.size());
    return n < 0 ? std::string() : std::string(buf.data());
}

// Architectures whose capture fails the sweep's checks (docs/architectures.md), with the reason.
struct Refusal {
    const char* arch;
    const char* reason;
};
constexpr Refusal kRefused[] = {
    {"deepseek4", "its blocks carry 4 hyper-connection streams and not every block names a single output l_out-N "
                  "(l_out-2 is absent), so hf:i / block:i cannot be read"},
    {"hy_v4", "its blocks carry hyper-connection streams: l_out-N holds one row per stream (4 per token), not one "
              "residual state"},
    {"qwen4exp", "its blocks carry hyper-connection streams and do not name their output l_out-N, so hf:i / block:i "
                 "cannot be read"},
    {"kimi-k3", "the final norm reads an attention-residual mix of the block outputs, not block L-1's output "
                "(norm(block:L-1) differs from hf:L by 1.5 relative), so the block outputs are not the residual stream"},
    {"phimoe", "the final norm of the captured block:L-1 does not reproduce hf:L (7e-2 relative for its LayerNorm), "
               "so the captured block output is not what the output norm reads"},
    {"nemotron_h", "only its MLP blocks name their output l_out-N (Mamba-2 and attention-only blocks do not), so "
                   "hf:i is absent for those blocks"},
    {"nemotron_h_moe", "only its MLP/MoE blocks name their output l_out-N (Mamba-2 and attention-only blocks do not), "
                       "so hf:i is absent for those blocks"},
    {"plamo2", "its Mamba and attention blocks do not name their output l_out-N, so hf:i / block:i cannot be read"},
    {"plamo3", "its graph does not name the final norm result_norm, so hf:L cannot be read"},
};

}  // namespace

const char* architecture_refusal(const std::string& arch) {
    for (const Refusal& r : kRefused)
        if (*r.arch && arch == r.arch) return r.reason;
    return nullptr;
}

void ensure_backend() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(log_callback, nullptr);
        llama_backend_init();
    });
}

std::string take_llama_errors_raw() {
    std::lock_guard<std::mutex> lk(g_log_mu);
    std::string s;
    s.swap(g_log_errors);
    return s;
}

std::string take_llama_errors() {
    std::string s = take_llama_errors_raw();
    // First line only, without llama.cpp's function-name prefixes.
    const size_t nl = s.find('\n');
    if (nl != std::string::npos) s.resize(nl);
    for (const char* prefix : {"error loading model: ", ": "}) {
        const size_t k = s.rfind(prefix);
        if (k != std::string::npos) { s.erase(0, k + std::strlen(prefix)); break; }
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

Model::Impl::~Impl() {
    for (llama_adapter_lora* a : loras) llama_adapter_lora_free(a);
    if (model) llama_model_free(model);
}

Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& path, const ModelOptions& opt) {
    namespace fs = std::filesystem;
    ensure_backend();
    std::error_code ec;
    if (!fs::exists(path, ec)) throw std::runtime_error(fmt::format("model file '{}' does not exist", path.string()));
    if (!fs::is_regular_file(path, ec)) throw std::runtime_error(fmt::format("model path '{}' is not a regular file", path.string()));
    {
        std::ifstream f(path, std::ios::binary);
        char magic[4] = {};
        if (!f) throw std::runtime_error(fmt::format("model file '{}' cannot be read", path.string()));
        f.read(magic, 4);
        if (f.gcount() < 4 || std::memcmp(magic, "GGUF", 4) != 0)
            throw std::runtime_error(fmt::format("'{}' is not a GGUF model file (bad magic)", path.string()));
    }
    {
        // Declared sizes against the file's tensors, before llama.cpp sizes anything from them.
        gguf_init_params gp{true, nullptr};
        gguf_context* g = gguf_init_from_file(path.c_str(), gp);
        if (g) {
            const std::string problem = gguf_size_problem(g);
            gguf_free(g);
            if (!problem.empty()) throw std::runtime_error(fmt::format("model file '{}': {}", path.string(), problem));
        }
    }
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = opt.n_gpu_layers;
    // $PHASEMAP_GPU_LAYERS: the offload of every front end that leaves n_gpu_layers at 0 (the CLI
    // has no flag for it; bench/gpu.sh sets -1, every layer). Ignored by a CPU-only build.
    if (opt.n_gpu_layers == 0)
        if (const auto n = env_whole_number("PHASEMAP_GPU_LAYERS", -1, 100000, "from -1 (every layer) to 100000")) mp.n_gpu_layers = int(*n);
    take_llama_errors();
    llama_model* m = llama_model_load_from_file(path.c_str(), mp);
    if (!m) {
        const std::string why = take_llama_errors();
        throw std::runtime_error(fmt::format("cannot load model '{}': {}", path.string(),
                                             why.empty() ? "llama.cpp rejected the file (truncated, corrupt or unsupported)" : why));
    }
    std::shared_ptr<Model> model(new Model());
    model->impl_ = std::make_unique<Impl>();
    model->impl_->model = m;
    model->impl_->allow_unverified = opt.allow_unverified_architecture;
    if (const char* why = architecture_refusal(meta_str(m, "general.architecture")); why && !opt.allow_unverified_architecture)
        throw std::runtime_error(fmt::format("phasemap refuses architecture '{}' (model '{}'): {} (see docs/architectures.md)",
                                             meta_str(m, "general.architecture"), path.string(), why));
    model->impl_->vocab = llama_model_get_vocab(m);
    ModelInfo& i = model->info_;
    i.path = fs::absolute(path);
    i.sha256 = io::file_sha256(path);
    i.architecture = meta_str(m, "general.architecture");
    i.name = meta_str(m, "general.name");
    std::array<char, 256> desc{};
    llama_model_desc(m, desc.data(), desc.size());
    i.description = desc.data();
    i.n_layer = llama_model_n_layer(m);
    i.n_embd = llama_model_n_embd(m);
    i.n_vocab = llama_vocab_n_tokens(model->impl_->vocab);
    i.n_ctx_train = llama_model_n_ctx_train(m);
    i.recurrent = llama_model_is_recurrent(m) || llama_model_is_hybrid(m);
    i.has_chat_template = llama_model_chat_template(m, nullptr) != nullptr;
    i.n_params = int64_t(llama_model_n_params(m));
    i.n_expert = std::atoi(meta_str(m, (i.architecture + ".expert_count").c_str()).c_str());
    if (!opt.adapters.empty())
        i.adapters = load_lora_adapters(*model->impl_, i.architecture, path.filename().string(), opt.adapters);
    return model;
}

std::vector<int32_t> Model::tokenize(const std::string& text, bool add_special, bool parse_special) const {
    const int32_t cap = int32_t(text.size()) + 16;
    std::vector<llama_token> ids(static_cast<size_t>(cap));
    int32_t n = llama_tokenize(impl_->vocab, text.data(), int32_t(text.size()), ids.data(), cap, add_special, parse_special);
    if (n < 0) {
        ids.resize(size_t(-n));
        n = llama_tokenize(impl_->vocab, text.data(), int32_t(text.size()), ids.data(), -n, add_special, parse_special);
    }
    if (n < 0) throw std::runtime_error("tokenization failed");
    ids.resize(size_t(n));
    return {ids.begin(), ids.end()};
}

std::string Model::token_text(int32_t id) const {
    char buf[256];
    int n = llama_token_to_piece(impl_->vocab, id, buf, sizeof buf, 0, /*special*/ false);
    if (n < 0) {
        std::string s(size_t(-n), '\0');
        n = llama_token_to_piece(impl_->vocab, id, s.data(), -n, 0, false);
        s.resize(size_t(std::max(n, 0)));
        return s;
    }
    return std::string(buf, size_t(n));
}

std::string Model::detokenize(std::span<const int32_t> ids) const {
    std::string s;
    for (int32_t id : ids) s += token_text(id);
    return s;
}

bool Model::is_eog(int32_t id) const { return llama_vocab_is_eog(impl_->vocab, id); }

std::string Model::apply_chat_template(const std::string& user_message) const {
    const ChatMessage msg{"user", user_message};
    return apply_chat_template(std::span<const ChatMessage>(&msg, 1));
}

std::string Model::apply_chat_template(std::span<const ChatMessage> messages) const {
    const char* tmpl = llama_model_chat_template(impl_->model, nullptr);
    if (!tmpl) throw std::runtime_error(fmt::format("model '{}' has no chat template (tokenizer.chat_template); run without --chat",
                                                    info_.path.filename().string()));
    std::vector<llama_chat_message> msgs;
    size_t chars = 0;
    for (const auto& m : messages) {
        msgs.push_back({m.role.c_str(), m.content.c_str()});
        chars += m.role.size() + m.content.size();
    }
    std::vector<char> buf(chars * 2 + 1024);
    int32_t n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(), int32_t(buf.size()));
    if (n > int32_t(buf.size())) {
        buf.resize(size_t(n));
        n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(), int32_t(buf.size()));
    }
    if (n < 0) throw std::runtime_error("the model's chat template is not one llama.cpp supports without a Jinja engine");
    return std::string(buf.data(), size_t(n));
}

const char* precision_name(Precision p) { return p == Precision::exact ? "exact" : "fast"; }

Precision parse_precision(const std::string& s) {
    if (s == "exact") return Precision::exact;
    if (s == "fast") return Precision::fast;
    throw std::invalid_argument(fmt::format("unknown precision '{}' (use exact or fast)", s));
}

}  // namespace phasemap::capture
