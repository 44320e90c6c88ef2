// `phasemap report`: one self-contained HTML page (Vega-Lite figures + tables) from a panel,
// its audits, and per-run summaries. The page inlines vega, vega-lite and vega-embed (pinned
// npm bundles, embedded in the binary at build time), so it works offline from file://.
//
// Data flow: Inputs → build_data() → report data JSON (figure data, tables, notes) →
// render_html() (template + report.js + data) and export_figures() (same specs, rendered by
// vega's own SVG renderer under Node; PNG by rsvg-convert). No DuckDB here, and no reading of
// files: the front end (src/cli/cmd_report.cpp) reads them into the typed Inputs.
//
// Who owns which input type: audit::AuditResult (the `phasemap audit --json` document, with its
// from_json) — src/audit, include/phasemap/audit/result.hpp; io::SummaryRecord (what the report
// takes from a per-run summary) — src/io/summary_json.cpp beside the writer;
// steer::ControlAuditResult / MonitorEvalResult (control-audit / monitor-eval, with their
// from_json) — src/steer, include/phasemap/steer/result.hpp; PanelTable — panel_table.hpp;
// LayerProfile — here (filled from the store by the front end).
//
// Owns: nothing kept; Inputs owns its typed inputs, the functions return owned JSON / HTML text. Never opens
// a DB; export_figures writes only into the folder it is given. Throws: as stated per function.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "phasemap/audit/result.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/metrics/panel_table.hpp"
#include "phasemap/io/summary_json.hpp"
#include "phasemap/steer/result.hpp"

namespace phasemap::report {

// Per-layer profile of one model at one captured layer: the distribution over all tokens of the
// model's runs (one normalisation mode) of the token_layers values — speed into the layer, turning
// angle at the layer, ct_t of the token axis at the layer. From a results DB
// (store::Store::layer_profiles); NaN / n = 0 where a layer has no value (speed at the first).
struct LayerProfile {
    struct Stat {
        double median = std::numeric_limits<double>::quiet_NaN(), q1 = median, q3 = median;
        int64_t n = 0;
    };
    std::string model, layer, norm;
    double depth = 0;            // metrics::LayerId::depth: hf:N → N, hf:L → L + 0.5, block:N → N + 1, components between
    int64_t runs = 0;
    Stat speed, turning_angle_rad, ct_t;
};

struct Inputs {
    std::optional<PanelTable> panel;         // run points, models, categories
    std::string panel_source;                // shown under provenance
    std::optional<audit::AuditResult> audit; // `phasemap audit --json` (audit::audit_result_from_json), or unset
    std::string audit_source;
    std::vector<io::SummaryRecord> runs;     // per-run summaries (`phasemap analyze --json`, io::summary_record_from_json)
    std::vector<std::string> run_sources;    // same length as runs
    std::vector<steer::ControlAuditResult> control_audit;  // `phasemap control-audit` results (steer::control_audit_from_json)
    std::vector<steer::MonitorEvalResult> monitor;         // `phasemap monitor-eval` results (steer::monitor_eval_from_json)
    std::vector<std::string> control_sources, monitor_sources;
    // Layer profiles over depth (per model × layer, ordered by model and depth), read from a
    // results DB's token_layers; the DB's path in layer_profiles_source ("" when no DB was read).
    std::vector<LayerProfile> layer_profiles;
    std::string layer_profiles_source;
};

struct Options {
    std::string title = "phasemap report";
    // unset: the runs' own cut-points, else the audit's, else METRICS.md's defaults
    std::optional<metrics::RegimeCuts> regime_cuts;
    size_t max_series = 24;             // runs whose token series go into the page
    size_t max_points = 400;            // points per token series after downsampling
    size_t bootstrap = 2000;            // resamples for the CI of each median (stats::percentile_bootstrap)
    uint64_t seed = 20240521;           // bootstrap seed: the audit's regime stream of it (audit::kRegimeStream)
    std::string generator;              // "phasemap X (llama.cpp Y)", shown under provenance
};

// PanelTable from the JSON dump `phasemap audit --panel-json` writes (field names as in
// panel_table.hpp; a missing metric is null). Throws std::runtime_error on a malformed file.
PanelTable panel_from_json(const nlohmann::json& j);

// The report data: sections (figures, tables, notes) and the data each figure plots.
nlohmann::json build_data(const Inputs& in, const Options& opt);

// The page: template + inlined libraries + report.js + data.
std::string render_html(const nlohmann::json& data);

// Writes <id>.svg for each figure that has data into svg_dir (if set) and <id>.png into png_dir
// (if set), by running vega under Node (`node` on PATH) and rsvg-convert. Returns the ids written.
std::vector<std::string> export_figures(const nlohmann::json& data, const std::optional<std::filesystem::path>& svg_dir,
                                        const std::optional<std::filesystem::path>& png_dir);

// Peak-preserving downsampling of a token series to at most max_points buckets of w tokens:
// each bucket keeps the token with the largest value (its index is returned). Documented in
// docs/report.md.
std::vector<size_t> downsample_peaks(const std::vector<double>& v, size_t max_points, size_t& bucket);

// A dendrogram drawn from a scipy-style linkage (merges {a, b, height}, n − 1 of them, e.g. the
// audit's stats::average_linkage): leaf order and segments {x, x2, y, y2} (leaves at x = i + 0.5,
// merges at their heights).
struct Dendrogram {
    std::vector<size_t> order;
    nlohmann::json segments;
};
Dendrogram dendrogram_from_linkage(size_t n, const std::vector<std::array<double, 3>>& merges);

}  // namespace phasemap::report
