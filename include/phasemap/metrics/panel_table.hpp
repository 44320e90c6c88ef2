// A panel as the audits see it: one row per run, with the run's design factors and its
// run-level metrics. The store fills it from the results DB (store::load_panel_table); the
// audits (src/audit) and the report read it. Plain data, no DuckDB, no llama.cpp.
//
// Owns: PanelTable owns its rows (plain values, no handle on the DB it was read from). Lifetimes: pointers
// returned by lookups (model()) live as long as the table and are invalidated by changing it. Throws:
// nothing.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace phasemap {

struct PanelModel {
    std::string label;                       // unique model label from the manifest
    std::string family;                      // declared family ("" when none)
    std::string architecture;                // general.architecture
    std::string sha256;                      // model file hash
    std::optional<std::string> variant_of;   // base model label for quantised / fine-tuned variants
    std::map<std::string, double> covariates;  // e.g. training_loss, size_b, benchmark score
};

struct PanelRun {
    std::string run_id;                      // hash of (model sha256, prompt, every setting)
    std::string model;                       // PanelModel::label
    std::string category;                    // prompt category
    std::string prompt;
    double temperature = 0;
    int64_t n_predict = 0;                   // token budget
    uint64_t seed = 0;
    int64_t n_generated = 0;
    std::string text;                        // generated text
    std::string tokens_digest;               // md5 of the generated token ids in order ("" when not stored)
    // Run-level metrics by METRICS.md name: ratio_norm, late_ct, collapse (0/1), mean_ct,
    // collapse_rate, rivalry_rate, diffuse_rate, steady_rate, exit_rate, reopening_rate,
    // perplexity (exp mean surprisal), median_<layer metric> …  NaN when missing.
    std::map<std::string, double> metrics;
    std::string regime;                      // "" when ratio_norm is missing
    std::string norm;                        // normalisation mode the metrics were computed with
};

struct PanelTable {
    std::vector<PanelModel> models;
    std::vector<PanelRun> runs;
    const PanelModel* model(const std::string& label) const {
        for (const auto& m : models)
            if (m.label == label) return &m;
        return nullptr;
    }
};

}  // namespace phasemap
