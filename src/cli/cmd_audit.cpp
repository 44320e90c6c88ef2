// `phasemap audit DB`: the panel audits of issue 5 (docs/audit.md) over a results DB (or a
// PanelTable JSON dump), printed as tables, written back into the DB (Store::put_audits) and
// optionally written as one JSON document.
#include <fmt/core.h>

#include <cmath>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "phasemap/audit/report.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/store/store.hpp"
#include "phasemap/capture/version.hpp"
#include "cli_util.hpp"
#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/registry.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct AuditCmd {
    std::string db, panel_json, hypotheses, json_out;
    std::vector<std::string> sections;
    audit::Options opt;
    bool quiet = false, no_store = false;
};

PanelTable load_panel(const AuditCmd& c) {
    if (c.db.empty() == c.panel_json.empty())
        throw UserError("audit: give either a results DB or --panel-json FILE (exactly one)");
    if (!c.db.empty()) {
        try {
            return store::load_panel_table(c.db);
        } catch (const std::exception& e) {
            throw UserError(e.what());
        }
    }
    nlohmann::json j;
    try {
        j = io::read_json_file(c.panel_json, "--panel-json file");
    } catch (const std::exception& e) {
        throw UserError(e.what());
    }
    try {
        return j.get<PanelTable>();
    } catch (const std::exception& e) {
        throw UserError("audit: " + c.panel_json + " is not a PanelTable JSON: " + e.what());
    }
}

int run_audit(AuditCmd& c) {
    try {
        c.opt.validate();
    } catch (const std::exception& e) {
        throw UserError(e.what());
    }
    if (!c.opt.norm.empty() && !metrics::parse_norm_mode(c.opt.norm))
        throw UserError(fmt::format("--norm '{}': unknown normalisation (use raw or clipped_mad)", c.opt.norm));
    if (!c.json_out.empty()) check_output(c.json_out, {c.db, c.panel_json, c.hypotheses}, "--json");
    std::vector<std::string> sections = c.sections.empty() ? audit::section_names() : c.sections;
    for (const auto& s : sections)
        if (std::find(audit::section_names().begin(), audit::section_names().end(), s) == audit::section_names().end()) {
            std::string list;
            for (const auto& n : audit::section_names()) list += (list.empty() ? "" : ", ") + n;
            throw UserError("audit: unknown section \"" + s + "\" (sections: " + list + ")");
        }
    std::optional<audit::HypothesisFile> hyp;
    if (!c.hypotheses.empty()) {
        try {
            hyp = audit::load_hypotheses(c.hypotheses);
        } catch (const std::exception& e) {
            throw UserError(e.what());
        }
    } else if (!c.sections.empty() &&
               std::find(c.sections.begin(), c.sections.end(), "hypotheses") != c.sections.end()) {
        throw UserError("audit: --section hypotheses needs --hypotheses FILE");
    }
    const PanelTable panel = load_panel(c);
    // A routing metric (docs/metrics-moe.md) on a panel without MoE routing: one clear message.
    {
        const std::string& mn = c.opt.metric;
        const metrics::MetricInfo* mi = metrics::find_metric(mn.rfind("median_", 0) == 0 ? mn.substr(7) : mn);
        if (mi && mi->axis == metrics::Axis::routing &&
            std::none_of(panel.runs.begin(), panel.runs.end(), [&](const PanelRun& r) {
                const auto it = r.metrics.find(mn);
                return it != r.metrics.end() && std::isfinite(it->second);
            }))
            throw UserError(fmt::format("audit --metric {}: no run in the panel has MoE routing (a dense model has no router; "
                                        "routing metrics need runs of an MoE model captured with routing)", mn));
    }
    // A hypotheses file whose models and families are all absent from the panel gives n = 0
    // everywhere: say so (once, on stderr) instead of printing a table of empty verdicts.
    if (hyp) {
        std::set<std::string> named, have;
        for (const auto& h : hyp->hypotheses) {
            named.insert(h.a.begin(), h.a.end());
            named.insert(h.b.begin(), h.b.end());
            if (!h.model.empty()) named.insert(h.model);
        }
        for (const auto& m : panel.models) {
            have.insert(m.label);
            if (!m.family.empty()) have.insert(m.family);
        }
        if (!named.empty() && std::none_of(named.begin(), named.end(), [&](const std::string& n) { return have.count(n) > 0; })) {
            std::string list, labels;
            for (const auto& n : named) list += (list.empty() ? "" : ", ") + n;
            for (const auto& m : panel.models) labels += (labels.empty() ? "" : ", ") + m.label;
            fmt::print(stderr, "phasemap: warning: no model or family that {} names ({}) is in the panel (models: {}); its hypotheses have no data\n",
                       c.hypotheses, list, labels.empty() ? "none" : labels);
        }
    }
    audit::AuditResult out;
    out.phasemap_version = version_string();
    out.source = c.db.empty() ? c.panel_json : c.db;
    out.options = c.opt;
    out.panel_models = panel.models.size();
    out.panel_runs = panel.runs.size();
    const nlohmann::json options = audit::options_json(c.opt);
    if (!c.quiet) fmt::print("phasemap audit: {} models, {} runs\n\n", panel.models.size(), panel.runs.size());
    std::vector<store::AuditEntry> entries;
    for (const auto& s : sections) {
        if (s == "hypotheses" && !hyp && c.sections.empty()) continue;   // not asked for
        const auto r = audit::run_section(s, panel, c.opt, hyp ? &*hyp : nullptr);
        out.sections.push_back(r.section);
        if (!c.quiet) fmt::print("{}\n", r.table);
        entries.push_back({.kind = "audit", .name = s, .ok = r.ok, .reason = r.reason, .options = options,
                           .data = r.data, .source = c.hypotheses.empty() ? std::string() : "hypotheses: " + c.hypotheses});
    }
    // Results go back into the DB they were computed from (audits, audit_values, audit_<section>_*).
    if (!c.db.empty() && !c.no_store) {
        try {
            store::Store::open(c.db)->put_audits(entries);
        } catch (const std::exception& e) {
            throw UserError(std::string(e.what()) + " (the audit ran; --no-store skips writing it back)");
        }
        if (!c.quiet) fmt::print("audit: {} sections stored in {}\n", entries.size(), c.db);
    }
    if (!c.json_out.empty()) {
        try {
            io::write_file_atomic(c.json_out, to_json(out).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
        } catch (const std::exception& e) {
            throw UserError(e.what());
        }
    }
    return 0;
}

Verb reg{"audit", "Panel audits: regimes, normalisation, variance, topology, hypotheses, cycles, robustness, variants, controls",
         [](CLI::App& app) {
             auto c = std::make_shared<AuditCmd>();
             app.add_option("db", c->db, "results DB (phasemap panel)");
             app.add_option("--panel-json", c->panel_json, "read the panel from a PanelTable JSON dump instead of a DB")->check(kPath);
             app.add_option("--section", c->sections, "run only these sections (repeatable): regime, normalisation, "
                                                      "variance, topology, hypotheses, cycles, robustness, variants, controls");
             app.add_option("--hypotheses", c->hypotheses, "TOML file of hypotheses (falsification registry)")->check(kPath);
             app.add_option("--json", c->json_out, "write every section's results as one JSON file")->check(kPath);
             app.add_option("--metric", c->opt.metric, "run metric of the variance decomposition, topology and rankings")
                 ->capture_default_str();
             app.add_option("--factor", c->opt.factor, "factor of the variance decomposition: model or family")
                 ->capture_default_str()->check(one_of({"model", "family"}));
             app.add_option("--norm", c->opt.norm, "normalisation mode of the runs to audit (default: the most common)");
             app.add_option("--bootstrap", c->opt.bootstrap, "bootstrap resamples")->capture_default_str()->check(in(opt::kResamples));
             app.add_option("--reml-bootstrap", c->opt.reml_bootstrap, "bootstrap resamples of the REML components")
                 ->capture_default_str()->check(in(opt::kResamples));
             app.add_option("--permutations", c->opt.permutations, "permutations per effect")->capture_default_str()->check(in(opt::kResamples));
             app.add_option("--seed", c->opt.seed, "seed of every bootstrap, permutation and split")->capture_default_str();
             app.add_option("--robust-share", c->opt.robust_share, "MNN share that makes a topology pair robust")
                 ->capture_default_str()->check(in(opt::kProbability));
             app.add_flag("-q,--quiet", c->quiet, "print nothing (use with --json)");
             app.add_flag("--no-store", c->no_store, "do not write the results back into the DB (audit tables)");
             return [c] { return run_audit(*c); };
         }};

}  // namespace
}  // namespace phasemap::cli
