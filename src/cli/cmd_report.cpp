// `phasemap report`: one self-contained HTML page (phase map, trajectories, layer profiles over depth,
// audits, provenance) from a panel, its audit and per-run summaries; optional SVG/PNG export of
// every figure. See docs/report.md. The work is plan::write_report (src/plan/report_run.cpp); this
// file binds the flags and prints.
#include <fmt/core.h>

#include <filesystem>

#include "phasemap/plan/report_run.hpp"
#include "phasemap/capture/version.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct ReportCmd {
    plan::ReportRequest req;
    bool quiet = false;
};

// The request is served by plan::write_report; the verb prints.
int run_report(ReportCmd& c) {
    c.req.opt.generator = version_string();
    const plan::ReportResult r = plan::write_report(c.req);
    if (c.quiet) return 0;
    fmt::print("{}: {:.1f} MB\n", c.req.out, static_cast<double>(r.bytes) / 1e6);
    for (const auto& id : r.figures) {
        if (!c.req.svg_dir.empty()) fmt::print("{}\n", (std::filesystem::path(c.req.svg_dir) / (id + ".svg")).string());
        if (!c.req.png_dir.empty()) fmt::print("{}\n", (std::filesystem::path(c.req.png_dir) / (id + ".png")).string());
    }
    return 0;
}

Verb reg{"report", "One self-contained HTML page of plots and tables (phase map, trajectories, audits, provenance)",
         [](CLI::App& app) {
    auto c = std::make_shared<ReportCmd>();
    auto& q = c->req;
#ifdef PHASEMAP_REPORT_DB
    app.add_option("db", q.db, "results DB (`phasemap panel run`): the panel, and the audits computed on it");
    app.add_option("--hypotheses", q.hypotheses, "falsification registry TOML evaluated on the DB's panel")->check(kPath);
#endif
    app.add_option("-o,--output", q.out, "HTML file to write (default report.html)")->check(kPath);
    app.add_option("--panel-json", q.panel_json, "PanelTable as JSON (the layout `phasemap audit --panel-json` reads)")->check(kPath);
    app.add_option("--audit-json", q.audit_json, "audit results (`phasemap audit --json` output)")->check(kPath);
    app.add_option("--runs-json", q.runs_json, "per-run summaries (`phasemap analyze --json`): token series, layer metrics")
        ->expected(1, -1);
    app.add_option("--control-json", q.control_json, "control-audit results (`phasemap control-audit` JSON); replaces those stored in the DB")
        ->expected(1, -1);
    app.add_option("--monitor-json", q.monitor_json, "monitor-arm results (`phasemap monitor-eval` JSON); replaces those stored in the DB")
        ->expected(1, -1);
    app.add_option("--svg", q.svg_dir, "also write each figure as DIR/<figure>.svg (vega's renderer under Node)");
    app.add_option("--png", q.png_dir, "also write each figure as DIR/<figure>.png (SVG through rsvg-convert)");
    app.add_option("--title", q.opt.title, "page title");
    app.add_option("--regime-cuts", q.regime_cuts, "regime cut-points a,b,c or @FILE (default: the runs' own, else 1.985,2.945,3.695)");
    app.add_option("--max-series", q.opt.max_series, "runs whose token series go into the page (default 24)");
    app.add_option("--max-points", q.opt.max_points, "points per token series after downsampling (default 400)");
    app.add_option("--bootstrap", q.opt.bootstrap, "bootstrap resamples for each median's CI (default 2000)")->check(in(opt::kResamples));
    app.add_flag("-q,--quiet", c->quiet, "print nothing");
    return [c] { return run_report(*c); };
}};

}  // namespace
}  // namespace phasemap::cli
