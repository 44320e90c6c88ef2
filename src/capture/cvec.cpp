// Control-vector GGUF files through ggml's gguf API (include/phasemap/capture/control_vector.hpp).
#include <fmt/core.h>

#include "phasemap/io/files.hpp"
#include <ggml.h>
#include <gguf.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "phasemap/capture/control_vector.hpp"

namespace phasemap::capture {

namespace fs = std::filesystem;

std::vector<float> ControlVector::flat(float scale) const {
    int max_n = 0;
    for (const auto& [n, v] : directions) max_n = std::max(max_n, n);
    std::vector<float> out(size_t(n_embd) * size_t(max_n), 0.0f);
    for (const auto& [n, v] : directions)
        for (int j = 0; j < n_embd; ++j) out[size_t(n - 1) * size_t(n_embd) + size_t(j)] = v[size_t(j)] * scale;
    return out;
}

ControlVector read_control_vector(const fs::path& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw std::runtime_error(fmt::format("control vector '{}' does not exist", path.string()));
    // Metadata only (no_alloc): ggml would otherwise allocate the data section the header claims
    // before reading it, so a few bytes declaring a huge tensor abort in ggml_init. The direction
    // values are read below, after their size has been checked against the file.
    ggml_context* meta = nullptr;
    gguf_init_params gp{/*no_alloc*/ true, &meta};
    gguf_context* g = gguf_init_from_file(path.c_str(), gp);
    if (!g) throw std::runtime_error(fmt::format("control vector '{}' is not a readable GGUF file", path.string()));
    std::unique_ptr<gguf_context, void (*)(gguf_context*)> gguard(g, gguf_free);
    std::unique_ptr<ggml_context, void (*)(ggml_context*)> mguard(meta, ggml_free);
    auto str = [&](const char* key) -> std::string {
        const int64_t k = gguf_find_key(g, key);
        return k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING ? gguf_get_val_str(g, k) : "";
    };
    auto u32 = [&](const char* key) -> int {
        const int64_t k = gguf_find_key(g, key);
        if (k < 0) return 0;
        switch (gguf_get_kv_type(g, k)) {
            case GGUF_TYPE_UINT32: return int(gguf_get_val_u32(g, k));
            case GGUF_TYPE_INT32: return gguf_get_val_i32(g, k);
            default: return 0;
        }
    };
    ControlVector cv;
    cv.model_hint = str("controlvector.model_hint");
    cv.model_sha256 = str("phasemap.model_sha256");
    cv.method = str("phasemap.method");
    cv.model_n_layer = u32("phasemap.n_layer");
    const int64_t nt = gguf_get_n_tensors(g);
    const std::string who = fmt::format("control vector '{}'", path.string());
    if (nt == 0) throw std::runtime_error(who + " holds no direction tensor");
    const uint64_t file_size = fs::file_size(path, ec);
    if (ec) throw std::runtime_error(fmt::format("{}: cannot read its size: {}", who, ec.message()));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(who + " cannot be opened");
    const uint64_t data_offset = gguf_get_data_offset(g);
    for (int64_t i = 0; i < nt; ++i) {
        const std::string name = gguf_get_tensor_name(g, i);
        int n = -1;
        if (name.rfind("direction.", 0) == 0) {
            try {
                size_t used = 0;
                n = std::stoi(name.substr(10), &used);
                if (used != name.size() - 10) n = -1;
            } catch (...) { n = -1; }
        }
        if (n < 0) throw std::runtime_error(fmt::format("{}: tensor '{}' is not named direction.N", who, name));
        if (n == 0) throw std::runtime_error(fmt::format("{}: direction.0 is invalid (llama.cpp never applies a vector to layer 0)", who));
        const ggml_tensor* t = ggml_get_tensor(meta, name.c_str());
        if (!t || t->type != GGML_TYPE_F32 || ggml_n_dims(t) != 1)
            throw std::runtime_error(fmt::format("{}: tensor '{}' must be a 1-d F32 tensor", who, name));
        const int64_t ne64 = ggml_nelements(t);
        if (ne64 <= 0) throw std::runtime_error(fmt::format("{}: tensor '{}' holds no values", who, name));
        const uint64_t offset = data_offset + gguf_get_tensor_offset(g, i);
        const uint64_t bytes = uint64_t(ne64) * sizeof(float);
        if (offset > file_size || uint64_t(ne64) > (file_size - offset) / sizeof(float))
            throw std::runtime_error(fmt::format("{}: tensor '{}' ({} values) extends past the end of the file", who, name, ne64));
        if (ne64 > INT32_MAX) throw std::runtime_error(fmt::format("{}: tensor '{}' has {} values, too many", who, name, ne64));
        const int ne = int(ne64);
        if (cv.n_embd == 0) cv.n_embd = ne;
        else if (ne != cv.n_embd)
            throw std::runtime_error(fmt::format("{}: '{}' has {} values, earlier directions {}", who, name, ne, cv.n_embd));
        std::vector<float> src(size_t(ne), 0.0f);
        in.seekg(std::streamoff(offset));
        in.read(reinterpret_cast<char*>(src.data()), std::streamsize(bytes));
        if (!in) throw std::runtime_error(fmt::format("{}: cannot read tensor '{}'", who, name));
        auto& dst = cv.directions[n];
        if (dst.empty()) dst.assign(size_t(ne), 0.0f);
        for (int j = 0; j < ne; ++j) dst[size_t(j)] += src[size_t(j)];  // several directions for one layer add up (as llama.cpp)
    }
    const int declared = u32("phasemap.n_embd");
    if (declared && declared != cv.n_embd)
        throw std::runtime_error(fmt::format("{}: phasemap.n_embd {} but directions have {} values", who, declared, cv.n_embd));
    return cv;
}

void write_control_vector(const ControlVector& cv, const fs::path& path) {
    if (cv.directions.empty()) throw std::invalid_argument("control vector has no direction");
    if (cv.n_embd <= 0) throw std::invalid_argument("control vector has no dimension");
    gguf_context* g = gguf_init_empty();
    std::unique_ptr<gguf_context, void (*)(gguf_context*)> gguard(g, gguf_free);
    gguf_set_val_str(g, "general.architecture", "controlvector");
    gguf_set_val_str(g, "controlvector.model_hint", cv.model_hint.c_str());
    gguf_set_val_i32(g, "controlvector.layer_count", int32_t(cv.directions.size()));
    gguf_set_val_u32(g, "phasemap.n_embd", uint32_t(cv.n_embd));
    if (cv.model_n_layer) gguf_set_val_u32(g, "phasemap.n_layer", uint32_t(cv.model_n_layer));
    if (!cv.model_sha256.empty()) gguf_set_val_str(g, "phasemap.model_sha256", cv.model_sha256.c_str());
    if (!cv.method.empty()) gguf_set_val_str(g, "phasemap.method", cv.method.c_str());
    std::vector<int32_t> layers;
    for (const auto& [n, v] : cv.directions) layers.push_back(n);
    gguf_set_arr_data(g, "phasemap.layers", GGUF_TYPE_INT32, layers.data(), layers.size());

    ggml_init_params ip{ggml_tensor_overhead() * (cv.directions.size() + 1) + size_t(cv.n_embd) * 4 * cv.directions.size() + 1024,
                        nullptr, false};
    ggml_context* ctx = ggml_init(ip);
    std::unique_ptr<ggml_context, void (*)(ggml_context*)> cguard(ctx, ggml_free);
    std::vector<ggml_tensor*> tensors;
    for (const auto& [n, v] : cv.directions) {
        if (n < 1) throw std::invalid_argument(fmt::format("control vector direction for block {}: llama.cpp accepts blocks ≥ 1", n));
        if (int(v.size()) != cv.n_embd) throw std::invalid_argument(fmt::format("direction.{} has {} values, expected {}", n, v.size(), cv.n_embd));
        ggml_tensor* t = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, cv.n_embd);
        ggml_set_name(t, fmt::format("direction.{}", n).c_str());
        std::memcpy(t->data, v.data(), v.size() * sizeof(float));
        gguf_add_tensor(g, t);
        tensors.push_back(t);
    }
    // Metadata, then each tensor's data padded to the alignment, through the atomic writer (every
    // write checked: gguf_write_to_file does not report a full disk).
    io::AtomicFile out(path);
    std::vector<char> meta(gguf_get_meta_size(g));
    gguf_get_meta_data(g, meta.data());
    out.write(meta.data(), meta.size());
    const size_t align = gguf_get_alignment(g);
    const std::vector<char> zeros(align, 0);
    for (ggml_tensor* t : tensors) {
        const size_t nb = ggml_nbytes(t);
        out.write(t->data, nb);
        if (const size_t pad = (align - nb % align) % align) out.write(zeros.data(), pad);
    }
    out.commit();
}

void check_control_vector(const ControlVector& cv, const std::string& arch, int n_layer, int n_embd) {
    if (!cv.model_hint.empty() && cv.model_hint != arch)
        throw std::invalid_argument(fmt::format("control vector was built for a '{}' model, this model is '{}'", cv.model_hint, arch));
    if (cv.n_embd != n_embd)
        throw std::invalid_argument(fmt::format("control vector has {} values per direction, the model's n_embd is {} (built for another model)",
                                                cv.n_embd, n_embd));
    if (cv.model_n_layer && cv.model_n_layer != n_layer)
        throw std::invalid_argument(fmt::format("control vector was built for a model with {} blocks, this one has {}", cv.model_n_layer, n_layer));
    for (const auto& [n, v] : cv.directions) {
        if (n < 1 || n >= n_layer)
            throw std::invalid_argument(fmt::format("control vector direction.{} is out of range: llama.cpp applies directions to blocks 1..{}",
                                                    n, n_layer - 1));
        if (v.size() != size_t(cv.n_embd))  // flat() relies on it
            throw std::invalid_argument(fmt::format("control vector direction.{} has {} values, expected {}", n, v.size(), cv.n_embd));
        for (float x : v)
            if (!std::isfinite(x)) throw std::invalid_argument(fmt::format("control vector direction.{} holds a non-finite value", n));
    }
}

}  // namespace phasemap::capture
