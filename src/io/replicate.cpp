// Bitwise comparison of two executions and the limen.replication.v1 report (see replicate.hpp).
#include "phasemap/io/run_file.hpp"
#include "phasemap/io/replicate.hpp"

#include <fmt/core.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>

namespace phasemap::io {
namespace {

template <class T>
ReplicaArray make(const char* dtype, std::vector<size_t> shape, const std::vector<T>& v) {
    ReplicaArray a;
    a.dtype = dtype;
    a.shape = std::move(shape);
    if (a.count() != v.size())
        throw std::invalid_argument(fmt::format("replica array: {} values for a shape of {} elements", v.size(), a.count()));
    a.bytes.resize(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
    return a;
}

size_t item_size(const std::string& dtype) {
    if (dtype == "float32") return 4;
    if (dtype == "float64" || dtype == "int64") return 8;
    throw std::invalid_argument("replica array: unknown dtype " + dtype);
}

}  // namespace

ReplicaArray ReplicaArray::f32(std::vector<size_t> shape, const std::vector<float>& v) { return make("float32", std::move(shape), v); }
ReplicaArray ReplicaArray::f64(std::vector<size_t> shape, const std::vector<double>& v) { return make("float64", std::move(shape), v); }
ReplicaArray ReplicaArray::i64(std::vector<size_t> shape, const std::vector<int64_t>& v) { return make("int64", std::move(shape), v); }

size_t ReplicaArray::count() const {
    return std::accumulate(shape.begin(), shape.end(), size_t(1), std::multiplies<size_t>());
}

double ReplicaArray::value(size_t i) const {
    const unsigned char* p = bytes.data() + i * item_size(dtype);
    if (dtype == "float32") { float f; std::memcpy(&f, p, 4); return f; }
    if (dtype == "float64") { double d; std::memcpy(&d, p, 8); return d; }
    int64_t v;
    std::memcpy(&v, p, 8);
    return double(v);
}

ArrayComparison compare_arrays(const ReplicaArray& a, const ReplicaArray& b) {
    ArrayComparison c;
    c.shape_equal = a.shape == b.shape;
    c.dtype_equal = a.dtype == b.dtype;
    c.array_equal = c.shape_equal && c.dtype_equal && a.bytes == b.bytes;
    if (!c.shape_equal) {
        c.max_abs_diff = c.max_rel_diff = std::numeric_limits<double>::infinity();
        return c;
    }
    const size_t n = a.count();
    const size_t wa = item_size(a.dtype), wb = item_size(b.dtype);
    for (size_t i = 0; i < n; ++i) {
        if (c.dtype_equal && std::memcmp(a.bytes.data() + i * wa, b.bytes.data() + i * wb, wa) == 0) continue;
        const double x = a.value(i), y = b.value(i);
        if (c.dtype_equal || x != y) ++c.n_different;
        double abs, rel;
        if (std::isnan(x) || std::isnan(y)) {
            abs = rel = (std::isnan(x) && std::isnan(y)) ? 0.0 : std::numeric_limits<double>::infinity();
        } else if (x == y) {
            abs = rel = 0.0;  // e.g. +0 / -0
        } else {
            abs = std::fabs(x - y);
            rel = abs / std::max(std::fabs(x), std::fabs(y));
        }
        c.max_abs_diff = std::max(c.max_abs_diff, abs);
        c.max_rel_diff = std::max(c.max_rel_diff, rel);
    }
    return c;
}

std::string replica_sha256(const Replica& r) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
    for (const auto& [name, a] : r.arrays) {
        std::string head = name + '\0' + a.dtype + '\0';
        for (size_t d : a.shape) head += std::to_string(d) + ',';
        head.push_back('\0');
        EVP_DigestUpdate(ctx.get(), head.data(), head.size());
        if (!a.bytes.empty()) EVP_DigestUpdate(ctx.get(), a.bytes.data(), a.bytes.size());
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &n);
    return hex_digest(md, n);
}

namespace {
// JSON numbers cannot be inf: an infinite difference is written as null with a note.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
}  // namespace

nlohmann::json replication_report(const Replica& ref, const Replica& rep, const nlohmann::json& protocol_in) {
    using nlohmann::json;
    const json protocol = protocol_in.is_object() ? protocol_in : json::object();
    std::vector<std::string> keys_ref, keys_rep, all;
    for (const auto& [k, _] : ref.arrays) keys_ref.push_back(k);
    for (const auto& [k, _] : rep.arrays) keys_rep.push_back(k);
    std::set_union(keys_ref.begin(), keys_ref.end(), keys_rep.begin(), keys_rep.end(), std::back_inserter(all));
    const bool keys_match = keys_ref == keys_rep;

    json arrays = json::object(), pm_arrays = json::object();
    bool all_equal = keys_match, discrete_equal = keys_match, shapes_equal = keys_match;
    double max_abs = 0, max_rel = 0;
    for (const std::string& k : all) {
        const auto ia = ref.arrays.find(k), ib = rep.arrays.find(k);
        if (ia == ref.arrays.end() || ib == rep.arrays.end()) {
            pm_arrays[k] = {{"present_in_reference", ia != ref.arrays.end()}, {"present_in_replication", ib != rep.arrays.end()}};
            continue;
        }
        const ArrayComparison c = compare_arrays(ia->second, ib->second);
        arrays[k] = {{"shape", ia->second.shape}, {"dtype", ia->second.dtype}, {"array_equal", c.array_equal},
                     {"max_absolute_difference", num(c.max_abs_diff)}};
        json extra = {{"max_relative_difference", num(c.max_rel_diff)}, {"n_different", c.n_different},
                      {"n_elements", ia->second.count()}};
        if (!c.shape_equal) extra["replication_shape"] = ib->second.shape;
        if (!c.dtype_equal) extra["replication_dtype"] = ib->second.dtype;
        pm_arrays[k] = extra;
        all_equal = all_equal && c.array_equal;
        shapes_equal = shapes_equal && c.shape_equal && c.dtype_equal;
        if (std::find(kDiscreteArrays.begin(), kDiscreteArrays.end(), k) != kDiscreteArrays.end())
            discrete_equal = discrete_equal && c.array_equal;
        max_abs = std::max(max_abs, c.max_abs_diff);
        max_rel = std::max(max_rel, c.max_rel_diff);
    }
    // Fixed metadata: every key of either side, compared as JSON values.
    std::vector<std::string> meta_diff;
    for (const auto& [k, v] : ref.fixed_metadata.items())
        if (!rep.fixed_metadata.contains(k) || rep.fixed_metadata.at(k) != v) meta_diff.push_back(k);
    for (const auto& [k, v] : rep.fixed_metadata.items())
        if (!ref.fixed_metadata.contains(k)) meta_diff.push_back(k);
    const bool meta_equal = meta_diff.empty();

    const char* verdict = all_equal && meta_equal                         ? kExactReplication
                          : keys_match && shapes_equal && discrete_equal && meta_equal ? kNumericalDrift
                                                                           : kDiverged;
    const json& m = ref.fixed_metadata;
    auto get = [&](const char* k) { return m.contains(k) ? m.at(k) : json(nullptr); };
    json generation = {{"method", protocol.value("greedy", true) ? "greedy" : "sampled"},
                       {"generated_tokens", ref.arrays.count("token_ids") ? ref.arrays.at("token_ids").count() : 0}};
    if (!protocol.value("greedy", true)) generation["seed"] = protocol.value("seed", json(nullptr));

    json r;
    r["schema_version"] = "limen.replication.v1";
    r["evidence_level"] = "I";
    r["verdict"] = verdict;
    r["model_id"] = get("model_id");
    r["model_revision"] = get("model_sha256");
    r["prompt"] = protocol.value("prompt", json(nullptr));
    r["generation"] = generation;
    r["reference_npz_sha256"] = ref.arrays_sha256;
    r["replication_npz_sha256"] = rep.arrays_sha256;
    r["keys_match"] = keys_match;
    r["arrays"] = arrays;
    r["all_fixed_metadata_equal"] = meta_equal;
    r["interpretation_boundary"] =
        "Exact replication is established only for two executions of this locked protocol, in one process "
        "environment, on this machine, with this build of phasemap and the pinned llama.cpp. It does not establish "
        "cross-device, cross-version, cross-thread-count or cross-architecture reproducibility, model quality, "
        "functional localization or causality.";
    r["phasemap"] = {
        {"protocol", protocol},
        {"sha256_note", "reference_npz_sha256 / replication_npz_sha256 hash the compared arrays (name, dtype, shape, "
                        "bytes in name order), not an NPZ file: zip members carry timestamps"},
        {"arrays", pm_arrays},
        {"max_absolute_difference", num(max_abs)},
        {"max_relative_difference", num(max_rel)},
        {"differing_fixed_metadata", meta_diff},
        {"fixed_metadata", ref.fixed_metadata},
        {"null_difference_means", "infinite (NaN against a number, or shapes differ)"},
    };
    return r;
}

}  // namespace phasemap::io
