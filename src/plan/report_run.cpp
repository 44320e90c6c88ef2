// plan::write_report: the whole of `phasemap report` except flag binding and printing — reads the
// inputs a ReportRequest names (a results DB through the store and the audit library, the JSON
// files) into report::Inputs, builds the page, writes it atomically and exports the figures. It
// lives in plan, not in report, because the report module never opens a DB (DESIGN.md: report
// takes typed results, the front end reads them). The CLI verb (src/cli/cmd_report.cpp) and the
// Python package (phasemap.report) both call it.
#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>

#include "phasemap/audit/report.hpp"
#include "phasemap/io/files.hpp"
#include "phasemap/metrics/option_domains.hpp"
#include "phasemap/plan/report_run.hpp"
#include "phasemap/steer/result.hpp"
#include "phasemap/store/store.hpp"

namespace phasemap::plan {

using report::Inputs;
using report::LayerProfile;

namespace {

// A control-audit / monitor-eval document read as its type: a missing or mistyped field is one
// error naming the file (or DB entry) and the field.
template <class From>
auto steer_result(const nlohmann::json& j, const std::string& source, From from) {
    try {
        return from(j);
    } catch (const steer::JsonError& e) {
        throw ReportError(fmt::format("{}: {}", source, e.what()));
    }
}

nlohmann::json read_json(const std::string& path) {
    try {
        return io::read_json_file(path, "JSON file");
    } catch (const std::runtime_error& e) {
        throw ReportError(e.what());
    }
}

// --regime-cuts a,b,c or @FILE: metrics' one cut-point parser (strict: three ascending numbers).
metrics::RegimeCuts parse_cuts(const std::string& spec) {
    std::string s = spec;
    if (!s.empty() && s[0] == '@') {
        s = io::read_input_file(s.substr(1), "regime cut-point file");
        while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    }
    try {
        return metrics::parse_regime_cuts(s);
    } catch (const metrics::MetricError& e) {
        throw ReportOptionError(fmt::format("--regime-cuts: {}", e.what()));
    }
}

// Token series for the trajectories section, read from the DB's tokens table: at most
// --max-series runs, an even spread over the ratio_norm order, each turned into the per-run
// summary layout the report reads (token_axis, per_token, model_id, category).
void add_db_series(const ReportRequest& c, Inputs& in) {
    std::vector<const PanelRun*> runs;
    for (const auto& r : in.panel->runs) runs.push_back(&r);
    auto rn = [](const PanelRun* r) {
        auto it = r->metrics.find("ratio_norm");
        return it == r->metrics.end() ? std::nan("") : it->second;
    };
    std::stable_sort(runs.begin(), runs.end(), [&](const PanelRun* a, const PanelRun* b) {
        const double x = rn(a), y = rn(b);
        if (std::isfinite(x) != std::isfinite(y)) return std::isfinite(x);
        return x < y;
    });
    std::vector<const PanelRun*> pick;
    const size_t n = runs.size(), k = std::min(n, std::max<size_t>(c.opt.max_series, 1));
    for (size_t j = 0; j < k; ++j) pick.push_back(runs[k == 1 ? 0 : j * (n - 1) / (k - 1)]);
    std::vector<std::string> ids;
    for (const auto* r : pick) ids.push_back(r->run_id);
    std::vector<store::Store::TokenSeries> series;
    try {
        series = store::Store::open(c.db, {.read_only = true})->token_series(ids);
    } catch (const std::exception& e) {
        throw ReportError(e.what());
    }
    auto nums = [](const std::vector<double>& v) {
        std::vector<double> a;
        for (double x : v) a.push_back(std::isfinite(x) ? x : std::nan(""));
        return a;
    };
    auto texts = [](const std::vector<std::string>& v) { return std::vector<std::optional<std::string>>(v.begin(), v.end()); };
    for (const auto& ts : series) {
        const PanelRun* r = *std::find_if(pick.begin(), pick.end(), [&](const PanelRun* p) { return p->run_id == ts.run_id; });
        const double ratio = rn(r);
        io::SummaryRecord s;
        s.model_id = r->model;
        s.category = r->category;
        s.generated_tokens = static_cast<int64_t>(ts.ct_t.size());
        s.ratio_norm = std::isfinite(ratio) ? ratio : std::nan("");
        s.regime = r->regime;
        s.token = texts(ts.token);
        s.delta_t = nums(ts.delta_t);
        s.curvature_t = nums(ts.curvature_t);
        s.ct_t = nums(ts.ct_t);
        s.output_state = texts(ts.output_state);
        in.runs.push_back(std::move(s));
        in.run_sources.push_back(ts.run_id.substr(0, 12));
    }
}

// Layer profiles over depth: per model × layer quartiles of the token_layers values (aggregated
// by the store in SQL, runs of the most common normalisation mode).
void add_db_layer_profiles(const ReportRequest& c, Inputs& in) {
    std::vector<store::Store::LayerProfileRow> rows;
    try {
        rows = store::Store::open(c.db, {.read_only = true})->layer_profiles();
    } catch (const std::exception& e) {
        throw ReportError(e.what());
    }
    in.layer_profiles_source = c.db;
    auto stat = [](const store::Store::Quartiles& q) { return LayerProfile::Stat{q.median, q.q1, q.q3, q.n}; };
    for (const auto& r : rows)
        in.layer_profiles.push_back({.model = r.model, .layer = r.layer, .norm = r.norm, .depth = r.depth, .runs = r.runs,
                                     .speed = stat(r.speed), .turning_angle_rad = stat(r.turning_angle_rad), .ct_t = stat(r.ct_t)});
}

// The panel of a results DB and every audit section computed on it (the audit library's JSON).
void load_db(const ReportRequest& c, Inputs& in) {
    try {
        in.panel = store::load_panel_table(c.db);
    } catch (const std::exception& e) {
        throw ReportError(e.what());
    }
    in.panel_source = c.db;
    add_db_series(c, in);
    add_db_layer_profiles(c, in);
    if (in.audit) return;  // --audit-json given
    // Sections stored by `phasemap audit DB` come first (with the options they were run with).
    std::vector<store::AuditEntry> stored;
    try {
        stored = store::Store::open(c.db, {.read_only = true})->audits("audit");
    } catch (const std::exception& e) {
        throw ReportError(e.what());
    }
    audit::AuditResult a;
    a.source = c.db;
    a.panel_models = in.panel->models.size();
    a.panel_runs = in.panel->runs.size();
    std::map<std::string, size_t> have;   // section name → index in a.sections
    std::string stored_names;
    try {
        for (const auto& e : stored) {
            audit::AuditSection sec = audit::audit_section_from_json(e.name, e.data);
            if (have.count(e.name)) a.sections[have[e.name]] = std::move(sec);
            else have[e.name] = a.sections.size(), a.sections.push_back(std::move(sec));
            stored_names += (stored_names.empty() ? "" : ", ") + e.name;
        }
        if (!stored.empty()) a.options = audit::options_from_json(stored.front().options);
    } catch (const audit::JsonError& e) {
        throw ReportError(fmt::format("{}: stored audit: {}", c.db, e.what()));
    }
    // Sections not stored are computed here with default options, like `phasemap audit DB`.
    audit::Options o;
    if (c.opt.regime_cuts) o.cuts = *c.opt.regime_cuts;
    std::optional<audit::HypothesisFile> hyp;
    if (!c.hypotheses.empty() && !have.count("hypotheses")) {
        try {
            hyp = audit::load_hypotheses(c.hypotheses);
        } catch (const std::exception& e) {
            throw ReportError(e.what());
        }
    }
    std::string computed_names;
    for (const auto& name : audit::section_names()) {
        if (have.count(name) || (name == "hypotheses" && !hyp)) continue;
        a.sections.push_back(audit::run_section(name, *in.panel, o, hyp ? &*hyp : nullptr).section);
        computed_names += (computed_names.empty() ? "" : ", ") + name;
    }
    if (stored.empty()) a.options = o;
    in.audit = std::move(a);
    if (stored.empty()) in.audit_source = c.db + " (no stored audit: computed with default options)";
    else
        in.audit_source = fmt::format("{} (audit stored {} by {}: {}{})", c.db, stored.front().created_at,
                                      stored.front().phasemap_version, stored_names,
                                      computed_names.empty() ? "" : "; computed here with default options: " + computed_names);
}

// Control-audit and monitor-eval results stored in the DB (`control-audit --db`,
// `monitor-eval --db`), each kind only when no JSON of that kind was given.
void add_db_results(const ReportRequest& c, Inputs& in) {
    const bool control = c.control_json.empty(), monitor = c.monitor_json.empty();
    if (!control && !monitor) return;
    std::vector<store::AuditEntry> entries;
    try {
        const auto db = store::Store::open(c.db, {.read_only = true});
        if (control) entries = db->audits("control_audit");
        if (monitor)
            for (auto& e : db->audits("monitor_eval")) entries.push_back(std::move(e));
    } catch (const std::exception& e) {
        throw ReportError(e.what());
    }
    const std::string file = std::filesystem::path(c.db).filename().string();
    for (const auto& e : entries) {
        std::string name = e.name;
        std::replace(name.begin(), name.end(), '/', '_');
        const std::string source = fmt::format("{} › {}", file, name);
        if (e.kind == "control_audit") in.control_audit.push_back(steer_result(e.data, source, steer::control_audit_from_json));
        else in.monitor.push_back(steer_result(e.data, source, steer::monitor_eval_from_json));
        (e.kind == "control_audit" ? in.control_sources : in.monitor_sources).push_back(source);
    }
}

}  // namespace

ReportResult write_report(const ReportRequest& req) {
    ReportRequest c = req;
    if (c.db.empty() && c.panel_json.empty() && c.runs_json.empty() && c.audit_json.empty())
        throw ReportOptionError("nothing to report: give a results DB, --panel-json, --runs-json and/or --audit-json");
    if (c.opt.max_points < 2) throw ReportOptionError("--max-points must be at least 2");
    // The CLI's flag checks them first (options.hpp); other callers get the same domain here.
    if (const std::string p = opt::domain_problem(static_cast<double>(c.opt.bootstrap), opt::kResamples); !p.empty())
        throw ReportOptionError("--bootstrap: " + p);
    if (!c.db.empty() && !c.panel_json.empty()) throw ReportOptionError("give either a results DB or --panel-json, not both");
    {
        std::vector<std::filesystem::path> inputs{c.db, c.hypotheses, c.panel_json, c.audit_json};
        for (const auto* v : {&c.runs_json, &c.control_json, &c.monitor_json}) inputs.insert(inputs.end(), v->begin(), v->end());
        if (!c.regime_cuts.empty() && c.regime_cuts[0] == '@') inputs.push_back(c.regime_cuts.substr(1));
        io::check_output_path(c.out, inputs, "-o");
    }
    Inputs in;
    if (!c.panel_json.empty()) {
        try {
            in.panel = report::panel_from_json(read_json(c.panel_json));
        } catch (const std::runtime_error& e) {
            throw ReportError(fmt::format("{}: {}", c.panel_json, e.what()));
        }
        in.panel_source = c.panel_json;
    }
    if (!c.audit_json.empty()) {
        const nlohmann::json j = read_json(c.audit_json);
        try {
            in.audit = audit::audit_result_from_json(j);
        } catch (const audit::JsonError& e) {
            throw ReportError(fmt::format("{}: {} (expected the output of `phasemap audit --json`)", c.audit_json, e.what()));
        }
        in.audit_source = c.audit_json;
    }
    for (const auto& p : c.runs_json) {
        const nlohmann::json j = read_json(p);
        try {
            in.runs.push_back(io::summary_record_from_json(j));
        } catch (const std::runtime_error& e) {
            throw ReportError(fmt::format("{}: {}", p, e.what()));
        }
        in.run_sources.push_back(p);
    }
    for (const auto& p : c.control_json)
        in.control_audit.push_back(steer_result(read_json(p), p, steer::control_audit_from_json)), in.control_sources.push_back(p);
    for (const auto& p : c.monitor_json)
        in.monitor.push_back(steer_result(read_json(p), p, steer::monitor_eval_from_json)), in.monitor_sources.push_back(p);
    if (!c.regime_cuts.empty()) c.opt.regime_cuts = parse_cuts(c.regime_cuts);
    if (!c.db.empty()) load_db(c, in);
    if (!c.db.empty()) add_db_results(c, in);

    const nlohmann::json data = report::build_data(in, c.opt);
    const std::string page = report::render_html(data);
    io::write_file_atomic(c.out, page);
    ReportResult r{.bytes = page.size(), .figures = {}};
    if (!c.svg_dir.empty() || !c.png_dir.empty())
        r.figures = report::export_figures(data, c.svg_dir.empty() ? std::nullopt : std::optional<std::filesystem::path>(c.svg_dir),
                                   c.png_dir.empty() ? std::nullopt : std::optional<std::filesystem::path>(c.png_dir));
    return r;
}

}  // namespace phasemap::plan
