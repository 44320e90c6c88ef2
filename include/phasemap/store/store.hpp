// Results store of panel runs: one DuckDB file with the tables meta, models, runs and tokens
// (docs/panels.md lists every column). src/store is the only code that includes duckdb.h; this
// header exposes no DuckDB type.
//
// Crash safety: every generation group (the runs rows of all its normalisations with their tokens
// and token_layers rows) is written in one DuckDB transaction, so a killed writer leaves either the
// whole group or nothing of it. merge and put_audits are one transaction each as well
// (docs/hardening.md, "Crash points").
//
// Owns: a Store owns its DuckDB database and connection (and, open for writing, the file's lock) until
// destroyed. Lifetimes: RunWrite holds pointers to the caller's data, read during commit_group only; every
// result returned is an owned value. Throws: StoreError (below) for every DB problem, with a message naming
// the file.
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phasemap/metrics/panel_table.hpp"

namespace phasemap::metrics {
struct RunSummary;
}

namespace phasemap::store {

namespace fs = std::filesystem;

// Version of the table layout below; a DB written with another version is refused.
// 2: token_layers table (token-axis series of every captured layer), models.adapters, audits.
// 3: token_layers.layer_kind / layer_index / depth (metrics::LayerId of the label; block:L−1 and
//    hf:L at different depths). A version-2 DB is read as it is (depth comes from the label) and
//    migrated to version 3 when opened for writing; merge takes version-2 inputs.
// 4: runs.output_stats ("graph" or "host": where the engine computed the run's output statistics,
//    capture::RunStart::output_stats). Version-2 and -3 DBs are read as they are and migrated
//    (the column NULL for their runs: not recorded) when opened for writing; merge takes them.
inline constexpr int kSchemaVersion = 4;
inline constexpr int kOldestSchemaVersion = 2;

// Any problem with a results DB (cannot open, locked, other schema version, wrong manifest,
// failed write). The message is meant for the user.
struct Columns;  // store/columns.hpp

struct StoreError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct ModelRow {
    std::string label;          // unique within a panel
    std::string path;           // model file as given in the manifest (resolved)
    std::string sha256;         // of the model file
    std::string family;         // "" when none
    std::string architecture;   // architecture tag (manifest, else general.architecture)
    std::string gguf_architecture;
    std::string size;           // "" when none
    std::string variant_of;     // "" when none
    std::map<std::string, double> covariates;
    std::string adapters = "[]"; // JSON array of LoRA adapters [{"path", "sha256", "scale"}], "[]" when none
    std::string description;    // llama_model_desc
    int64_t n_layer = 0, n_embd = 0, n_vocab = 0, n_params = 0;
};

// One analysed run (the runs table row without the metric columns, which come from the summary).
struct RunRow {
    std::string run_id;
    std::string model;           // model label
    std::string category;
    int64_t prompt_index = 0;    // index of the prompt within its category
    std::string prompt;          // prompt as declared
    std::string prompt_text;     // text actually tokenised (chat template applied or not)
    bool chat = false;
    double temperature = 0;
    int64_t top_k = 0;
    double top_p = 1;
    uint64_t seed = 0;
    int64_t n_predict = 0;
    std::string layers;          // layer spec
    std::string precision;
    int64_t n_ctx = 0;
    std::string norm;
    std::string metric_options;  // JSON object: options_record of the analysis
    int64_t n_generated = 0;
    std::string stop_reason;
    std::string text;
    std::string states_path;     // NPZ of the raw states, relative to the DB's directory; "" when not kept
    std::string output_stats;    // "graph" / "host" (RunStart::output_stats); "" = not recorded (NULL)
};

// Per-token data of a run: one entry per generated token.
struct TokenData {
    int32_t id = -1;
    std::string text;
    int64_t position = 0;
};

// Per-layer series of one captured layer of a run (token_layers table), one value per generated
// token (NaN where undefined, e.g. ct_t for t < 2): the token axis (§2) at this layer, and the
// layer axis (§3) resolved at this layer (metrics::layer_steps: step arriving here, turn made here).
struct LayerTokenData {
    std::string layer;           // layer label (hf:N / block:N)
    std::vector<double> delta_t, curvature_t, ct_t;
    std::vector<double> speed, turning_angle_rad;
};

// A stored result document: an audit section (`phasemap audit`), a control audit or a monitor
// evaluation. The store keeps the document (audits table), every scalar leaf outside row tables
// (audit_values table: kind, name, path, value_text, value_number) and every array of objects as
// a relational table named <prefix>_<name>[_<path>] (prefix: audit / control / monitor;
// lower-case, non-alphanumerics as '_'), so results are queryable with SQL and exported to Parquet.
struct AuditEntry {
    std::string kind;            // "audit", "control_audit" or "monitor_eval"
    std::string name;            // audit: section name; control/monitor: a name chosen by the user
    bool ok = true;
    std::string reason;          // why the section could not run, when !ok
    nlohmann::json options = nlohmann::json::object();  // options the result was computed with
    nlohmann::json data;         // the result document
    std::string source;          // what it was computed from (DB path, prompt file, …)
    // Filled when read back:
    std::vector<std::string> tables;   // relational tables written for it
    std::string created_at;            // UTC, ISO 8601
    std::string phasemap_version;
};

// Metric columns of the runs table, in order: every scalar metric of the registry, then
// perplexity, mean_ct, dwell_mean_<STATE> (4), transition_<FROM>_<TO> (16 counts), then
// median_<m> for every per-token metric m (all DOUBLE).
const std::vector<std::string>& run_metric_columns();
// Metric columns of the tokens table: every per-token metric of the registry (DOUBLE).
const std::vector<std::string>& token_metric_columns();

struct OpenOptions {
    bool read_only = false;
    // Write mode: the hash identifying the manifest's grid. A new DB records it; an existing DB
    // recorded with another hash is refused (one DB holds one panel).
    std::string manifest_hash;
    std::map<std::string, std::string> meta;   // further meta rows written on creation
};

class Store {
public:
    // Opens or (write mode) creates the DB. Throws StoreError when the file is not a DuckDB
    // file, is locked by another process, was written with another schema version, is not a
    // phasemap results DB, or (write mode) belongs to another manifest. Nothing is written
    // before these checks pass.
    static std::unique_ptr<Store> open(const fs::path& path, const OpenOptions& opt = {});
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    const fs::path& path() const;
    std::map<std::string, std::string> meta() const;
    std::set<std::string> run_ids() const;
    int64_t count(const std::string& table) const;

    // Inserts the model or checks that the stored row has the same sha256 (StoreError otherwise).
    void put_model(const ModelRow& m);
    // Writes the runs row and the tokens rows of one analysed run in one transaction; a run_id
    // already stored violates the primary key (StoreError, nothing written).
    // `layers`: the token-axis series of every captured layer (token_layers rows); may be empty.
    void commit_run(const RunRow& run, const metrics::RunSummary& summary, const std::vector<TokenData>& tokens,
                    const std::vector<LayerTokenData>& layers = {});
    // One run of a generation group, for commit_group (pointers to the caller's data; `layers`
    // may be null).
    struct RunWrite {
        const RunRow* run = nullptr;
        const metrics::RunSummary* summary = nullptr;
        const std::vector<TokenData>* tokens = nullptr;
        const std::vector<LayerTokenData>* layers = nullptr;
    };
    // Writes every run of one generation group (each normalisation of one generation: its runs,
    // tokens and token_layers rows) in one transaction: a killed writer leaves all of them or
    // none. A run whose run_id is already stored is left as it is and not written again, so a
    // group stored in part (by a phasemap that committed each row on its own) is completed.
    // Returns the number of runs written.
    size_t commit_group(const std::vector<RunWrite>& runs);

    // Writes result documents in one transaction. An entry replaces the stored one of the same
    // (kind, name), its values and its tables. Needs a DB opened for writing.
    void put_audits(const std::vector<AuditEntry>& entries);
    // Stored result documents, of one kind ("" = all), ordered by kind and insertion.
    std::vector<AuditEntry> audits(const std::string& kind = "") const;

    // One Parquet file per table (<table>.parquet: meta, models, runs, tokens, token_layers and,
    // when present, audits, audit_values and the result tables), written to a temporary directory next to
    // `dir` and renamed into place. An existing `dir` holding only Parquet files is replaced.
    // Returns the tables written, in file-name order.
    std::vector<std::string> export_parquet(const fs::path& dir) const;

    PanelTable panel_table() const;

    // Per-token series of the given runs (tokens table), in the order of `run_ids`; runs without
    // token rows are left out. Undefined values (ct_t for t < 2, …) are NaN.
    struct TokenSeries {
        std::string run_id;
        std::vector<std::string> token;         // token text
        std::vector<double> delta_t, curvature_t, ct_t;
        std::vector<std::string> output_state;  // "" when the run had no probability stats
    };
    std::vector<TokenSeries> token_series(const std::vector<std::string>& run_ids) const;

    // Per model × captured layer, the distribution over all tokens of that model's runs of the
    // token_layers values (aggregated in SQL): speed into the layer, turning angle at the layer,
    // and ct_t of the token axis at the layer. Only runs of one normalisation mode (runs.norm):
    // `norm`, or when empty the mode with the most runs that have token_layers rows (ties: the
    // first by name). Rows are ordered by model, then depth, then label (hf before block).
    // Empty when the DB has no token_layers rows (or none of that norm).
    struct Quartiles {
        double median = std::nan(""), q1 = std::nan(""), q3 = std::nan("");  // NaN when n = 0
        int64_t n = 0;               // tokens with a value (speed is NULL at the first layer, …)
    };
    struct LayerProfileRow {
        std::string model, norm, layer;
        double depth = 0;            // metrics::LayerId::depth (layer_id.hpp): hf:N → N, hf:L → L + 0.5,
                                     // block:N → N + 1, components inside block N; NaN for other labels
        int64_t runs = 0;            // runs with rows at this layer
        Quartiles speed, turning_angle_rad, ct_t;
    };
    std::vector<LayerProfileRow> layer_profiles(const std::string& norm = "") const;

    // Rows of a read-only SQL query, each as its values joined by tabs (NULL as \N): for tests
    // and diagnostics (e.g. comparing two DBs row by row).
    std::vector<std::string> rows(const std::string& sql) const;
    // The rows of a read-only SQL query as typed columns (store/columns.hpp, src/store/columns.cpp).
    Columns columns(const std::string& sql) const;

    struct Impl;

private:
    friend struct MergeResult merge(const std::vector<fs::path>& inputs, const fs::path& out);
    explicit Store(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Reads the models and runs of a results DB (read-only) as the audits' PanelTable.
PanelTable load_panel_table(const fs::path& db);

struct MergeResult {
    int64_t runs_added = 0;
    int64_t runs_present = 0;    // already in the output (skipped)
};
// Merges shard DBs into `out` (created when missing). All inputs (and an existing output) must
// come from the same manifest; runs already present are skipped, so merging twice is a no-op.
MergeResult merge(const std::vector<fs::path>& inputs, const fs::path& out);

}  // namespace phasemap::store
