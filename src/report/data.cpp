// build_data(): everything the page shows, as one JSON document. Figure data is shaped for the
// Vega-Lite specs in src/report/assets/report.js; tables are {title, columns, rows}; a section whose inputs
// are absent carries a note that says so. gather() reads the inputs once (cut-points, models, runs,
// audit sections); each page section is one function, called in page order from kSections.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <functional>
#include <map>
#include <set>

#include "phasemap/audit/audit.hpp"
#include "phasemap/metrics/registry.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/report/report.hpp"
#include "phasemap/stats/bootstrap.hpp"
#include "phasemap/stats/cluster.hpp"
#include "phasemap/stats/descriptive.hpp"
#include "phasemap/steer/result.hpp"

namespace phasemap::report {

using nlohmann::json;

namespace {

const std::vector<std::string> kLayerMetrics = {"mean_speed", "speed_cv", "mean_turning_angle_rad", "tortuosity",
                                                "path_length", "mean_acceleration", "displacement"};
const std::vector<std::string> kSeries = {"ct_t", "delta_t", "curvature_t"};
// Per-layer metrics of the layer-depth figure (token_layers), with their facet titles.
const std::vector<std::pair<std::string, LayerProfile::Stat LayerProfile::*>> kDepthMetrics = {
    {"speed into the layer", &LayerProfile::speed},
    {"turning angle at the layer (rad)", &LayerProfile::turning_angle_rad},
    {"ct_t at the layer (token axis)", &LayerProfile::ct_t}};

const double kNaN = std::numeric_limits<double>::quiet_NaN();

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

double to_double(const json& v) {
    if (v.is_number()) return v.get<double>();
    if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
    return std::numeric_limits<double>::quiet_NaN();
}

std::string str(const json& j, const char* key, const std::string& def = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    if (it->is_string()) return it->get<std::string>();
    return it->dump();
}

std::string regime_of(double r, const metrics::RegimeCuts& cuts) {
    if (!std::isfinite(r)) return "";
    return std::string(metrics::to_string(metrics::classify_regime(r, cuts)));
}

// A scalar for a table cell; nested values become compact JSON text.
json scalar_text(const json& v);

// A cell of a generic result table: a scalar as it is; a structured value as scalar_text (items
// joined by ", ", "key = value" pairs — never JSON text), cut at 200 characters.
json cell(const json& v) {
    if (v.is_primitive()) return v;
    const json t = scalar_text(v);
    if (!t.is_string()) return t;
    std::string s = t.get<std::string>();
    if (s.size() > 200) s = s.substr(0, 197) + "...";
    return s;
}

json table(const std::string& title, std::vector<std::string> columns, json rows, const std::string& empty = "") {
    json t{{"kind", "table"}, {"title", title}, {"columns", columns}, {"rows", std::move(rows)}};
    if (!empty.empty()) t["empty"] = empty;
    return t;
}
// The first `max` values joined by ", ", then "… (N values)" when there are more.
std::string join_first(const std::set<std::string>& vs, size_t max) {
    std::string joined;
    size_t c = 0;
    for (const auto& v : vs) {
        if (c++ == max) {
            joined += fmt::format(", … ({} values)", vs.size());
            break;
        }
        joined += (joined.empty() ? "" : ", ") + v;
    }
    return joined;
}
json note(const std::string& text) { return {{"kind", "note"}, {"text", text}}; }
json figure(const std::string& id, const std::string& caption = "") {
    json f{{"kind", "figure"}, {"id", id}};
    if (!caption.empty()) f["caption"] = caption;
    return f;
}

// Generic JSON → tables: an array of objects is one table (union of keys as columns); an object
// of scalars is a key/value table; nested objects recurse with their key in the title.
void to_tables(const std::string& title, const json& j, json& items, int depth = 0) {
    constexpr size_t kMaxRows = 2000;
    if (j.is_array() && !j.empty() && std::all_of(j.begin(), j.end(), [](const json& x) { return x.is_object(); })) {
        std::vector<std::string> cols;
        for (const auto& r : j)
            for (const auto& [k, v] : r.items())
                if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
        json rows = json::array();
        for (const auto& r : j) {
            if (rows.size() >= kMaxRows) break;
            json row = json::array();
            for (const auto& c : cols) row.push_back(r.contains(c) ? cell(r[c]) : json(nullptr));
            rows.push_back(row);
        }
        json t = table(title, cols, rows);
        if (j.size() > kMaxRows) t["note"] = fmt::format("first {} of {} rows", kMaxRows, j.size());
        items.push_back(t);
        return;
    }
    if (j.is_object()) {
        json rows = json::array();
        std::vector<std::pair<std::string, const json*>> nested;
        for (const auto& [k, v] : j.items()) {
            if (depth < 3 && (v.is_object() || (v.is_array() && !v.empty() && v.front().is_object())))
                nested.push_back({k, &v});
            else
                rows.push_back(json::array({k, cell(v)}));
        }
        if (!rows.empty()) items.push_back(table(title, {"field", "value"}, rows));
        for (const auto& [k, v] : nested) to_tables(title + " › " + k, *v, items, depth + 1);
        return;
    }
    items.push_back(table(title, {"value"}, json::array({json::array({cell(j)})})));
}

// Run record shared by panel runs and per-run summaries.
struct RunRec {
    std::string id, model, family, category, regime, source, norm;
    double ratio_norm = std::numeric_limits<double>::quiet_NaN();
    double temperature = std::numeric_limits<double>::quiet_NaN();
    int64_t n_generated = 0;
};

std::string family_or_none(const std::string& f) { return f.empty() ? "(no family)" : f; }

struct ModelRec {
    std::string label, family, architecture, sha256, variant_of;
    json covariates = json::object();
};

// Model and family of a per-run summary (phasemap's provenance, or LIMEN's top-level model_id).
ModelRec model_of_summary(const io::SummaryRecord& s) {
    ModelRec m;
    m.label = s.model_id;
    if (m.label.empty()) m.label = s.model.name;
    if (m.label.empty()) m.label = s.model.file;
    if (m.label.empty()) m.label = "(unnamed model)";
    m.sha256 = s.model_sha256.value_or(s.model.sha256);
    m.architecture = s.model.architecture;
    m.family = s.family;
    return m;
}

json scalar_text(const json& v);

// Every setting behind the runs: provenance and options flattened to key paths, with the
// distinct values seen (per-token texts and the generated text are left out).
void flatten(const std::string& prefix, const json& j, std::map<std::string, std::set<std::string>>& out) {
    static const std::set<std::string> skip = {"generated_text", "token_texts", "tokens", "prompt_text", "prompt_tokens",
                                               "per_token", "layers"};
    if (j.is_object()) {
        for (const auto& [k, v] : j.items())
            if (!skip.count(k)) flatten(prefix.empty() ? k : prefix + "." + k, v, out);
        return;
    }
    const json c = scalar_text(j);
    std::string v = c.is_string() ? c.get<std::string>() : c.dump();
    if (v.size() > 160) v = v.substr(0, 157) + "...";
    out[prefix].insert(v);
}

std::string utc_now() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string fmt3(double v) { return std::isfinite(v) ? fmt::format("{:.3f}", v) : "—"; }
std::string norm_name(const std::string& n) { return n.empty() ? "(unset)" : n; }
// A table cell for a value that may be structured: scalars as they are, an array as its items
// joined by ", ", an object as "key = value" pairs — never JSON text.
json scalar_text(const json& v) {
    if (v.is_primitive()) return v;
    std::string t;
    if (v.is_array()) {
        for (const auto& x : v) {
            const json c = scalar_text(x);
            t += (t.empty() ? "" : ", ") + (c.is_string() ? c.get<std::string>() : c.dump());
        }
        return t;
    }
    for (const auto& [k, x] : v.items()) {
        const json c = scalar_text(x);
        t += (t.empty() ? "" : ", ") + k + " = " + (c.is_string() ? c.get<std::string>() : c.dump());
    }
    return t;
}
json covariates_text(const json& c) { return c.empty() ? json(nullptr) : scalar_text(c); }
// "lo – hi" for an interval, or null when it has no finite bound.
json ci_text(double lo, double hi) {
    if (!std::isfinite(lo) && !std::isfinite(hi)) return nullptr;
    return fmt::format("{} – {}", std::isfinite(lo) ? fmt::format("{:.4g}", lo) : "?", std::isfinite(hi) ? fmt::format("{:.4g}", hi) : "?");
}
json ci_text(const audit::Interval& i) { return ci_text(i.lo, i.hi); }

// Paired Δs of the control audit drawn in its figure (the `delta_<measure>` rows of its
// summary_rows), in facet order: dynamics first, then the semantic measures.
const std::vector<std::string> kControlMeasures = {"ratio_norm", "mean_ct", "late_ct", "rate_COLLAPSE", "mean_entropy",
                                                   "accuracy", "exact_match"};
// Per-arm rates of the monitor evaluation drawn in its figure.
const std::vector<std::string> kMonitorMeasures = {"accuracy", "trigger_rate", "insertion_rate"};

std::string source_label(const std::string& source) { return std::filesystem::path(source).filename().string(); }

// Figure rows from the summary rows (arm, measure, n, mean, ci_low, ci_high; steer::summary_rows)
// of control-audit or monitor-eval results: one row per result × arm × measure kept by `keep`
// (which returns the facet name, or "" to leave the row out). With several results the row label
// names the result.
template <class Result>
json result_rows(const std::vector<Result>& results, const std::vector<std::string>& sources,
                 const std::function<std::string(const std::string& arm, const std::string& measure)>& keep, json& labels) {
    json rows = json::array();
    labels = json::array();
    for (size_t i = 0; i < results.size(); ++i) {
        const std::string src = source_label(sources[i]);
        for (const steer::SummaryRow& r : steer::summary_rows(results[i])) {
            const std::string facet = keep(r.arm, r.measure);
            if (facet.empty() || !std::isfinite(r.mean)) continue;
            const std::string label = results.size() > 1 ? src + " · " + r.arm : r.arm;
            if (std::find(labels.begin(), labels.end(), json(label)) == labels.end()) labels.push_back(label);
            rows.push_back({{"result", src}, {"arm", r.arm}, {"label", label}, {"measure", facet}, {"mean", r.mean},
                            {"ci_low", num(r.ci_low)}, {"ci_high", num(r.ci_high)}, {"n", r.n}});
        }
    }
    return rows;
}

// One kind of steer result in the audits section: its figure data (d[key]: rows, measures, labels),
// then the figure (or a note when there is no result) and each result's document as tables.
template <class Result>
void result_items(const std::vector<Result>& results, const std::vector<std::string>& sources, const char* key, json rows,
                  json measures, json labels, json figure_item, const std::string& missing, const std::string& table_title,
                  json& d, json& items) {
    if (!rows.empty()) d[key] = {{"rows", std::move(rows)}, {"measures", std::move(measures)}, {"labels", std::move(labels)}};
    items.push_back(results.empty() ? note(missing) : std::move(figure_item));
    for (size_t i = 0; i < results.size(); ++i) to_tables(table_title + source_label(sources[i]), steer::to_json(results[i]), items);
}

// The control audit: the paired Δs vs the baseline twin of kControlMeasures.
void control_audit_items(const Inputs& in, json& d, json& items) {
    json labels;
    json rows = result_rows(in.control_audit, in.control_sources, [](const std::string& arm, const std::string& m) {
        if (arm == "baseline" || m.rfind("delta_", 0) != 0) return std::string();
        const std::string base = m.substr(6);
        return std::find(kControlMeasures.begin(), kControlMeasures.end(), base) == kControlMeasures.end() ? std::string() : "Δ " + base;
    }, labels);
    json measures = json::array();
    for (const auto& m : kControlMeasures)
        if (std::any_of(rows.begin(), rows.end(), [&](const json& r) { return r["measure"] == "Δ " + m; })) measures.push_back("Δ " + m);
    result_items(in.control_audit, in.control_sources, "control", std::move(rows), std::move(measures), std::move(labels),
                 figure("control-audit", "Paired Δ vs the baseline twin per prompt (mean over prompts, 95 % percentile-bootstrap "
                                         "CI): the intervention beside its random-direction and zero-strength controls. "
                                         "The dashed line is no change."),
                 "No control-audit results (pass --control-json, or a results DB written by `control-audit --db`).", "control audit: ", d,
                 items);
}

// The monitor evaluation: per arm the rates of kMonitorMeasures.
void monitor_eval_items(const Inputs& in, json& d, json& items) {
    json labels;
    json rows = result_rows(in.monitor, in.monitor_sources, [](const std::string&, const std::string& m) {
        return std::find(kMonitorMeasures.begin(), kMonitorMeasures.end(), m) == kMonitorMeasures.end() ? std::string() : m;
    }, labels);
    result_items(in.monitor, in.monitor_sources, "monitor", std::move(rows), kMonitorMeasures, std::move(labels),
                 figure("monitor-arms", "Per arm: accuracy on the labelled prompts, the share of runs where a trigger "
                                        "fired and the share with guard text inserted (mean, 95 % percentile-bootstrap CI)."),
                 "No monitor-arm results (pass --monitor-json, or a results DB written by `monitor-eval --db`).", "monitor arms: ", d, items);
}

}  // namespace

PanelTable panel_from_json(const json& j) {
    if (!j.is_object() || !j.contains("runs") || !j["runs"].is_array())
        throw std::runtime_error("panel JSON: expected an object with a \"runs\" array");
    PanelTable t;
    for (const auto& m : j.value("models", json::array())) {
        PanelModel pm;
        pm.label = str(m, "label");
        pm.family = str(m, "family");
        pm.architecture = str(m, "architecture");
        pm.sha256 = str(m, "sha256");
        if (m.contains("variant_of") && m["variant_of"].is_string()) pm.variant_of = m["variant_of"].get<std::string>();
        const json cov = m.value("covariates", json::object());
        for (const auto& [k, v] : cov.items()) pm.covariates[k] = to_double(v);
        t.models.push_back(std::move(pm));
    }
    for (const auto& r : j["runs"]) {
        if (!r.is_object()) throw std::runtime_error("panel JSON: a run is not an object");
        PanelRun pr;
        pr.run_id = str(r, "run_id");
        pr.model = str(r, "model");
        pr.category = str(r, "category");
        pr.prompt = str(r, "prompt");
        pr.temperature = to_double(r.value("temperature", json(0.0)));
        pr.n_predict = r.value("n_predict", int64_t{0});
        pr.seed = r.value("seed", uint64_t{0});
        pr.n_generated = r.value("n_generated", int64_t{0});
        pr.text = str(r, "text");
        const json metrics = r.value("metrics", json::object());
        for (const auto& [k, v] : metrics.items()) pr.metrics[k] = to_double(v);
        pr.regime = str(r, "regime");
        pr.norm = str(r, "norm");
        t.runs.push_back(std::move(pr));
    }
    return t;
}

namespace {

// ------------------------------------------------------------------ what every section reads

// Gathered once from the inputs: the cut-points in use, models and runs (panel runs, else the
// per-run summaries'), the per-run summaries' run records, the per-run layer rows, and the audit
// sections found in the audit JSON.
struct Context {
    const Inputs& in;
    const Options& opt;
    metrics::RegimeCuts cuts;
    std::array<double, 3> cut_values{};
    std::string cuts_from;
    std::vector<ModelRec> models;
    std::vector<RunRec> runs;
    std::map<std::string, size_t> model_index;
    std::vector<RunRec> summary_runs;   // one per Inputs::runs entry
    json layer_rows = json::array();    // model, family, metric, value (per-run medians)
    std::string layer_from;
    std::vector<const audit::AuditSection*> secs;     // the audit's sections (empty without an audit)
    // One normalisation mode at a time: the modes of the runs (sorted; {""} without a panel), the
    // one shown first (the audit's regime section's, else the most common), and per mode the run
    // set the audit's sections use (audit::distinct_runs: identical greedy generations merged,
    // shorter-budget prefixes analysed through the longer run).
    std::vector<std::string> norms;
    std::string norm;
    std::map<std::string, std::vector<RunRec>> unit_runs;
};

Context gather(const Inputs& in, const Options& opt, json& d) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Context c{in, opt};
    auto& models = c.models;
    auto& runs = c.runs;
    auto& model_index = c.model_index;
    auto& summary_runs = c.summary_runs;
    auto& layer_rows = c.layer_rows;
    auto& layer_from = c.layer_from;
    auto& secs = c.secs;

    // ------------------------------------------------------------ cut-points in use
    std::optional<metrics::RegimeCuts> cuts_in = opt.regime_cuts;
    std::string cuts_from = "--regime-cuts";
    if (!cuts_in)
        for (size_t i = 0; i < in.runs.size() && !cuts_in; ++i) {
            if (!in.runs[i].regime_cuts) continue;
            try {
                cuts_in = metrics::parse_regime_cuts(*in.runs[i].regime_cuts);
            } catch (const metrics::MetricError& e) {
                throw std::runtime_error(fmt::format("{}: options.regime_cuts: {}", in.run_sources[i], e.what()));
            }
            cuts_from = "the runs' options";
        }
    if (!cuts_in && in.audit) {
        const metrics::RegimeCuts rc = in.audit->options.cuts;
        try {
            rc.validate();
        } catch (const metrics::MetricError& e) {
            throw std::runtime_error(fmt::format("{}: options.regime_cuts: {}", in.audit_source, e.what()));
        }
        cuts_in = rc, cuts_from = "the audit";
    }
    if (!cuts_in) cuts_in = metrics::RegimeCuts{}, cuts_from = "METRICS.md §2.7 defaults";
    c.cuts = *cuts_in;
    c.cuts_from = cuts_from;
    const metrics::RegimeCuts& cuts = c.cuts;
    c.cut_values = {cuts.underactive_below, cuts.adaptive_below, cuts.transition_below};
    d["cuts"] = c.cut_values;

    // ------------------------------------------------------------ models and runs
    auto add_model = [&](const ModelRec& m) {
        if (!model_index.count(m.label)) model_index[m.label] = models.size(), models.push_back(m);
        return model_index[m.label];
    };
    if (in.panel) {
        for (const auto& m : in.panel->models) {
            ModelRec r{m.label, m.family, m.architecture, m.sha256, m.variant_of.value_or(""), json::object()};
            for (const auto& [k, v] : m.covariates) r.covariates[k] = num(v);
            add_model(r);
        }
        for (const auto& pr : in.panel->runs) {
            if (!model_index.count(pr.model)) add_model({pr.model, "", "", "", "", json::object()});
            RunRec r;
            r.id = pr.run_id;
            r.model = pr.model;
            r.family = family_or_none(models[model_index[pr.model]].family);
            r.category = pr.category.empty() ? "(none)" : pr.category;
            auto it = pr.metrics.find("ratio_norm");
            r.ratio_norm = it == pr.metrics.end() ? nan : it->second;
            r.regime = pr.regime.empty() ? regime_of(r.ratio_norm, cuts) : pr.regime;
            r.temperature = pr.temperature;
            r.n_generated = pr.n_generated;
            r.source = "panel";
            r.norm = pr.norm;
            runs.push_back(r);
            for (const auto& lm : kLayerMetrics) {
                auto mt = pr.metrics.find("median_" + lm);
                if (mt != pr.metrics.end() && std::isfinite(mt->second))
                    layer_rows.push_back({{"model", r.model}, {"family", r.family}, {"metric", lm}, {"value", mt->second}});
            }
        }
        if (!layer_rows.empty()) layer_from = "panel (median_<metric> per run)";
    }
    // Per-run summaries: run points when there is no panel; always the token series.
    for (size_t i = 0; i < in.runs.size(); ++i) {
        const io::SummaryRecord& s = in.runs[i];
        ModelRec m = model_of_summary(s);
        RunRec r;
        r.source = in.run_sources[i];
        r.id = std::filesystem::path(r.source).stem().string();
        r.model = m.label;
        r.ratio_norm = s.ratio_norm;
        r.regime = s.regime;
        if (r.regime.empty()) r.regime = regime_of(r.ratio_norm, cuts);
        r.category = s.category.value_or("(none)");
        r.temperature = s.temperature;
        r.n_generated = s.generated_tokens;
        if (!in.panel) {
            r.family = family_or_none(models[add_model(m)].family);
            runs.push_back(r);
            for (const auto& lm : kLayerMetrics) {
                const auto v = s.medians.find("trajectory." + lm);
                if (v != s.medians.end())
                    layer_rows.push_back({{"model", r.model}, {"family", r.family}, {"metric", lm}, {"value", v->second}});
            }
            if (!layer_rows.empty()) layer_from = "per-run summaries (median over tokens per run)";
        } else {
            r.family = model_index.count(r.model) ? family_or_none(models[model_index[r.model]].family) : "(no family)";
        }
        summary_runs.push_back(r);
    }

    // ------------------------------------------------------------ audits
    // In name order (the key order of the document's "sections").
    if (in.audit)
        for (const auto& sec : in.audit->sections) secs.push_back(&sec);
    std::stable_sort(secs.begin(), secs.end(), [](const audit::AuditSection* a, const audit::AuditSection* b) { return a->name < b->name; });

    // ------------------------------------------------------------ normalisation modes and their run sets
    if (in.panel) {
        std::map<std::string, size_t> count;
        for (const auto& r : runs) ++count[r.norm];
        size_t best = 0;
        for (const auto& [k, n] : count) {
            c.norms.push_back(k);
            if (n > best) best = n, c.norm = k;   // as the audit's default: the most common, ties to the first
        }
        for (const audit::AuditSection* sec : secs)
            if (const auto* rt = sec->get<audit::RegimeTable>(); rt && count.count(rt->norm)) c.norm = rt->norm;
        const PanelRun* first = in.panel->runs.data();
        for (const auto& norm : c.norms) {
            auto& v = c.unit_runs[norm];
            const auto units = audit::distinct_runs(*in.panel, norm).runs;
            for (const PanelRun* pr : units) v.push_back(runs[size_t(pr - first)]);
            if (norm != c.norm) continue;
            // The per-run layer summaries of the same run set (each generation once).
            json rows = json::array();
            for (const PanelRun* pr : units)
                for (const auto& lm : kLayerMetrics) {
                    auto mt = pr->metrics.find("median_" + lm);
                    if (mt != pr->metrics.end() && std::isfinite(mt->second))
                        rows.push_back({{"model", pr->model}, {"family", family_or_none(models[model_index[pr->model]].family)},
                                        {"metric", lm}, {"value", mt->second}});
                }
            if (!layer_rows.empty()) {
                layer_rows = rows;
                layer_from = fmt::format("panel (median_<metric> per run, norm = {}, the audit's run set)", norm_name(norm));
            }
        }
    } else {
        c.norms = {""};
        c.unit_runs[""] = runs;
    }
    d["norms"] = c.norms;
    d["norm"] = c.norm;

    json jruns = json::array();
    for (const auto& norm : c.norms)
        for (const auto& r : c.unit_runs.at(norm))
            jruns.push_back({{"id", r.id}, {"model", r.model}, {"family", r.family}, {"category", r.category}, {"norm", r.norm},
                             {"ratio_norm", num(r.ratio_norm)}, {"regime", r.regime}, {"temperature", num(r.temperature)}});
    d["runs"] = jruns;
    json jmodels = json::array();
    for (const auto& m : models)
        jmodels.push_back({{"label", m.label}, {"family", family_or_none(m.family)}, {"architecture", m.architecture}});
    d["models"] = jmodels;
    return c;
}

// ------------------------------------------------------------------ sections, one function each

// Phase map: per-model and per-cell medians with their bootstrap intervals (src/stats), runs.
void phase_section(const Context& c, json& d, json& sections) {
    const auto& opt = c.opt;
    const auto& cuts = c.cuts;
    const auto& cut_values = c.cut_values;
    const auto& cuts_from = c.cuts_from;
    const auto& models = c.models;
    const auto& runs = c.runs;
    const auto& model_index = c.model_index;
    // ------------------------------------------------------------ medians with bootstrap CIs
    // One normalisation mode at a time, on the run set of the audit's sections for that mode.
    json model_stats = json::array(), cell_stats = json::array(), model_rows = json::array();
    size_t models_with_values = 0;
    for (const auto& norm : c.norms) {
        std::map<std::string, std::vector<double>> by_model;
        std::map<std::pair<std::string, std::string>, std::vector<double>> by_cell;
        for (const auto& r : c.unit_runs.at(norm)) {
            if (!std::isfinite(r.ratio_norm)) continue;
            by_model[r.model].push_back(r.ratio_norm);
            by_cell[{r.model, r.category}].push_back(r.ratio_norm);
        }
        models_with_values = std::max(models_with_values, by_model.size());
        // One generator per mode, drawn as the audit's regime section draws (models in label order,
        // then the cells): the same seed gives the same resamples, so a statistic's interval equals
        // the audit's for the same runs.
        stats::Rng rng(stats::derive_seed(opt.seed, audit::kRegimeStream));
        std::map<std::string, stats::BootstrapCi> model_ci;
        for (const auto& [label, v] : by_model)
            model_ci[label] = stats::percentile_bootstrap(v, opt.bootstrap, stats::Statistic::median, rng);
        for (const auto& m : models) {
            auto it = by_model.find(m.label);
            if (it == by_model.end()) continue;
            const stats::BootstrapCi& ci = model_ci[m.label];
            model_stats.push_back({{"model", m.label}, {"family", family_or_none(m.family)}, {"norm", norm}, {"n", it->second.size()},
                                   {"median", num(ci.estimate)}, {"ci_low", num(ci.ci.lo)}, {"ci_high", num(ci.ci.hi)}});
            model_rows.push_back({m.label, family_or_none(m.family), norm_name(norm), it->second.size(), num(ci.estimate),
                                  ci_text(ci.ci.lo, ci.ci.hi), regime_of(ci.estimate, cuts)});
        }
        for (const auto& [key, v] : by_cell) {
            const stats::BootstrapCi ci = stats::percentile_bootstrap(v, opt.bootstrap, stats::Statistic::median, rng);
            const std::string fam = family_or_none(models[model_index.at(key.first)].family);
            cell_stats.push_back({{"model", key.first}, {"category", key.second}, {"family", fam}, {"norm", norm}, {"n", v.size()},
                                  {"median", num(ci.estimate)}, {"ci_low", num(ci.ci.lo)}, {"ci_high", num(ci.ci.hi)},
                                  {"label", fmt3(ci.estimate)}});
        }
    }
    d["model_stats"] = model_stats;
    d["model_category_stats"] = cell_stats;
    std::string runset;
    if (c.in.panel) {
        runset = fmt::format(" One normalisation mode at a time: norm = {}{}; the runs are the audit's statistical units for that mode "
                             "(identical greedy generations counted once, a shorter-budget prefix through its longer run), the run set "
                             "of the audit's regime section.",
                             norm_name(c.norm), c.norms.size() > 1 ? " first (choose another with the selector under the plot)" : "");
    }

    const bool any_ratio = std::any_of(runs.begin(), runs.end(), [](const RunRec& r) { return std::isfinite(r.ratio_norm); });
    {
        json items = json::array();
        if (runs.empty()) items.push_back(note("No runs: pass a results DB, --panel-json or --runs-json."));
        items.push_back(figure("phase-map", fmt::format("Each point is one run (colour = model family); the black tick is the "
                                                        "model's median, the vertical bar its 95 % percentile-bootstrap CI "
                                                        "({} resamples). Bands: regimes at the cut-points {}, {}, {} (from {}).{}",
                                                        opt.bootstrap, cut_values[0], cut_values[1], cut_values[2], cuts_from, runset)));
        items.push_back(figure("phase-map-category", "Median ratio_norm of each model × prompt category, coloured by the regime of "
                                                     "that median; the same run set as the phase map (norm = " + norm_name(c.norm) + 
                                                     (c.norms.size() > 1 ? ", selector under the plot)." : ").")));
        if (any_ratio && models_with_values < 2) items.push_back(note("Only one model: no between-model comparison."));
        items.push_back(table("models (median and 95 % CI per normalisation mode)",
                              {"model", "family", "norm", "runs", "median ratio_norm", "95 % CI", "regime of median"},
                              model_rows, "No model has a ratio_norm value."));
        json run_rows = json::array();
        for (const auto& r : runs)
            run_rows.push_back({r.id, r.model, r.category, norm_name(r.norm), num(r.temperature), r.n_generated, num(r.ratio_norm), r.regime});
        items.push_back(table("runs", {"run", "model", "category", "norm", "temperature", "tokens", "ratio_norm", "regime"}, run_rows,
                              "No runs."));
        sections.push_back({{"id", "phase"}, {"title", "Phase map"}, {"items", items},
                            {"intro", "ratio_norm = max ct_t / mean ct_t per run (METRICS.md §2.5) and its regime (§2.7)."}});
    }
}

// Trajectories: token series of at most --max-series runs, downsampled keeping peaks.
void trajectories_section(const Context& c, json& d, json& sections) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const auto& in = c.in;
    const auto& opt = c.opt;
    const auto& summary_runs = c.summary_runs;
    // ------------------------------------------------------------ trajectories
    std::vector<size_t> with_series;
    for (size_t i = 0; i < in.runs.size(); ++i)
        if (!in.runs[i].ct_t.empty()) with_series.push_back(i);
    // More runs than max_series: keep an even spread over the ratio_norm order.
    std::vector<size_t> chosen = with_series;
    if (chosen.size() > opt.max_series) {
        std::stable_sort(chosen.begin(), chosen.end(), [&](size_t a, size_t b) {
            const double x = summary_runs[a].ratio_norm, y = summary_runs[b].ratio_norm;
            if (std::isfinite(x) != std::isfinite(y)) return std::isfinite(x);
            return x < y;
        });
        std::vector<size_t> pick;
        const size_t n = chosen.size(), k = std::max<size_t>(opt.max_series, 1);
        for (size_t j = 0; j < k; ++j) pick.push_back(chosen[k == 1 ? 0 : j * (n - 1) / (k - 1)]);
        chosen = pick;
    }
    json traj_runs = json::array(), points = json::array(), traj_rows = json::array();
    size_t max_bucket = 1;
    for (size_t i : chosen) {
        const io::SummaryRecord& s = in.runs[i];
        const RunRec& r = summary_runs[i];
        const size_t T = s.ct_t.size();
        auto series = [&](const std::vector<double>& x) {
            std::vector<double> v(T, nan);
            for (size_t t = 0; t < T && t < x.size(); ++t) v[t] = x[t];
            return v;
        };
        const auto ct = series(s.ct_t), delta = series(s.delta_t), curv = series(s.curvature_t);
        size_t w = 1;
        const auto keep = downsample_peaks(ct, opt.max_points, w);
        max_bucket = std::max(max_bucket, w);
        const auto& tok = s.token;
        const auto& st = s.output_state;
        const std::string label = fmt::format("{} · {} · ratio_norm {} ({})", r.id, r.model, fmt3(r.ratio_norm),
                                              r.regime.empty() ? "no regime" : r.regime);
        traj_runs.push_back({{"id", r.id}, {"label", label}, {"tokens", T}, {"bucket", w}});
        traj_rows.push_back({r.id, r.model, T, num(r.ratio_norm), r.regime, w == 1 ? "all tokens" : fmt::format("1 point per {} tokens", w)});
        for (size_t b = 0; b < keep.size(); ++b) {
            const size_t t = keep[b], start = b * w;
            // The bucket's state is its most frequent one.
            std::map<std::string, size_t> counts;
            for (size_t u = start; u < std::min(T, start + w); ++u)
                if (u < st.size() && st[u]) counts[*st[u]]++;
            std::string state;
            size_t best = 0;
            for (const auto& [k, c] : counts)
                if (c > best) best = c, state = k;
            json p{{"run", r.id}, {"t", start}, {"ct_t", num(ct[t])}, {"delta_t", num(delta[t])}, {"curvature_t", num(curv[t])},
                   {"state", state}};
            if (t < tok.size() && tok[t]) p["token"] = *tok[t];
            if (w > 1) p["w"] = w;
            points.push_back(p);
        }
    }
    if (!traj_runs.empty()) d["trajectories"] = {{"runs", traj_runs}, {"points", points}, {"metrics", kSeries}};

    {
        json items = json::array();
        items.push_back(figure("trajectories", "Hover a point for the token text. Choose the run and the series "
                                               "(ct_t, or delta_t / curvature_t) with the controls below the plot."));
        if (!traj_runs.empty()) {
            if (with_series.size() > chosen.size())
                items.push_back(note(fmt::format("{} of {} runs with token series are in the page, spread evenly over the "
                                                 "ratio_norm order (--max-series).", chosen.size(), with_series.size())));
            if (max_bucket > 1)
                items.push_back(note(fmt::format("Long series are downsampled to at most {} points: each point stands for a "
                                                 "bucket of w consecutive tokens and shows the token with the largest ct_t in it "
                                                 "(so every peak, and ratio_norm's max, stays visible); the state strip shows "
                                                 "the bucket's most frequent state (--max-points).", opt.max_points)));
            items.push_back(table("runs shown", {"run", "model", "tokens", "ratio_norm", "regime", "points"}, traj_rows));
        }
        sections.push_back({{"id", "trajectories"}, {"title", "Trajectories"}, {"items", items},
                            {"intro", "ct_t = delta_t × curvature_t per generated token (METRICS.md §2.2–2.4); output states "
                                      "COLLAPSE / RIVALRY / DIFFUSE / STEADY per token (§5)."}});
    }
}

// Layer profiles: per-run layer-axis summaries and the per-layer profiles over depth.
void layers_section(const Context& c, json& d, json& sections) {
    const auto& in = c.in;
    const auto& models = c.models;
    const auto& model_index = c.model_index;
    const auto& layer_rows = c.layer_rows;
    const auto& layer_from = c.layer_from;
    // ------------------------------------------------------------ layer profiles
    if (!layer_rows.empty()) {
        std::vector<std::string> present;
        for (const auto& lm : kLayerMetrics)
            if (std::any_of(layer_rows.begin(), layer_rows.end(), [&](const json& r) { return r["metric"] == lm; }))
                present.push_back(lm);
        d["layer"] = {{"rows", layer_rows}, {"metrics", present}, {"value_title", "per-run median over tokens"}};
    }

    // ------------------------------------------------------------ layer profiles over depth
    // Aggregated rows only (model × layer × metric), from the DB's token_layers.
    json depth_rows = json::array(), depth_table = json::array(), depth_models = json::array();
    std::string depth_norm;
    for (const LayerProfile& p : in.layer_profiles) {
        depth_norm = p.norm;
        if (std::find(depth_models.begin(), depth_models.end(), json(p.model)) == depth_models.end()) depth_models.push_back(p.model);
        const std::string fam = model_index.count(p.model) ? family_or_none(models[model_index.at(p.model)].family) : "(no family)";
        for (const auto& [label, member] : kDepthMetrics) {
            const LayerProfile::Stat& st = p.*member;
            if (!std::isfinite(st.median)) continue;
            depth_rows.push_back({{"model", p.model}, {"family", fam}, {"layer", p.layer}, {"depth", p.depth}, {"metric", label},
                                  {"median", st.median}, {"q1", num(st.q1)}, {"q3", num(st.q3)}, {"n", st.n}, {"runs", p.runs}});
        }
        auto iqr = [](const LayerProfile::Stat& st) {
            return std::isfinite(st.q1) && std::isfinite(st.q3) ? json(fmt::format("{:.4g} – {:.4g}", st.q1, st.q3)) : json(nullptr);
        };
        depth_table.push_back({p.model, p.layer, p.depth, p.runs, std::max({p.speed.n, p.turning_angle_rad.n, p.ct_t.n}),
                               num(p.speed.median), iqr(p.speed), num(p.turning_angle_rad.median), iqr(p.turning_angle_rad),
                               num(p.ct_t.median), iqr(p.ct_t)});
    }
    if (!depth_rows.empty()) {
        json present = json::array();
        for (const auto& [label, member] : kDepthMetrics)
            if (std::any_of(depth_rows.begin(), depth_rows.end(), [&](const json& r) { return r["metric"] == label; }))
                present.push_back(label);
        d["layer_depth"] = {{"rows", depth_rows}, {"metrics", present}, {"models", depth_models}, {"norm", depth_norm}};
    } else {
        d["layer_depth_missing"] =
            in.layer_profiles_source.empty()
                ? "No per-layer values: they come from the token_layers table of a results DB (`phasemap report DB`); "
                  "JSON inputs carry only the per-run summaries of the layer axis shown below."
                : fmt::format("No per-layer values: the results DB {} has no token_layers rows (its runs were stored "
                              "without per-layer series).", in.layer_profiles_source);
    }

    {
        json items = json::array();
        items.push_back(figure(
            "layer-depth",
            depth_rows.empty()
                ? ""
                : fmt::format("x = layer depth (hf:N at N, block:N at N + 1, hf:L at L + 0.5); per model (colour) the median over all tokens "
                              "of its runs (line, points) and the q1–q3 band. speed = ‖h_l − h_(l−1)‖, the step arriving at "
                              "the layer (none at the first captured layer); the turning angle between the steps arriving "
                              "and leaving (none at the first and last); ct_t of the token axis computed at that layer. "
                              "Runs with norm = {} (from {}, token_layers).",
                              depth_norm.empty() ? "(unset)" : depth_norm, in.layer_profiles_source)));
        if (!depth_rows.empty() && in.panel) {
            std::map<std::string, size_t> other;
            for (const auto& r : in.panel->runs)
                if (r.norm != depth_norm) other[r.norm.empty() ? "(unset)" : r.norm]++;
            if (!other.empty()) {
                std::string what;
                size_t n = 0;
                for (const auto& [k, c] : other) what += (what.empty() ? "" : ", ") + k, n += c;
                items.push_back(note(fmt::format("{} runs of other normalisation modes ({}) are left out of the layer "
                                                 "profiles over depth: one mode at a time (the one with the most runs).", n, what)));
            }
        }
        if (!depth_table.empty())
            items.push_back(table("per-layer medians over tokens (q1 – q3)",
                                  {"model", "layer", "depth", "runs", "tokens", "speed", "speed q1 – q3", "turning angle (rad)",
                                   "turn q1 – q3", "ct_t", "ct_t q1 – q3"},
                                  depth_table));
        items.push_back(figure("layer-profiles", layer_from.empty() ? "" : "Per-run summaries over the layer axis (one value per run, "
                                                                           "box over the model's runs). Source: " + layer_from + "."));
        sections.push_back({{"id", "layers"}, {"title", "Layer profiles"}, {"items", items},
                            {"intro", "The layer axis (METRICS.md §3) resolved per layer over depth, and its per-run summaries "
                                      "(path length, tortuosity, mean speed, speed CV, mean turning angle, …)."}});
    }
}

// ------------------------------------------------------------------ audit sections: figures and tidy tables
// Every audit section is drawn from its typed result (audit/result.hpp): one row per entity, named
// columns, numbers as numbers (the page formats them), intervals as "lo – hi" text, no JSON in a
// cell. Each section names its run set (normalisation mode and statistical units) in a note.


// One point of a forest figure (report.js forest()): a value with its interval in a panel.
json forest_row(const std::string& panel, const std::string& label, double value, const audit::Interval& ci,
                const std::string& group = "") {
    json r{{"panel", panel}, {"label", label}, {"value", value}, {"ci_low", num(ci.lo)}, {"ci_high", num(ci.hi)}};
    if (!group.empty()) r["group"] = group;
    return r;
}
// A forest figure's data, or null when no row has a finite value.
json forest(json rows, const std::string& x_title, bool zero_line, json panels = nullptr, json domain = nullptr) {
    json kept = json::array();
    for (auto& r : rows)
        if (r["value"].is_number() && std::isfinite(r["value"].get<double>())) kept.push_back(std::move(r));
    if (kept.empty()) return nullptr;
    if (panels.is_null()) {
        panels = json::array();
        for (const auto& r : kept)
            if (std::find(panels.begin(), panels.end(), r["panel"]) == panels.end()) panels.push_back(r["panel"]);
    }
    json f{{"rows", kept}, {"x_title", x_title}, {"zero", zero_line}, {"panels", panels}};
    if (!domain.is_null()) f["domain"] = domain;
    return f;
}


// The run set of a section: its normalisation mode and its statistical units.
std::string units_text(const audit::AuditSection& s, const std::string& norm) {
    std::string t = norm.empty() ? "Runs of every normalisation mode" : fmt::format("Runs with norm = {}", norm);
    if (s.units) {
        const audit::UnitCounts& u = *s.units;
        t += fmt::format(": {} distinct units of {} runs", u.distinct, u.runs);
        if (u.merged_identical || u.nested_budget)
            t += fmt::format(" ({} identical greedy generations merged, {} shorter-budget prefixes analysed through the longer run)",
                             u.merged_identical, u.nested_budget);
    }
    return t + ".";
}

json heading(const std::string& text) { return {{"kind", "heading"}, {"text", text}}; }
json text(const std::string& t) { return {{"kind", "text"}, {"text", t}}; }

void regime_items(const audit::RegimeTable& s, json& items) {
    json rows = json::array(), cells = json::array();
    for (const auto& r : s.models)
        rows.push_back({r.model, r.n, num(r.mean), ci_text(r.ci), num(r.median), r.label, num(r.label_share)});
    items.push_back(table("regime per model", {"model", "runs", "mean ratio_norm", "95 % CI of the mean", "median", "regime of the mean",
                                               "bootstrap share of that regime"},
                          rows, "No model has a ratio_norm value."));
    for (const auto& r : s.cells) cells.push_back({r.model, r.category, r.n, num(r.mean), ci_text(r.ci), r.label});
    items.push_back(table("regime per model × category", {"model", "category", "runs", "mean ratio_norm", "95 % CI", "regime"}, cells));
}

void normalisation_items(const audit::NormSensitivity& s, json& fig, json& items) {
    json frows = json::array(), modes = json::array(), agree = json::array();
    for (const auto& m : s.modes) {
        frows.push_back(forest_row("η² of ratio_norm by model", m.mode, m.eta2, m.eta2_ci));
        modes.push_back({m.mode, m.runs, m.models, num(m.eta2), ci_text(m.eta2_ci), num(m.eta2_perm_p), num(m.kw.H), num(m.kw.df), num(m.kw.p)});
    }
    for (const auto& a : s.agreement) {
        const std::string label = a.mode_a + " vs " + a.mode_b;
        frows.push_back(forest_row("Cohen's κ of the regime labels", label, a.kappa, a.kappa_ci));
        frows.push_back(forest_row("share of identical regime labels", label, a.agreement, {}));
        agree.push_back({a.mode_a, a.mode_b, a.pairs, num(a.agreement), num(a.kappa), ci_text(a.kappa_ci)});
    }
    if (json f = forest(frows, "estimate (95 % CI)", false); !f.is_null()) fig["normalisation"] = f;
    items.push_back(figure("audit-normalisation", "Per mode, the share of ratio_norm's variance between models (η², bootstrap CI); "
                                                  "between modes, the agreement of the runs' regime labels (Cohen's κ with its "
                                                  "bootstrap CI over paired runs, and the raw share)."));
    if (!s.modes_reason.empty()) items.push_back(note(s.modes_reason));
    if (!s.agreement_reason.empty()) items.push_back(note(s.agreement_reason));
    items.push_back(table("per normalisation mode", {"mode", "runs", "models", "η²", "η² 95 % CI", "η² permutation p", "Kruskal–Wallis H",
                                                     "df", "Kruskal–Wallis p"},
                          modes, "No mode could be compared between models."));
    items.push_back(table("agreement between modes", {"mode a", "mode b", "paired runs", "same regime (share)", "Cohen's κ", "κ 95 % CI"},
                          agree, "Only one normalisation mode."));
}

// Variance figure rows: the type-II ANOVA shares and the REML shares with their intervals.
json variance_rows(const audit::VarianceDecomposition& v) {
    json rows = json::array();
    auto add = [&](const std::string& est, const std::string& term, double share, const audit::Interval* ci) {
        if (!std::isfinite(share)) return;
        rows.push_back({{"metric", est}, {"factor", term}, {"share", share}, {"ci_low", num(ci ? ci->lo : kNaN)},
                        {"ci_high", num(ci ? ci->hi : kNaN)}});
    };
    for (size_t i = 0; i < v.anova.type2.size(); ++i)
        add("ANOVA type-II share", v.anova.type2[i].term, v.anova.type2[i].share, i < v.type2_ci.size() ? &v.type2_ci[i] : nullptr);
    for (size_t t = 0; t < v.reml_terms.size() && t < v.reml.sigma2.size(); ++t)
        add("REML variance share", v.reml_terms[t], v.reml_share[t], t < v.reml_share_ci.size() ? &v.reml_share_ci[t] : nullptr);
    return rows;
}

void variance_items(const audit::VarianceDecomposition& v, json& fig, json& items) {
    const json rows = variance_rows(v);
    if (!rows.empty()) fig["variance"] = {{"rows", rows}, {"value_title", "share of variance of " + v.metric}};
    items.push_back(figure("audit-variance", fmt::format("Share of the variance of {} per term: type-II ANOVA ({} × category, {} runs, "
                                                         "{} × {} levels) and REML variance components, with bootstrap CIs.",
                                                         v.metric, v.factor, v.n, v.levels_a, v.levels_b)));
    json anova = json::array();
    for (size_t i = 0; i < v.anova.type2.size(); ++i) {
        const auto& t = v.anova.type2[i];
        anova.push_back({t.term, num(t.df), num(t.ss), num(t.F), num(t.p), num(t.share),
                         i < v.type2_ci.size() ? ci_text(v.type2_ci[i]) : json(nullptr),
                         i < v.type2_perm_p.size() ? num(v.type2_perm_p[i]) : json(nullptr)});
    }
    items.push_back(table("ANOVA (type II) of " + v.metric, {"term", "df", "SS", "F", "p", "share", "share 95 % CI", "permutation p"}, anova));
    json reml = json::array();
    for (size_t t = 0; t < v.reml_terms.size() && t < v.reml.sigma2.size(); ++t)
        reml.push_back({v.reml_terms[t], num(v.reml.sigma2[t]), t < v.reml_ci.size() ? ci_text(v.reml_ci[t]) : json(nullptr),
                        t < v.reml_share.size() ? num(v.reml_share[t]) : json(nullptr),
                        t < v.reml_share_ci.size() ? ci_text(v.reml_share_ci[t]) : json(nullptr),
                        t < v.reml.at_zero.size() && v.reml.at_zero[t]});
    items.push_back(table("REML variance components", {"component", "σ²", "σ² 95 % CI", "share", "share 95 % CI", "at the boundary 0"}, reml,
                          v.reml_reason.empty() ? "No REML fit." : v.reml_reason));
    if (!v.reml_reason.empty() && !reml.empty()) items.push_back(note("REML: " + v.reml_reason));
}

// Topology figure (distance heatmap in dendrogram order, robust pairs marked) and its tables.
// `robust_share`: the audit's Options::robust_share (NaN when unknown), named in the caption.
void topology_items(const audit::Topology& s, double robust_share, json& audit_fig, json& audit_items) {
    const std::vector<std::string>& names = s.models;
    const size_t n = names.size();
    std::vector<std::vector<double>> dm(n, std::vector<double>(n, kNaN));
    for (size_t i = 0; i < n && Eigen::Index(i) < s.distances.rows(); ++i)
        for (size_t j = 0; j < n && Eigen::Index(j) < s.distances.cols(); ++j)
            dm[i][j] = std::isfinite(s.distances(i, j)) ? s.distances(i, j) : kNaN;
    Dendrogram dg;
    if (s.merges.size() + 1 == n && n > 1) {
        std::vector<std::array<double, 3>> ms;
        for (const auto& m : s.merges) ms.push_back({double(m.a), double(m.b), std::isfinite(m.height) ? m.height : kNaN});
        dg = dendrogram_from_linkage(n, ms);
    } else if (n > 1) {
        // No linkage in the input: average linkage of the distances (all finite) with stats.
        Eigen::MatrixXd e(n, n);
        bool finite = true;
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < n; ++j) e(i, j) = dm[i][j], finite = finite && std::isfinite(dm[i][j]);
        if (finite) {
            std::vector<std::array<double, 3>> ms;
            for (const auto& m : stats::average_linkage(e)) ms.push_back({double(m.a), double(m.b), m.height});
            dg = dendrogram_from_linkage(n, ms);
        } else {
            dg = dendrogram_from_linkage(n, {});
        }
    }
    std::set<std::pair<std::string, std::string>> robust;
    json pair_rows = json::array(), hl = json::array();
    for (const auto& p : s.pairs) {
        if (p.robust) robust.insert({p.a, p.b}), robust.insert({p.b, p.a});
        pair_rows.push_back({p.a, p.b, num(p.share), p.robust, p.same_family});
        hl.push_back(p.robust);
    }
    json cells = json::array();
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j)
            cells.push_back({{"a", names[i]}, {"b", names[j]}, {"d", num(dm[i][j])}, {"robust", robust.count({names[i], names[j]}) > 0}});
    json order = json::array();
    for (size_t i : dg.order) order.push_back(names[i]);
    audit_fig["topology"] = {{"order", order}, {"cells", cells}, {"dendrogram", dg.segments},
                             {"value_title", "distance (" + s.metric + ")"}, {"robust_pairs", s.robust_pairs}};
    const std::string share = std::isfinite(robust_share) ? fmt::format("{:g}", robust_share) : "the audit's robust share";
    const std::string outlined =
        s.robust_pairs == 0
            ? fmt::format("No pair is robust (a mutual nearest-neighbour pair in at least {} of the bootstrap resamples), so no "
                          "cell is outlined.", share)
            : fmt::format("The {} robust pair{} (mutual nearest neighbours in at least {} of the bootstrap resamples) {} outlined in red.",
                          s.robust_pairs, s.robust_pairs == 1 ? "" : "s", share, s.robust_pairs == 1 ? "is" : "are");
    audit_items.push_back(figure("audit-topology", fmt::format("Euclidean distances between the models' signatures of {} (the mean per "
                                                               "prompt category, each category standardised across models; {} "
                                                               "categories), rows and columns in the leaf order of the average-linkage "
                                                               "dendrogram above (merge height on a square-root scale). {}",
                                                               s.metric, s.categories.size(), outlined)));
    json pt = table("pairs that were mutual nearest neighbours in a bootstrap resample, by share (robust pairs highlighted)",
                    {"a", "b", "bootstrap share", "robust", "same family"}, pair_rows, "No mutual-nearest-neighbour pairs.");
    pt["highlight"] = hl;
    audit_items.push_back(pt);
    json mrows = json::array();
    for (size_t i = 0; i < n; ++i)
        mrows.push_back({names[i], i < s.families.size() ? json(family_or_none(s.families[i])) : json(nullptr),
                         i < s.clusters.size() ? json(s.clusters[i]) : json(nullptr)});
    audit_items.push_back(table("models: family and cluster (dendrogram cut into as many clusters as families)",
                                {"model", "family", "cluster"}, mrows));
    json scalars = json::array({json::array({"robust pairs", s.robust_pairs}), json::array({"fragmentation", num(s.fragmentation)}),
                                json::array({"share of models whose nearest neighbour shares their family", num(s.family_nn_share)}),
                                json::array({"adjusted Rand index (clusters vs families)", num(s.ari)}),
                                json::array({"ARI permutation p", num(s.ari_perm_p)})});
    audit_items.push_back(table("topology summary", {"quantity", "value"}, scalars));
    if (!s.ari_reason.empty()) audit_items.push_back(note("ARI: " + s.ari_reason));
}

// The falsification registry as a verdict table, falsified hypotheses first.
json registry_table(const audit::Registry& reg) {
    std::vector<const audit::HypothesisResult*> rs;
    for (const auto& r : reg.results) rs.push_back(&r);
    auto falsified = [](const audit::HypothesisResult* r) { return r->full.verdict == audit::Verdict::FALSIFIED; };
    std::stable_sort(rs.begin(), rs.end(), [&](auto* x, auto* y) { return falsified(x) > falsified(y); });
    json rows = json::array(), hl = json::array();
    for (const auto* r : rs) {
        const audit::Evaluation& full = r->full;
        rows.push_back({r->hypothesis.id, r->hypothesis.claim, std::string(audit::to_string(r->subpanel.verdict)),
                        std::string(audit::to_string(full.verdict)), full.statistic_name, num(full.statistic), ci_text(full.ci),
                        num(full.p), full.n, full.detail});
        hl.push_back(falsified(r));
    }
    json t = table("falsification registry (falsified first)",
                   {"id", "claim", "sub-panel result", "full-panel result", "statistic", "value", "95 % CI", "p", "n", "why"}, rows,
                   "No hypotheses were evaluated.");
    t["highlight"] = hl;
    return t;
}

void cycles_items(const audit::Cycles& s, json& fig, json& items) {
    json rates = json::array(), dwell = json::array(), trans = json::array(), table_rows = json::array();
    json panels = json::array();
    for (const char* st : audit::kStates) panels.push_back(std::string("share of tokens in ") + st);
    for (const auto& m : s.models) {
        for (size_t k = 0; k < 4; ++k) {
            rates.push_back(forest_row(std::string("share of tokens in ") + audit::kStates[k], m.model, m.state_rates[k].value, m.state_rates[k].ci));
            dwell.push_back(forest_row(audit::kStates[k], m.model, m.dwell_mean[k].value, m.dwell_mean[k].ci));
        }
        rates.push_back(forest_row("COLLAPSE exit rate per episode", m.model, m.exit_rate.value, m.exit_rate.ci));
        rates.push_back(forest_row("COLLAPSE reopening rate per episode", m.model, m.reopening_rate.value, m.reopening_rate.ci));
        if (m.transitions)
            for (size_t a = 0; a < 4; ++a)
                for (size_t b = 0; b < 4; ++b)
                    if (std::isfinite((*m.transitions)[a][b]))
                        trans.push_back({{"model", m.model}, {"from", audit::kStates[a]}, {"to", audit::kStates[b]},
                                         {"p", (*m.transitions)[a][b]}, {"label", fmt::format("{:.2f}", (*m.transitions)[a][b])}});
        json row = json::array({m.model, m.runs, num(m.episodes), num(m.exit_rate.value), ci_text(m.exit_rate.ci),
                                num(m.reopening_rate.value), ci_text(m.reopening_rate.ci)});
        for (size_t k = 0; k < 4; ++k) row.push_back(num(m.state_rates[k].value));
        table_rows.push_back(row);
    }
    panels.push_back("COLLAPSE exit rate per episode");
    panels.push_back("COLLAPSE reopening rate per episode");
    if (json f = forest(rates, "share (95 % bootstrap CI over runs)", false, panels, {0, 1}); !f.is_null()) fig["cycles"] = f;
    json states = json::array();
    for (const char* st : audit::kStates) states.push_back(st);
    if (json f = forest(dwell, "mean run length in the state (tokens, 95 % CI)", false, states); !f.is_null()) fig["dwell"] = f;
    if (!trans.empty()) fig["transitions"] = {{"rows", trans}, {"states", audit::kStates}};
    items.push_back(figure("audit-cycles", fmt::format("Per model, the mean share of tokens in each output state and, when the panel "
                                                       "has COLLAPSE episodes, the exit and reopening rates per episode (pooled "
                                                       "reopening rate {} over {} episodes).",
                                                       fmt3(s.pooled_reopening), std::isfinite(s.pooled_episodes) ? fmt::format("{:.0f}", s.pooled_episodes) : "—")));
    items.push_back(figure("audit-transitions", "Per model, the 4 × 4 matrix of state transitions between consecutive tokens "
                                                "(counts summed over runs, each row normalised; rows of states never visited are empty)."));
    if (!s.transitions_reason.empty()) items.push_back(note("Transitions: " + s.transitions_reason));
    items.push_back(figure("audit-dwell", "Per model and state, the mean over runs of each run's mean run length in that state (95 % "
                                          "bootstrap CI); states a model never visits have no point."));
    if (!s.dwell_reason.empty()) items.push_back(note("Dwell times: " + s.dwell_reason));
    std::vector<std::string> cols{"model", "runs", "COLLAPSE episodes", "exit rate", "exit 95 % CI", "reopening rate", "reopening 95 % CI"};
    for (const char* st : audit::kStates) cols.push_back(std::string("share ") + st);
    items.push_back(table("output states and COLLAPSE cycles per model", cols, table_rows));
}

void robustness_items(const audit::Robustness& s, json& fig, json& items) {
    json frows = json::array(), rank = json::array();
    for (const auto* v : {&s.temperature, &s.budget})
        for (const auto& r : *v) {
            const std::string panel = r.factor == "n_predict" ? "across token budgets (n_predict)" : "across " + r.factor;
            frows.push_back(forest_row(panel, r.level_a + " vs " + r.level_b, r.tau.tau, r.ci));
            rank.push_back({r.factor, r.level_a, r.level_b, r.tau.n, num(r.tau.tau), ci_text(r.ci), num(r.tau.p), r.tau.method});
        }
    if (json f = forest(frows, "Kendall τ-b of the model ranking (95 % bootstrap CI)", true); !f.is_null()) fig["robustness"] = f;
    items.push_back(figure("audit-robustness", "Does the ranking of the models by mean ratio_norm hold between two levels of a setting? "
                                               "Kendall τ-b of the model means at each pair of levels, with its bootstrap CI over runs "
                                               "(1 = the same order)."));
    if (!s.temperature_reason.empty()) items.push_back(note("Temperature: " + s.temperature_reason));
    if (!s.budget_reason.empty()) items.push_back(note("Token budget: " + s.budget_reason));
    items.push_back(table("ranking stability", {"factor", "level a", "level b", "models", "τ-b", "95 % CI", "p", "p method"}, rank,
                          "No pair of levels to compare."));
    // The collapse predictor: accuracy and AUC on the held-out split, beside the majority baseline.
    const audit::CollapsePredictor& p = s.predictor;
    json prows = json::array();
    const std::string acc = fmt::format("accuracy on the test split ({} runs, {} collapsed)", p.test, p.test_positive);
    const std::string auc = "AUC on the test split";
    prows.push_back(forest_row(acc, "late_ct rule (fitted on the train split)", p.test_accuracy, {}, "rule"));
    prows.push_back(forest_row(acc, "late_ct < published threshold", p.fixed_threshold_test_accuracy, {}, "rule"));
    if (!p.entropy_metric.empty()) prows.push_back(forest_row(acc, p.entropy_metric + " rule", p.entropy_test_accuracy, {}, "rule"));
    prows.push_back(forest_row(acc, "majority class (baseline)", p.majority_test_accuracy, {}, "baseline"));
    prows.push_back(forest_row(auc, "late_ct", p.test_auc, {}, "rule"));
    if (!p.entropy_metric.empty()) prows.push_back(forest_row(auc, p.entropy_metric, p.entropy_test_auc, {}, "rule"));
    prows.push_back(forest_row(auc, "chance (baseline)", 0.5, {}, "baseline"));
    if (s.predictor_reason.empty())
        if (json f = forest(prows, "on the test split", false, nullptr, {0, 1}); !f.is_null()) fig["predictor"] = f;
    items.push_back(figure("audit-predictor", fmt::format("The collapse predictor ({}): accuracy and area under the ROC curve of each rule on "
                                                          "the held-out test split, beside the majority-class baseline and chance.",
                                                          p.label_definition.empty() ? "collapse label" : p.label_definition)));
    if (!s.predictor_reason.empty()) items.push_back(note("Collapse predictor: " + s.predictor_reason));
    // The ROC curves on the test split (the audit's points: one step per distinct score, ties one
    // diagonal step), the majority-class predictor as a point and the chance diagonal.
    if (s.predictor_reason.empty()) {
        json curves = json::array();
        auto add = [&](const std::string& metric, double area, const std::vector<stats::RocPoint>& roc) {
            const std::string name = fmt::format("{} (AUC {})", metric, fmt3(area));
            for (size_t i = 0; i < roc.size(); ++i)
                curves.push_back({{"curve", name}, {"i", i}, {"fpr", num(roc[i].fpr)}, {"tpr", num(roc[i].tpr)}});
        };
        add("late_ct", p.test_auc, p.test_roc);
        if (!p.entropy_metric.empty()) add(p.entropy_metric, p.entropy_test_auc, p.entropy_test_roc);
        if (!curves.empty()) {
            // Always predicting the train split's majority class: every test run one class.
            const bool all_collapsed = 2 * p.train_positive >= p.train;
            json base = {{"label", all_collapsed ? "majority class (baseline): always collapsed" : "majority class (baseline): never collapsed"},
                         {"fpr", all_collapsed ? 1.0 : 0.0}, {"tpr", all_collapsed ? 1.0 : 0.0},
                         {"accuracy", num(p.majority_test_accuracy)}};
            fig["roc"] = {{"curves", curves}, {"baseline", json::array({base})}};
        }
        items.push_back(figure("audit-roc", fmt::format("ROC curves of the collapse predictors on the test split ({} runs, {} collapsed; "
                                                        "lower value = collapsed): false- against true-positive rate at every threshold, "
                                                        "tied values as one diagonal step. The dashed diagonal is chance; the majority-class "
                                                        "baseline is one corner (it calls every run the same).",
                                                        p.test, p.test_positive)));
        if (curves.empty()) items.push_back(note("ROC curve: the audit keeps no ROC points (written before they were kept); rerun the audit."));
    }
    json pr = json::array();
    pr.push_back({"late_ct", p.rule, num(p.threshold), num(p.train_accuracy), num(p.test_accuracy), num(p.test_auc)});
    if (!p.entropy_metric.empty())
        pr.push_back({p.entropy_metric, p.entropy_rule, num(p.entropy_threshold), nullptr, num(p.entropy_test_accuracy), num(p.entropy_test_auc)});
    pr.push_back({"majority class", "always the train split's majority", nullptr, nullptr, num(p.majority_test_accuracy), nullptr});
    items.push_back(table(fmt::format("collapse predictor (train {} runs, {} collapsed; test {} runs, {} collapsed)", p.train, p.train_positive,
                                      p.test, p.test_positive),
                          {"predictor", "rule", "threshold", "train accuracy", "test accuracy", "test AUC"}, pr));
    if (!p.entropy_reason.empty()) items.push_back(note("Entropy rule: " + p.entropy_reason));
    json corr = json::array();
    for (const auto& r : s.perplexity)
        corr.push_back({r.x, r.y, r.unit, r.pearson.n, num(r.pearson.r), ci_text(r.pearson.lo, r.pearson.hi), num(r.spearman.r),
                        ci_text(r.spearman.lo, r.spearman.hi), num(r.perm_p)});
    items.push_back(table("ratio_norm and the perplexity of the generated text", {"x", "y", "unit", "n", "Pearson r", "r 95 % CI (Fisher z)",
                                                                                   "Spearman ρ", "ρ 95 % CI", "permutation p"},
                          corr, s.perplexity_reason.empty() ? "No correlation computed." : s.perplexity_reason));
}

void variants_items(const audit::Variants& s, json& fig, json& items) {
    json frows = json::array(), rows = json::array();
    for (const auto& v : s.variants) {
        frows.push_back(forest_row("Δ ratio_norm (variant − base)", v.model + " vs " + v.base, v.delta, v.delta_ci));
        rows.push_back({v.model, v.base, v.test, v.pairs, v.n_variant, v.n_base, num(v.delta), ci_text(v.delta_ci), num(v.perm_p),
                        v.p_method, v.label_base, v.label_variant, num(v.category_agreement), num(v.category_kappa)});
    }
    if (json f = forest(frows, "Δ mean ratio_norm, variant − base (95 % CI)", true); !f.is_null()) fig["variants"] = f;
    items.push_back(figure("audit-variants", "Each declared variant (variant_of) against its base: the mean difference of ratio_norm "
                                             "over matched runs (paired bootstrap CI) — 0 is no change."));
    if (!s.variant_reason.empty()) items.push_back(note("Variants: " + s.variant_reason));
    items.push_back(table("variants against their base", {"variant", "base", "test", "pairs", "runs (variant)", "runs (base)", "Δ ratio_norm",
                                                           "Δ 95 % CI", "p", "p method", "regime (base)", "regime (variant)",
                                                           "same category regimes (share)", "category κ"},
                          rows, "No model declares variant_of."));
    json cov = json::array();
    for (const auto& r : s.covariates)
        cov.push_back({r.covariate, r.pearson.n, num(r.pearson.r), ci_text(r.pearson.lo, r.pearson.hi), num(r.spearman.r), num(r.perm_p)});
    items.push_back(table("model mean ratio_norm against the declared covariates", {"covariate", "models", "Pearson r", "r 95 % CI",
                                                                                     "Spearman ρ", "permutation p"},
                          cov, s.covariate_reason.empty() ? "No covariates." : s.covariate_reason));
}

void controls_items(const audit::Controls& s, json& items) {
    json eff = json::array(), base = json::array();
    for (const auto& e : s.effects) eff.push_back({e.effect, e.statistic, num(e.value), num(e.p), e.permutations, e.scheme});
    items.push_back(table("permutation controls of the effects", {"effect", "statistic", "value", "permutation p", "permutations", "what was permuted"},
                          eff));
    for (const auto& b : s.baselines)
        base.push_back({b.model, b.key, b.runs, num(b.median_p), num(b.share_significant.value), ci_text(b.share_significant.ci)});
    items.push_back(table("shuffled-order baselines per model", {"model", "control", "runs", "median p", "share with p < 0.05", "95 % CI"}, base,
                          s.baseline_reason.empty() ? "No shuffled-order controls." : s.baseline_reason));
}

// Audits: every audit section from its typed result, then the control-audit and monitor-eval results.
void audits_section(const Context& c, json& d, json& sections) {
    const auto& in = c.in;
    const auto& secs = c.secs;
    json audit_fig = json::object();
    json audit_items = json::array();
    static const std::map<std::string, std::string> kTitles = {
        {"regime", "Regimes"}, {"normalisation", "Normalisation sensitivity"}, {"variance", "Variance decomposition"},
        {"topology", "Topology"}, {"hypotheses", "Falsification registry"}, {"cycles", "Output states, transitions and dwell times"},
        {"robustness", "Robustness: rankings and the collapse predictor"}, {"variants", "Variants and covariates"},
        {"controls", "Permutation and shuffle controls"}};
    // Page order (the document's key order is alphabetical).
    static const std::vector<std::string> kOrder = {"regime", "normalisation", "variance", "topology", "cycles", "robustness",
                                                    "variants", "hypotheses", "controls"};
    std::vector<const audit::AuditSection*> ordered = secs;
    auto rank = [&](const std::string& n) { return size_t(std::find(kOrder.begin(), kOrder.end(), n) - kOrder.begin()); };
    std::stable_sort(ordered.begin(), ordered.end(), [&](auto* a, auto* b) { return rank(a->name) < rank(b->name); });
    for (const audit::AuditSection* sec : ordered) {
        const std::string& name = sec->name;
        audit_items.push_back(heading(kTitles.count(name) ? kTitles.at(name) : name));
        if (!sec->ok()) {
            audit_items.push_back(note(fmt::format("{}: {}", name, sec->reason())));
            continue;
        }
        std::string norm;
        std::visit([&](const auto& r) { norm = r.norm; }, *sec->result);
        audit_items.push_back(text(units_text(*sec, name == "normalisation" ? "" : norm)));
        if (const auto* r = sec->get<audit::RegimeTable>()) regime_items(*r, audit_items);
        else if (const auto* n = sec->get<audit::NormSensitivity>()) normalisation_items(*n, audit_fig, audit_items);
        else if (const auto* v = sec->get<audit::VarianceDecomposition>()) variance_items(*v, audit_fig, audit_items);
        else if (const auto* t = sec->get<audit::Topology>()) topology_items(*t, in.audit ? in.audit->options.robust_share : kNaN, audit_fig, audit_items);
        else if (const auto* reg = sec->get<audit::Registry>()) audit_items.push_back(registry_table(*reg));
        else if (const auto* cy = sec->get<audit::Cycles>()) cycles_items(*cy, audit_fig, audit_items);
        else if (const auto* ro = sec->get<audit::Robustness>()) robustness_items(*ro, audit_fig, audit_items);
        else if (const auto* va = sec->get<audit::Variants>()) variants_items(*va, audit_fig, audit_items);
        else if (const auto* co = sec->get<audit::Controls>()) controls_items(*co, audit_items);
    }
    d["audit"] = audit_fig;

    {
        json items = json::array();
        if (secs.empty()) items.push_back(note("No audit: pass a results DB or --audit-json (from `phasemap audit --json`)."));
        for (auto& it : audit_items) items.push_back(it);
        control_audit_items(in, d, items);
        monitor_eval_items(in, d, items);
        sections.push_back({{"id", "audits"}, {"title", "Audits"}, {"items", items}});
    }
}

// Provenance: this page, models, settings of the panel, the runs and the audit.
// MoE routing (docs/metrics-moe.md): per model, the median over its routed runs of every run-level
// routing metric of the registry. Only when some panel run carries routing values (dense panels
// get no section). A generation is stored once per normalisation mode with the same routing
// values: the runs are the audit's run set of the page's mode (audit::distinct_runs, as every
// other section), so each generation counts once.
void routing_section(const Context& c, json& d, json& sections) {
    if (!c.in.panel) return;
    std::vector<std::string> names;
    for (const auto& m : metrics::metric_registry())
        if (m.axis == metrics::Axis::routing) {
            if (m.shape == metrics::Shape::scalar) names.emplace_back(m.name);
            else if (m.shape == metrics::Shape::per_token) names.push_back("median_" + std::string(m.name));
        }
    auto routed = [&](const PanelRun& r) {
        for (const auto& n : names)
            if (auto it = r.metrics.find(n); it != r.metrics.end() && std::isfinite(it->second)) return true;
        return false;
    };
    const std::string& norm = c.norm;
    std::map<std::string, std::vector<const PanelRun*>> by_model;
    for (const PanelRun* r : audit::distinct_runs(*c.in.panel, norm).runs)
        if (routed(*r)) by_model[r->model].push_back(r);
    if (by_model.empty()) return;
    std::vector<std::string> cols{"model", "routed runs"};
    for (const auto& n : names) cols.push_back(n + " (median)");
    json rows = json::array();
    for (const auto& [model, rs] : by_model) {
        json row = json::array({model, rs.size()});
        for (const auto& n : names) {
            std::vector<double> v;
            for (const auto* r : rs)
                if (auto it = r->metrics.find(n); it != r->metrics.end() && std::isfinite(it->second)) v.push_back(it->second);
            row.push_back(v.empty() ? json(nullptr) : json(num(stats::median(v))));
        }
        rows.push_back(row);
    }
    json items = json::array();
    items.push_back(table("routing per model (median over runs)", cols, rows));
    items.push_back(note(fmt::format("Runs with norm = {}, the audit's run set of that mode (routing does not depend on the "
                                     "normalisation mode; each generation is counted once). Dense models' runs have no routing "
                                     "values and are left out.",
                                     norm_name(norm))));
    sections.push_back({{"id", "routing"}, {"title", "MoE routing"}, {"items", items},
                        {"intro", "The router's top-k choices per token and MoE block (docs/metrics-moe.md): routing entropy, "
                                  "expert-switch rate along tokens, expert-load balance, and agreement between adjacent blocks."}});
}

void provenance_section(const Context& c, json& d, json& sections) {
    const auto& in = c.in;
    const auto& opt = c.opt;
    const auto& secs = c.secs;
    const auto& cut_values = c.cut_values;
    const auto& cuts_from = c.cuts_from;
    const auto& models = c.models;
    const auto& runs = c.runs;
    {
        json items = json::array();
        json gen = json::array();
        gen.push_back({"generated", utc_now()});
        if (!opt.generator.empty()) gen.push_back({"generator", opt.generator});
        gen.push_back({"panel", in.panel ? in.panel_source : "(none)"});
        gen.push_back({"audit", secs.empty() ? std::string("(none)") : in.audit_source});
        gen.push_back({"per-run summaries", in.runs.size()});
        gen.push_back({"regime cut-points", fmt::format("{}, {}, {} ({})", cut_values[0], cut_values[1], cut_values[2], cuts_from)});
        gen.push_back({"bootstrap", fmt::format("{} resamples, seed {} (the audit's regime stream), 95 % percentile CI of the median",
                                              opt.bootstrap, opt.seed)});
        gen.push_back({"token series", fmt::format("at most {} runs, at most {} points each (peak-preserving buckets)",
                                                   opt.max_series, opt.max_points)});
        items.push_back(table("this page", {"field", "value"}, gen));
        json mrows = json::array();
        for (const auto& m : models) {
            size_t n = 0;
            for (const auto& r : runs) n += r.model == m.label;
            mrows.push_back({m.label, family_or_none(m.family), m.architecture, m.variant_of, n, m.sha256,
                             covariates_text(m.covariates)});
        }
        json mt = table("models", {"model", "family", "architecture", "variant of", "runs", "sha256", "covariates"}, mrows, "No models.");
        mt["mono"] = {5};
        items.push_back(mt);
        if (in.panel) {
            std::map<std::string, std::set<std::string>> settings;
            for (const auto& r : in.panel->runs) {
                settings["norm"].insert(r.norm.empty() ? "(unset)" : r.norm);
                settings["temperature"].insert(fmt::format("{}", r.temperature));
                settings["n_predict"].insert(std::to_string(r.n_predict));
                settings["seed"].insert(std::to_string(r.seed));
            }
            json rows = json::array();
            for (const auto& [k, vs] : settings) rows.push_back({k, join_first(vs, 12)});
            items.push_back(table("panel settings (distinct values)", {"setting", "values"}, rows));
        }
        if (!in.runs.empty()) {
            std::map<std::string, std::set<std::string>> settings;
            for (const auto& s : in.runs)
                for (const auto& [k, v] : s.settings.items()) flatten(k, v, settings);
            json rows = json::array();
            for (const auto& [k, vs] : settings) rows.push_back({k, join_first(vs, 8)});
            items.push_back(table("run settings and provenance (distinct values over the per-run summaries)", {"key", "values"}, rows));
        }
        if (const auto& a = in.audit) {
            json rows = json::array();
            if (!a->phasemap_version.empty()) rows.push_back({"phasemap_version", a->phasemap_version});
            rows.push_back({"source", a->source});
            rows.push_back({"panel", fmt::format("{} models, {} runs", a->panel_models, a->panel_runs)});
            items.push_back(table("audit", {"field", "value"}, rows));
            json opts = json::array();
            const json options = audit::options_json(a->options);   // kept: items() of a temporary would dangle
            for (const auto& [k, v] : options.items()) opts.push_back({k, scalar_text(v)});
            items.push_back(table("audit options", {"option", "value"}, opts));
        }
        sections.push_back({{"id", "provenance"}, {"title", "Provenance"}, {"items", items}});
    }
}

using SectionFn = void (*)(const Context&, json& data, json& sections);
// The page's sections in page order: each adds its figure data to the page data and its section
// (figures, tables, notes) to the list.
const std::pair<const char*, SectionFn> kSections[] = {
    {"phase", phase_section},         {"trajectories", trajectories_section}, {"layers", layers_section},
    {"routing", routing_section},     {"audits", audits_section},       {"provenance", provenance_section},
};

}  // namespace

json build_data(const Inputs& in, const Options& opt) {
    json d;
    d["title"] = opt.title;
    const Context c = gather(in, opt, d);
    json sections = json::array();
    for (const auto& [id, build] : kSections) build(c, d, sections);
    d["sections"] = sections;

    d["subtitle"] = fmt::format("{} models · {} runs · {} per-run summaries{}", c.models.size(), c.runs.size(), in.runs.size(),
                                c.secs.empty() ? "" : " · audit");
    return d;
}

}  // namespace phasemap::report
