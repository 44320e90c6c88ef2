// Quantised model variants via llama_model_quantize.
#include "phasemap/capture/quantize.hpp"

#include <fmt/core.h>

#include "phasemap/io/files.hpp"
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <stdexcept>
#include <utility>

#include "llama_common.hpp"

namespace phasemap::capture {

namespace {
namespace fs = std::filesystem;

const std::vector<std::pair<std::string, llama_ftype>>& types() {
    static const std::vector<std::pair<std::string, llama_ftype>> t{
        {"F16", LLAMA_FTYPE_MOSTLY_F16},       {"BF16", LLAMA_FTYPE_MOSTLY_BF16},     {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
        {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},     {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
        {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},     {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},     {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
        {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},     {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
        {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L}, {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
        {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    };
    return t;
}
}  // namespace

std::vector<std::string> quantize_type_names() {
    std::vector<std::string> v;
    for (const auto& [n, _] : types()) v.push_back(n);
    return v;
}

QuantizeResult quantize_model(const fs::path& in, const fs::path& out, const std::string& type, int n_threads) {
    std::string up = type;
    std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    auto it = std::find_if(types().begin(), types().end(), [&](const auto& p) { return p.first == up; });
    if (it == types().end()) {
        std::string list;
        for (const auto& n : quantize_type_names()) list += (list.empty() ? "" : ", ") + n;
        throw std::invalid_argument(fmt::format("unknown quantisation type '{}' (supported: {})", type, list));
    }
    std::error_code ec;
    if (!fs::is_regular_file(in, ec)) throw std::runtime_error(fmt::format("model file '{}' does not exist", in.string()));
    {
        std::ifstream f(in, std::ios::binary);
        char magic[4] = {};
        f.read(magic, 4);
        if (!f || std::string(magic, 4) != "GGUF") throw std::runtime_error(fmt::format("'{}' is not a GGUF file", in.string()));
    }
    io::check_output_path(out, {in}, "output");
    io::AtomicFile file(out);
    ensure_backend();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.ftype = it->second;
    qp.nthread = n_threads > 0 ? n_threads : default_threads();
    const uint32_t rc = llama_model_quantize(in.c_str(), file.temp_path().c_str(), &qp);
    if (rc != 0) {
        const std::string why = take_llama_errors();
        throw std::runtime_error(fmt::format("quantising '{}' to {} failed{}{}", in.string(), it->first,
                                             why.empty() ? "" : ": ", why));
    }
    file.commit();
    return {fs::file_size(in), fs::file_size(out), it->first};
}

}  // namespace phasemap::capture
