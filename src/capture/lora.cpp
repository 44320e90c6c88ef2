// LoRA adapters: checked with ggml's GGUF reader first (so the common mistakes get a message
// of their own), then loaded through llama.cpp's adapter API onto the model.
#include <fmt/core.h>
#include <gguf.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string_view>

#include "llama_common.hpp"
#include "phasemap/io/run_file.hpp"

namespace phasemap::capture {
namespace {

struct GgufFree {
    void operator()(gguf_context* c) const { gguf_free(c); }
};

std::string kv_string(const gguf_context* g, const char* key) {
    const int64_t k = gguf_find_key(g, key);
    if (k < 0 || gguf_get_kv_type(g, k) != GGUF_TYPE_STRING) return {};
    return gguf_get_val_str(g, k);
}

// Everything that can be said about the file without the model's tensors. Returns the adapted
// weight count (lora_a tensors); throws with the reason (the caller adds the file name).
int precheck(const std::filesystem::path& path, const std::string& model_arch) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) throw std::runtime_error("the file does not exist");
    if (!fs::is_regular_file(path, ec)) throw std::runtime_error("not a regular file");
    {
        std::ifstream f(path, std::ios::binary);
        char magic[4] = {};
        if (!f) throw std::runtime_error("the file cannot be read");
        f.read(magic, 4);
        if (f.gcount() < 4 || std::memcmp(magic, "GGUF", 4) != 0) throw std::runtime_error("not a GGUF file (bad magic)");
    }
    gguf_init_params p{/*no_alloc =*/true, /*ctx =*/nullptr};
    std::unique_ptr<gguf_context, GgufFree> g(gguf_init_from_file(path.c_str(), p));
    if (!g) throw std::runtime_error("not a readable GGUF file (truncated or corrupt)");
    const std::string type = kv_string(g.get(), "general.type");
    if (type != "adapter")
        throw std::runtime_error(type.empty() ? "not an adapter GGUF (no general.type = \"adapter\"; is it a model file?)"
                                              : fmt::format("not an adapter GGUF (general.type is \"{}\")", type));
    const std::string atype = kv_string(g.get(), "adapter.type");
    if (atype != "lora")
        throw std::runtime_error(fmt::format("not a LoRA adapter (adapter.type is \"{}\")", atype));
    const std::string arch = kv_string(g.get(), "general.architecture");
    if (arch != model_arch)
        throw std::runtime_error(fmt::format("the adapter is for architecture \"{}\", the model is \"{}\"", arch, model_arch));
    int n = 0;
    for (int64_t i = 0; i < gguf_get_n_tensors(g.get()); ++i)
        if (std::string_view(gguf_get_tensor_name(g.get(), i)).ends_with(".lora_a")) ++n;
    if (n == 0) throw std::runtime_error("the adapter holds no .lora_a/.lora_b tensors");
    return n;
}

// llama.cpp logs "<func>: failed to apply lora adapter: <reason>"; keep the reason.
std::string llama_reason(std::string log) {
    for (const char* marker : {"failed to apply lora adapter: ", "failed to open "}) {
        const size_t k = log.find(marker);
        if (k != std::string::npos) {
            log.erase(0, k + (std::strcmp(marker, "failed to open ") == 0 ? 0 : std::strlen(marker)));
            break;
        }
    }
    if (const size_t nl = log.find('\n'); nl != std::string::npos) log.resize(nl);
    while (!log.empty() && (log.back() == ' ' || log.back() == '\r')) log.pop_back();
    return log.empty() ? "llama.cpp rejected the adapter" : log;
}

}  // namespace

std::vector<AdapterInfo> load_lora_adapters(ModelAccess::Impl& impl, const std::string& arch, const std::string& model_file,
                                            const std::vector<LoraAdapter>& adapters) {
    std::vector<AdapterInfo> out;
    for (const LoraAdapter& a : adapters) {
        const std::string name = a.path.string();
        auto fail = [&](const std::string& why) {
            return std::runtime_error(fmt::format("LoRA adapter '{}' cannot be applied to model '{}': {}", name, model_file, why));
        };
        if (!std::isfinite(a.scale)) throw fail("the scale is not a finite number");
        AdapterInfo info;
        try {
            info.n_weights = precheck(a.path, arch);
        } catch (const std::runtime_error& e) {
            throw fail(e.what());
        }
        take_llama_errors();
        llama_adapter_lora* lora = llama_adapter_lora_init(impl.model, a.path.c_str());
        if (!lora) throw fail(llama_reason(take_llama_errors_raw()));
        impl.loras.push_back(lora);
        impl.lora_scales.push_back(a.scale);
        info.path = std::filesystem::absolute(a.path);
        info.sha256 = io::file_sha256(a.path);
        info.scale = a.scale;
        char buf[64] = {};
        if (llama_adapter_meta_val_str(lora, "adapter.lora.alpha", buf, sizeof buf) >= 0) info.alpha = std::strtof(buf, nullptr);
        out.push_back(std::move(info));
    }
    return out;
}

}  // namespace phasemap::capture
