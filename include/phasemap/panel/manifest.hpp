// Panel manifest (TOML, docs/panels.md): models × prompts × temperatures × token budgets × seeds ×
// normalisations, with generation and metric settings and optional per-model overrides.
// Parsing collects every problem (unknown keys, wrong types, missing files, duplicate labels)
// and reports them together, each as file:line:column: message.
//
// Owns: a Manifest owns everything it parsed (resolved paths, prompts, options); GridPoints index into it, so
// a grid lives with its manifest. Throws: ManifestError listing every problem; std::invalid_argument where
// stated.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "phasemap/metrics/analyze.hpp"

namespace phasemap::panel {

namespace fs = std::filesystem;

struct ManifestError : std::runtime_error {
    explicit ManifestError(std::vector<std::string> problems);
    std::vector<std::string> problems;   // "file:line:col: message", in file order
};

struct Prompt {
    std::string category;
    std::string text;
    int64_t index = 0;                   // index within its category (in file order)
};

// Generation axes and settings; per-model overrides replace whole entries.
struct GenerationSettings {
    std::vector<double> temperatures{0.0};
    std::vector<int64_t> n_predict{64};
    std::vector<uint64_t> seeds{0};
    bool chat = false;
    int64_t top_k = 0;
    double top_p = 1.0;
    std::string layers = "hf:all";
    std::string precision = "exact";
    int64_t n_ctx = 0;
};

// A LoRA adapter applied to a model (capture::LoraAdapter): adapters = [{ path = "...", scale = 1.0 }].
struct AdapterEntry {
    fs::path path;                       // resolved against the manifest's directory
    double scale = 1.0;
};

struct ModelEntry {
    std::string label;
    fs::path path;                       // resolved against the manifest's directory
    std::vector<AdapterEntry> adapters;  // LoRA adapters, applied in this order
    std::string family, architecture, size, variant_of;
    std::map<std::string, double> covariates;
    GenerationSettings gen;              // panel settings with this model's overrides applied
};

struct Manifest {
    fs::path file;
    std::string name;
    std::vector<ModelEntry> models;
    std::vector<Prompt> prompts;
    std::vector<std::string> norms{"raw"};     // normalisation axis of the analysis
    std::string metric_layer;                  // "" = last captured layer
    metrics::AnalysisOptions analysis;         // everything but layer and norm
    bool include_embedding = false;            // keep hf:0 in the analysed states (LIMEN leaves it out)
    bool save_states = false;                  // keep raw states as NPZ next to the DB
};

// Parses and validates a manifest file. Throws ManifestError listing every problem found.
Manifest load_manifest(const fs::path& file);
// Same, from text (`file` is used for messages and to resolve relative paths).
Manifest parse_manifest(const std::string& text, const fs::path& file, bool check_files = true);

// One point of the grid: a run to generate and analyse.
struct GridPoint {
    size_t model = 0;                    // index into Manifest::models
    size_t prompt = 0;                   // index into Manifest::prompts
    double temperature = 0;
    int64_t n_predict = 0;
    uint64_t seed = 0;
    std::string norm;
    size_t group = 0;                    // generation group: points differing only in norm share one generation
};

// Runs of the grid (overflow-safe, saturating) and the largest grid expand_grid builds.
inline constexpr uint64_t kMaxGridRuns = 10'000'000;
uint64_t grid_size(const Manifest& m);
// The full grid in a fixed order: model, prompt, temperature, n_predict, seed, norm; refused
// (ManifestError) above kMaxGridRuns.
std::vector<GridPoint> expand_grid(const Manifest& m);

// Analysis options of one grid point (norm and layer resolved against the captured layer names).
metrics::AnalysisOptions analysis_options(const Manifest& m, const std::string& norm, const std::vector<std::string>& layer_names);
// The options record of a grid point as a JSON object text (part of the run identity).
std::string options_record_json(const Manifest& m, const std::string& norm);

// Run identity: sha256 over (model file sha256, category, prompt, every generation setting, the
// metric options record, save_states) and, for a model with LoRA adapters, each adapter's file
// sha256 and scale (`adapter_sha256` in the model's adapter order; a model without adapters
// keeps the identity it always had). Throws std::invalid_argument when the adapter hashes do
// not match the model's adapters.
std::string run_id(const Manifest& m, const GridPoint& p, const std::string& model_sha256,
                   const std::vector<std::string>& adapter_sha256 = {});

// Model file hashes, in manifest order (cached per file for the process).
std::vector<std::string> model_hashes(const Manifest& m);
// LoRA adapter file hashes per model, in manifest and adapter order (same cache).
std::vector<std::vector<std::string>> adapter_hashes(const Manifest& m);
// Hash of the whole grid (model labels and file hashes, every run id): what the DB records
// as manifest_hash. Shards of one manifest share it.
// `adapter_sha256` (adapter_hashes) is needed when a model has LoRA adapters.
std::string grid_hash(const Manifest& m, const std::vector<std::string>& model_sha256,
                      const std::vector<std::vector<std::string>>& adapter_sha256 = {});

// Shard "i/N" (1-based i): grid points whose generation group g satisfies g % N == i - 1.
struct Shard {
    size_t index = 1, count = 1;
    bool contains(size_t group) const { return group % count == index - 1; }
    std::string str() const { return std::to_string(index) + "/" + std::to_string(count); }
};
Shard parse_shard(const std::string& s);   // throws std::invalid_argument

}  // namespace phasemap::panel
