// Replication check: two executions of one declared protocol, compared array by array, bit for
// bit, and reported in the layout of LIMEN's replication.json (schema "limen.replication.v1")
// with phasemap's additional fields. Pure: no model, no I/O (src/cli/cmd_replicate.cpp runs the
// protocol and writes the file).
//
// Owns: nothing kept; Replica and the report are plain values. Throws: nothing for data: differences are
// reported, not thrown.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace phasemap::io {

// One array of one execution: numpy-style dtype name ("float32", "float64", "int64"), shape,
// and the raw little-endian bytes (compared bitwise).
struct ReplicaArray {
    std::string dtype;
    std::vector<size_t> shape;
    std::vector<unsigned char> bytes;

    static ReplicaArray f32(std::vector<size_t> shape, const std::vector<float>& v);
    static ReplicaArray f64(std::vector<size_t> shape, const std::vector<double>& v);
    static ReplicaArray i64(std::vector<size_t> shape, const std::vector<int64_t>& v);
    size_t count() const;            // elements (product of the shape)
    double value(size_t i) const;    // element i as double
};

// Everything one execution produced: its arrays and its fixed metadata (model hash, settings,
// prompt, layers, stop reason, text — whatever must not change between the executions).
struct Replica {
    std::map<std::string, ReplicaArray> arrays;
    nlohmann::json fixed_metadata = nlohmann::json::object();
    std::string arrays_sha256;       // sha256 over the arrays (name, dtype, shape, bytes) in name order
};

// Per-array comparison.
struct ArrayComparison {
    bool shape_equal = false, dtype_equal = false;
    bool array_equal = false;        // same dtype, shape and bytes
    size_t n_different = 0;          // elements whose bytes differ (shapes equal)
    double max_abs_diff = 0, max_rel_diff = 0;  // over elements; NaN vs number counts as +inf
};
ArrayComparison compare_arrays(const ReplicaArray& a, const ReplicaArray& b);

// Verdicts of limen.replication.v1.
inline constexpr const char* kExactReplication = "EXACT_REPLICATION";
inline constexpr const char* kNumericalDrift = "NUMERICAL_DRIFT";  // same tokens and shapes, values differ
inline constexpr const char* kDiverged = "DIVERGED";               // keys, shapes, tokens or fixed metadata differ

// Arrays whose difference means the executions diverged (discrete outputs), not drifted.
inline const std::vector<std::string> kDiscreteArrays{"token_ids", "prompt_ids", "positions"};

// sha256 of a replica's arrays (fills Replica::arrays_sha256).
std::string replica_sha256(const Replica& r);

// The report: LIMEN's fields (schema_version, evidence_level, verdict, model_id, model_revision,
// prompt, generation, reference_/replication_npz_sha256 — here the arrays' sha256 —, keys_match,
// arrays{name: shape, dtype, array_equal, max_absolute_difference}, all_fixed_metadata_equal,
// interpretation_boundary) plus "phasemap": per-array max_relative_difference and
// n_different, differing metadata keys, and whatever `extra` holds (protocol, versions).
nlohmann::json replication_report(const Replica& reference, const Replica& replication, const nlohmann::json& protocol);

}  // namespace phasemap::io
