#include "support/gguf_weights.hpp"

#include <ggml.h>
#include <gguf.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>

namespace pmtest {

namespace {

std::string where(const std::filesystem::path& p) { return " in " + p.string(); }

bool is_integer(gguf_type t) {
    switch (t) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16:
        case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64:
            return true;
        default:
            return false;
    }
}

bool is_numeric(gguf_type t) {
    return is_integer(t) || t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64 || t == GGUF_TYPE_BOOL;
}

// Reads element i of a value of numeric type t stored at p, as a long double-free pair: the
// integer getters want exact int64 (u64 beyond int64 range is reported as overflow by the caller).
template <typename T>
T load(const void* p, size_t i) {
    T v;
    std::memcpy(&v, static_cast<const char*>(p) + i * sizeof(T), sizeof(T));
    return v;
}

// Integer value of element i; sets `overflow` when a u64 does not fit into int64.
int64_t int_at(gguf_type t, const void* p, size_t i, bool& overflow) {
    overflow = false;
    switch (t) {
        case GGUF_TYPE_UINT8: return load<uint8_t>(p, i);
        case GGUF_TYPE_INT8: return load<int8_t>(p, i);
        case GGUF_TYPE_UINT16: return load<uint16_t>(p, i);
        case GGUF_TYPE_INT16: return load<int16_t>(p, i);
        case GGUF_TYPE_UINT32: return load<uint32_t>(p, i);
        case GGUF_TYPE_INT32: return load<int32_t>(p, i);
        case GGUF_TYPE_INT64: return load<int64_t>(p, i);
        case GGUF_TYPE_UINT64: {
            uint64_t v = load<uint64_t>(p, i);
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
            return static_cast<int64_t>(v);
        }
        case GGUF_TYPE_BOOL: return load<int8_t>(p, i) != 0;
        default: throw std::logic_error("int_at: not an integer type");
    }
}

double float_at(gguf_type t, const void* p, size_t i) {
    if (t == GGUF_TYPE_FLOAT32) return load<float>(p, i);
    if (t == GGUF_TYPE_FLOAT64) return load<double>(p, i);
    bool overflow = false;
    if (t == GGUF_TYPE_UINT64) return static_cast<double>(load<uint64_t>(p, i));
    return static_cast<double>(int_at(t, p, i, overflow));
}

}  // namespace

GgufWeights::GgufWeights(const std::filesystem::path& path) : path_(path) {
    if (!std::filesystem::exists(path)) throw std::runtime_error("GGUF file not found: " + path.string());
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    ctx_ = gguf_init_from_file(path.c_str(), params);
    if (!ctx_) throw std::runtime_error("not a readable GGUF file: " + path.string());

    const uint64_t data_offset = gguf_get_data_offset(ctx_);
    const uint64_t file_size = std::filesystem::file_size(path);
    const int64_t n = gguf_get_n_tensors(ctx_);
    tensors_.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        GgufTensorInfo t;
        t.name = gguf_get_tensor_name(ctx_, i);
        const auto type = gguf_get_tensor_type(ctx_, i);
        t.type = static_cast<int>(type);
        t.type_name = ggml_type_name(type);
        const int64_t* ne = gguf_get_tensor_ne(ctx_, i);
        t.n_dims = 1;
        for (int d = 0; d < 4; ++d) {
            t.ne[d] = ne[d];
            if (ne[d] > 1) t.n_dims = d + 1;
        }
        t.file_offset = data_offset + gguf_get_tensor_offset(ctx_, i);
        t.n_bytes = gguf_get_tensor_size(ctx_, i);
        if (t.file_offset + t.n_bytes > file_size) {
            gguf_free(ctx_);
            throw std::runtime_error("tensor '" + t.name + "' extends past the end of the file (truncated?)" + where(path));
        }
        tensors_.push_back(std::move(t));
    }
}

GgufWeights::~GgufWeights() {
    if (ctx_) gguf_free(ctx_);
}

std::vector<std::string> GgufWeights::tensor_names() const {
    std::vector<std::string> names;
    names.reserve(tensors_.size());
    for (const auto& t : tensors_) names.push_back(t.name);
    return names;
}

bool GgufWeights::has_tensor(const std::string& name) const {
    return gguf_find_tensor(ctx_, name.c_str()) >= 0;
}

const GgufTensorInfo& GgufWeights::tensor_info(const std::string& name) const {
    const int64_t id = gguf_find_tensor(ctx_, name.c_str());
    if (id < 0) throw std::out_of_range("tensor '" + name + "' not found" + where(path_));
    return tensors_[static_cast<size_t>(id)];
}

GgufTensor GgufWeights::tensor(const std::string& name) const {
    const GgufTensorInfo& info = tensor_info(name);
    const auto type = static_cast<ggml_type>(info.type);
    std::vector<char> raw(info.n_bytes);
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(info.file_offset));
    in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
    if (!in || static_cast<uint64_t>(in.gcount()) != info.n_bytes)
        throw std::runtime_error("short read of tensor '" + name + "'" + where(path_));

    GgufTensor out;
    out.name = name;
    out.ne = info.ne;
    const size_t n = static_cast<size_t>(info.n_elements());
    out.data.resize(n);
    if (type == GGML_TYPE_F32) {
        for (size_t i = 0; i < n; ++i) out.data[i] = load<float>(raw.data(), i);
    } else if (type == GGML_TYPE_F16) {
        for (size_t i = 0; i < n; ++i) out.data[i] = ggml_fp16_to_fp32(load<ggml_fp16_t>(raw.data(), i));
    } else if (type == GGML_TYPE_BF16) {
        for (size_t i = 0; i < n; ++i) out.data[i] = ggml_bf16_to_fp32(load<ggml_bf16_t>(raw.data(), i));
    } else if (type == GGML_TYPE_F64) {
        for (size_t i = 0; i < n; ++i) out.data[i] = load<double>(raw.data(), i);
    } else {
        const ggml_type_traits* tr = ggml_get_type_traits(type);
        if (!tr || !tr->to_float)
            throw std::runtime_error("tensor '" + name + "' has type " + info.type_name +
                                     " which cannot be converted to float" + where(path_));
        // Quantised types: dequantise row by row (rows are whole blocks).
        const int64_t ne0 = info.ne[0];
        const size_t row_bytes = ggml_row_size(type, ne0);
        const int64_t n_rows = info.n_elements() / ne0;
        std::vector<float> row(static_cast<size_t>(ne0));
        for (int64_t r = 0; r < n_rows; ++r) {
            tr->to_float(raw.data() + r * row_bytes, row.data(), ne0);
            for (int64_t i = 0; i < ne0; ++i) out.data[static_cast<size_t>(r * ne0 + i)] = row[static_cast<size_t>(i)];
        }
    }
    return out;
}

std::vector<double> GgufWeights::tensor_data(const std::string& name, std::array<int64_t, 4>* ne) const {
    GgufTensor t = tensor(name);
    if (ne) *ne = t.ne;
    return std::move(t.data);
}

std::optional<GgufTensor> GgufWeights::find_tensor(const std::string& name) const {
    if (!has_tensor(name)) return std::nullopt;
    return tensor(name);
}

// ---------------------------------------------------------------- metadata

std::vector<std::string> GgufWeights::keys() const {
    std::vector<std::string> out;
    const int64_t n = gguf_get_n_kv(ctx_);
    for (int64_t i = 0; i < n; ++i) out.emplace_back(gguf_get_key(ctx_, i));
    return out;
}

bool GgufWeights::has_key(const std::string& key) const { return gguf_find_key(ctx_, key.c_str()) >= 0; }

int64_t GgufWeights::key_id(const std::string& key) const {
    const int64_t id = gguf_find_key(ctx_, key.c_str());
    if (id < 0) throw std::out_of_range("metadata key '" + key + "' not found" + where(path_));
    return id;
}

std::string GgufWeights::key_type(const std::string& key) const {
    return gguf_type_name(gguf_get_kv_type(ctx_, key_id(key)));
}

std::string GgufWeights::architecture() const { return get_string("general.architecture"); }

int64_t GgufWeights::get_int(const std::string& key) const {
    const int64_t id = key_id(key);
    const gguf_type t = gguf_get_kv_type(ctx_, id);
    if (!is_integer(t))
        throw std::runtime_error("metadata key '" + key + "' has type " + gguf_type_name(t) + ", not an integer" + where(path_));
    bool overflow = false;
    const int64_t v = int_at(t, gguf_get_val_data(ctx_, id), 0, overflow);
    if (overflow) throw std::runtime_error("metadata key '" + key + "' does not fit into int64" + where(path_));
    return v;
}

uint32_t GgufWeights::get_u32(const std::string& key) const {
    const int64_t v = get_int(key);
    if (v < 0 || v > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
        throw std::runtime_error("metadata key '" + key + "' = " + std::to_string(v) + " does not fit into u32" + where(path_));
    return static_cast<uint32_t>(v);
}

double GgufWeights::get_float(const std::string& key) const {
    const int64_t id = key_id(key);
    const gguf_type t = gguf_get_kv_type(ctx_, id);
    if (!is_numeric(t) || t == GGUF_TYPE_BOOL)
        throw std::runtime_error("metadata key '" + key + "' has type " + gguf_type_name(t) + ", not a number" + where(path_));
    return float_at(t, gguf_get_val_data(ctx_, id), 0);
}

bool GgufWeights::get_bool(const std::string& key) const {
    const int64_t id = key_id(key);
    const gguf_type t = gguf_get_kv_type(ctx_, id);
    if (t != GGUF_TYPE_BOOL)
        throw std::runtime_error("metadata key '" + key + "' has type " + gguf_type_name(t) + ", not bool" + where(path_));
    return gguf_get_val_bool(ctx_, id);
}

std::string GgufWeights::get_string(const std::string& key) const {
    const int64_t id = key_id(key);
    const gguf_type t = gguf_get_kv_type(ctx_, id);
    if (t != GGUF_TYPE_STRING)
        throw std::runtime_error("metadata key '" + key + "' has type " + gguf_type_name(t) + ", not string" + where(path_));
    return gguf_get_val_str(ctx_, id);
}

size_t GgufWeights::get_array_size(const std::string& key) const {
    const int64_t id = key_id(key);
    if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_ARRAY)
        throw std::runtime_error("metadata key '" + key + "' is not an array" + where(path_));
    return gguf_get_arr_n(ctx_, id);
}

std::vector<std::string> GgufWeights::get_string_array(const std::string& key) const {
    const size_t n = get_array_size(key);
    const int64_t id = key_id(key);
    const gguf_type at = gguf_get_arr_type(ctx_, id);
    if (at != GGUF_TYPE_STRING)
        throw std::runtime_error("metadata key '" + key + "' is an array of " + gguf_type_name(at) + ", not of strings" + where(path_));
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.emplace_back(gguf_get_arr_str(ctx_, id, i));
    return out;
}

std::vector<double> GgufWeights::get_float_array(const std::string& key) const {
    const size_t n = get_array_size(key);
    const int64_t id = key_id(key);
    const gguf_type at = gguf_get_arr_type(ctx_, id);
    if (!is_numeric(at))
        throw std::runtime_error("metadata key '" + key + "' is an array of " + gguf_type_name(at) + ", not numbers" + where(path_));
    const void* p = gguf_get_arr_data(ctx_, id);
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = float_at(at, p, i);
    return out;
}

std::vector<int64_t> GgufWeights::get_int_array(const std::string& key) const {
    const size_t n = get_array_size(key);
    const int64_t id = key_id(key);
    const gguf_type at = gguf_get_arr_type(ctx_, id);
    if (!is_integer(at))
        throw std::runtime_error("metadata key '" + key + "' is an array of " + gguf_type_name(at) + ", not integers" + where(path_));
    const void* p = gguf_get_arr_data(ctx_, id);
    std::vector<int64_t> out(n);
    for (size_t i = 0; i < n; ++i) {
        bool overflow = false;
        out[i] = int_at(at, p, i, overflow);
        if (overflow) throw std::runtime_error("metadata key '" + key + "' element does not fit into int64" + where(path_));
    }
    return out;
}

std::optional<uint32_t> GgufWeights::find_u32(const std::string& key) const {
    if (!has_key(key)) return std::nullopt;
    return get_u32(key);
}
std::optional<double> GgufWeights::find_float(const std::string& key) const {
    if (!has_key(key)) return std::nullopt;
    return get_float(key);
}
std::optional<bool> GgufWeights::find_bool(const std::string& key) const {
    if (!has_key(key)) return std::nullopt;
    return get_bool(key);
}
std::optional<std::string> GgufWeights::find_string(const std::string& key) const {
    if (!has_key(key)) return std::nullopt;
    return get_string(key);
}

}  // namespace pmtest
