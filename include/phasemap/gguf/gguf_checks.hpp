// Sizes a GGUF header declares, checked against the file itself before anything is allocated
// from them (docs/hardening.md, class 3). Used by Model::load (before llama.cpp, whose asserts
// would abort) and by `panel plan` (which sizes its estimates from the header).
//
// Owns: nothing; header-only checks on a gguf_context the caller owns (read during the call only). Throws:
// nothing; a problem is returned as text (empty: none).
#pragma once
#include <gguf.h>

#include <cstdint>
#include <string>

namespace phasemap {

// "" when block_count and embedding_length are consistent with the tensors the file holds;
// otherwise the problem in words. A model's blocks each hold tensors named blk.<i>.*: the last
// declared block must have one, and there cannot be more blocks than tensors.
inline std::string gguf_size_problem(const gguf_context* g) {
    const int64_t ak = gguf_find_key(g, "general.architecture");
    if (ak < 0 || gguf_get_kv_type(g, ak) != GGUF_TYPE_STRING) return {};  // llama.cpp reports this itself
    const std::string arch = gguf_get_val_str(g, ak);
    auto get = [&](const std::string& key, int64_t& out) {
        const int64_t k = gguf_find_key(g, key.c_str());
        if (k < 0) return false;
        switch (gguf_get_kv_type(g, k)) {
            case GGUF_TYPE_UINT32: out = gguf_get_val_u32(g, k); return true;
            case GGUF_TYPE_INT32: out = gguf_get_val_i32(g, k); return true;
            case GGUF_TYPE_UINT64: out = int64_t(gguf_get_val_u64(g, k) > uint64_t(INT64_MAX) ? INT64_MAX : gguf_get_val_u64(g, k)); return true;
            case GGUF_TYPE_INT64: out = gguf_get_val_i64(g, k); return true;
            default: return false;
        }
    };
    const int64_t n_tensors = gguf_get_n_tensors(g);
    int64_t blocks = 0;
    if (get(arch + ".block_count", blocks)) {
        if (blocks < 1) return arch + ".block_count is " + std::to_string(blocks) + ", expected at least 1";
        if (blocks > n_tensors)
            return arch + ".block_count declares " + std::to_string(blocks) + " blocks, but the file holds only " +
                   std::to_string(n_tensors) + " tensors";
        const std::string last = "blk." + std::to_string(blocks - 1) + ".";
        bool found = false;
        for (int64_t i = 0; i < n_tensors && !found; ++i) found = std::string(gguf_get_tensor_name(g, i)).rfind(last, 0) == 0;
        if (!found)
            return arch + ".block_count declares " + std::to_string(blocks) + " blocks, but the file has no tensor of block " +
                   std::to_string(blocks - 1);
    }
    int64_t embd = 0;
    if (get(arch + ".embedding_length", embd) && (embd < 1 || embd > (int64_t(1) << 20)))
        return arch + ".embedding_length is " + std::to_string(embd) + ", outside 1 … 1048576";
    return {};
}

}  // namespace phasemap
