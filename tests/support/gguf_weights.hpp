// Test support: read a GGUF file's metadata and tensors independently of llama.cpp's model
// loader (only ggml's gguf parser is used). Tensor data is read lazily from the file and
// converted to float64 (F32, F16, BF16 and any ggml type with a to_float conversion).
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

struct gguf_context;

namespace pmtest {

struct GgufTensorInfo {
    std::string name;
    int type = 0;                       // enum ggml_type
    std::string type_name;              // "f32", "f16", ...
    std::array<int64_t, 4> ne{1, 1, 1, 1};  // ggml shape: ne[0] is the contiguous dimension
    int n_dims = 0;
    uint64_t file_offset = 0;           // absolute offset of the data in the file
    uint64_t n_bytes = 0;
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// A tensor converted to float64. Element (i0, i1) of a 2-D tensor is data[i1 * ne[0] + i0];
// for a weight matrix W of shape {n_in, n_out} row i1 holds the n_in inputs of output i1.
struct GgufTensor {
    std::string name;
    std::array<int64_t, 4> ne{1, 1, 1, 1};
    std::vector<double> data;
    double at(int64_t i0, int64_t i1 = 0) const { return data[static_cast<size_t>(i1 * ne[0] + i0)]; }
    const double* row(int64_t i1) const { return data.data() + i1 * ne[0]; }
};

class GgufWeights {
public:
    // Throws std::runtime_error when the file is missing or not a readable GGUF.
    explicit GgufWeights(const std::filesystem::path& path);
    ~GgufWeights();
    GgufWeights(const GgufWeights&) = delete;
    GgufWeights& operator=(const GgufWeights&) = delete;

    const std::filesystem::path& path() const { return path_; }

    // ---------------------------------------------------------------- tensors
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    std::vector<std::string> tensor_names() const;
    bool has_tensor(const std::string& name) const;
    // Throws std::out_of_range naming the tensor and the file when absent.
    const GgufTensorInfo& tensor_info(const std::string& name) const;
    // Reads and converts the tensor; throws std::out_of_range when absent and
    // std::runtime_error for an unconvertible type or a short read.
    GgufTensor tensor(const std::string& name) const;
    std::vector<double> tensor_data(const std::string& name, std::array<int64_t, 4>* ne = nullptr) const;
    // Like tensor(), but std::nullopt when absent.
    std::optional<GgufTensor> find_tensor(const std::string& name) const;

    // ---------------------------------------------------------------- metadata
    std::vector<std::string> keys() const;
    bool has_key(const std::string& key) const;
    // Type name of the value ("u32", "f32", "string", "array", ...); throws when absent.
    std::string key_type(const std::string& key) const;
    // general.architecture
    std::string architecture() const;

    // Getters throw std::out_of_range when the key is absent and std::runtime_error when the
    // stored type does not fit (an integer getter accepts every integer type whose value fits).
    uint32_t get_u32(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_float(const std::string& key) const;    // f32 or f64 (or any integer)
    bool get_bool(const std::string& key) const;
    std::string get_string(const std::string& key) const;
    std::vector<std::string> get_string_array(const std::string& key) const;
    std::vector<double> get_float_array(const std::string& key) const;   // numeric arrays
    std::vector<int64_t> get_int_array(const std::string& key) const;    // integer arrays
    size_t get_array_size(const std::string& key) const;

    // Optional forms: std::nullopt when the key is absent.
    std::optional<uint32_t> find_u32(const std::string& key) const;
    std::optional<double> find_float(const std::string& key) const;
    std::optional<bool> find_bool(const std::string& key) const;
    std::optional<std::string> find_string(const std::string& key) const;

    // Architecture-prefixed key: arch_key("block_count") == "<general.architecture>.block_count".
    std::string arch_key(const std::string& suffix) const { return architecture() + "." + suffix; }

private:
    int64_t key_id(const std::string& key) const;  // throws when absent

    std::filesystem::path path_;
    gguf_context* ctx_ = nullptr;
    std::vector<GgufTensorInfo> tensors_;
};

}  // namespace pmtest
