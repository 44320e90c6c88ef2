// The one GGUF-metadata reader (include/phasemap/gguf/metadata.hpp), on ggml's gguf API.
#include "phasemap/gguf/metadata.hpp"

#include <fmt/core.h>
#include <gguf.h>

#include <memory>
#include <stdexcept>

#include "phasemap/gguf/gguf_checks.hpp"

namespace phasemap::gguf {
namespace {

int64_t int_value(const gguf_context* ctx, const std::string& key) {
    const int64_t k = gguf_find_key(ctx, key.c_str());
    if (k < 0) return 0;
    switch (gguf_get_kv_type(ctx, k)) {
        case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx, k);
        case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx, k);
        case GGUF_TYPE_UINT64: return gguf_get_val_u64(ctx, k) > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(gguf_get_val_u64(ctx, k));
        case GGUF_TYPE_INT64: return gguf_get_val_i64(ctx, k);
        default: return 0;
    }
}

std::string str_value(const gguf_context* ctx, const char* key) {
    const int64_t k = gguf_find_key(ctx, key);
    return k >= 0 && gguf_get_kv_type(ctx, k) == GGUF_TYPE_STRING ? gguf_get_val_str(ctx, k) : "";
}

}  // namespace

Metadata read_metadata(const std::filesystem::path& path) {
    gguf_init_params gp{true, nullptr};
    std::unique_ptr<gguf_context, decltype(&gguf_free)> ctx(gguf_init_from_file(path.c_str(), gp), &gguf_free);
    if (!ctx) throw std::runtime_error(fmt::format("'{}' is not a readable GGUF file", path.string()));
    if (const std::string problem = gguf_size_problem(ctx.get()); !problem.empty())
        throw std::runtime_error(fmt::format("'{}': {}", path.string(), problem));
    Metadata m;
    m.architecture = str_value(ctx.get(), "general.architecture");
    m.name = str_value(ctx.get(), "general.name");
    m.type = str_value(ctx.get(), "general.type");
    m.n_layer = int_value(ctx.get(), m.architecture + ".block_count");
    m.n_embd = int_value(ctx.get(), m.architecture + ".embedding_length");
    m.n_ctx_train = int_value(ctx.get(), m.architecture + ".context_length");
    const int64_t n = gguf_get_n_tensors(ctx.get());
    m.tensors.reserve(size_t(n));
    for (int64_t i = 0; i < n; ++i) m.tensors.emplace_back(gguf_get_tensor_name(ctx.get(), i));
    return m;
}

}  // namespace phasemap::gguf
