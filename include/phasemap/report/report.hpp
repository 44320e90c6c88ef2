// `phasemap report`: one self-contained HTML page (Vega-Lite figures + tables) from a panel,
// its audits, and per-run summaries. The page inlines vega, vega-lite and vega-embed (pinned
// npm bundles, embedded in the binary at build time), so it works offline from file://.
//
// Data flow: Inputs → build_data() → report data JSON (figure data, tables, notes) →
// render_html() (template + report.js + data) and export_figures() (same specs, rendered by
// vega's own SVG renderer under Node; PNG by rsvg-convert). No DuckDB here, and no reading of
// files in build_data / render_html: write_report() (src/report/driver.cpp) reads the inputs a
// ReportRequest names into the typed Inputs (a results DB through the store and the audits).
//
// Who owns which input type: audit::AuditResult (the `phasemap audit --json` document, with its
// from_json) — src/audit, include/phasemap/audit/result.hpp; io::SummaryRecord (what the report
// takes from a per-run summary) — src/io/summary_json.cpp beside the writer; steer::SummaryRow
// (the per-arm rows of control-audit / monitor-eval) — src/steer; PanelTable — panel_table.hpp;
// LayerProfile — here (filled from the store by write_report).
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "phasemap/audit/result.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/metrics/panel_table.hpp"
#include "phasemap/io/summary_json.hpp"

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
    std::vector<nlohmann::json> control_audit;  // `phasemap control-audit` JSON outputs
    std::vector<nlohmann::json> monitor;        // `phasemap monitor-eval` JSON outputs
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

// What `phasemap report` is asked for (one field per flag; docs/report.md). The CLI verb and the
// Python package's phasemap.report fill it and call write_report.
struct ReportRequest {
    std::string db;                     // results DB (`phasemap panel run`): panel, series, layer profiles, audits
    std::string hypotheses;             // falsification registry TOML evaluated on the DB's panel
    std::string out = "report.html";    // the HTML file
    std::string panel_json, audit_json;
    std::vector<std::string> runs_json, control_json, monitor_json;
    std::string svg_dir, png_dir;       // also export every figure (SVG under Node, PNG by rsvg-convert)
    std::string regime_cuts;            // "a,b,c" or "@FILE" (metrics::parse_regime_cuts); "" = Options' rule
    Options opt;                        // opt.regime_cuts is set from regime_cuts; opt.generator by the caller
};

struct ReportResult {
    size_t bytes = 0;                   // size of the page written
    std::vector<std::string> figures;   // ids of the exported figures (svg_dir / png_dir)
};

// A request that cannot be served: options that do not go together or a malformed value
// (std::invalid_argument), or an input that cannot be read / used (std::runtime_error). The
// messages are the CLI's. Output-path problems come from io::check_output_path ("-o ...").
struct ReportOptionError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
struct ReportError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Everything `phasemap report` does except flag binding and printing: checks the request and the
// output path, reads the inputs, builds the page, writes it atomically to req.out and exports the
// figures. Throws ReportOptionError / ReportError / the library's std::runtime_error.
ReportResult write_report(const ReportRequest& req);

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
