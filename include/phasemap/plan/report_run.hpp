// `phasemap report` as one library call: a ReportRequest (one field per flag) → the inputs read
// (a results DB through the store and the audit library, JSON files) into report::Inputs → the
// page built (report::build_data / render_html), written atomically, figures exported. The report
// module itself never reads a file or a DB (DESIGN.md); this front-end step does, for the CLI verb
// and the Python package alike.
//
// Owns: nothing kept; the DB is opened read-only and closed inside write_report. Throws: as stated below.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "phasemap/report/report.hpp"

namespace phasemap::plan {

// What `phasemap report` is asked for (docs/report.md). Paths are plain strings as given.
struct ReportRequest {
    std::string db;                     // results DB (`phasemap panel run`): panel, series, layer profiles, audits
    std::string hypotheses;             // falsification registry TOML evaluated on the DB's panel
    std::string out = "report.html";    // the HTML file
    std::string panel_json, audit_json;
    std::vector<std::string> runs_json, control_json, monitor_json;
    std::string svg_dir, png_dir;       // also export every figure (SVG under Node, PNG by rsvg-convert)
    std::string regime_cuts;            // "a,b,c" or "@FILE" (metrics::parse_regime_cuts); "" = Options' rule
    report::Options opt;                // opt.regime_cuts is set from regime_cuts; opt.generator by the caller
};

struct ReportResult {
    size_t bytes = 0;                   // size of the page written
    std::vector<std::string> figures;   // ids of the exported figures (svg_dir / png_dir)
};

// Options that do not go together or a malformed value.
struct ReportOptionError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
// An input that cannot be read or used (the message names the file or DB entry).
struct ReportError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Checks the request and the output path (io::check_output_path: "-o ..."), reads the inputs,
// builds the page, writes it atomically to req.out (nothing is left there on failure) and exports
// the figures. Throws ReportOptionError, ReportError, or the library's std::runtime_error (store,
// audit, export). The messages are the CLI's.
ReportResult write_report(const ReportRequest& req);

}  // namespace phasemap::plan
