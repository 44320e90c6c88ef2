// `phasemap control-audit` (the issue's `phasemap audit control`; `audit` belongs to the panel
// audits): baseline vs intervened twins, random-direction and zero-strength controls, Δ dynamics
// and Δ semantics with bootstrap CIs. `phasemap monitor-eval`: the four monitor/guard arms.
// Both write JSON (-o) and/or a results DB (--db, store::AuditEntry kinds control_audit /
// monitor_eval, steer/results.hpp).
#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "phasemap/capture.hpp"
#include "phasemap/npz.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/results.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/store.hpp"
#include "cli_util.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

using namespace phasemap::capture;


std::shared_ptr<Model> load_model(const std::string& path) {
    try { return Model::load(path); } catch (const std::exception& e) { throw UserError(e.what()); }
}

void write_json(const std::string& path, const nlohmann::json& j) {
    try { io::write_file_atomic(path, j.dump(2) + "\n"); }
    catch (const std::exception& e) { throw UserError(fmt::format("cannot write '{}': {}", path, e.what())); }
}

// The results DB of --db, opened (created when missing) before any decoding so that a locked,
// foreign or other-schema file fails fast; null without --db.
std::unique_ptr<store::Store> open_db(const std::string& path) {
    if (path.empty()) return nullptr;
    try { return store::Store::open(path); }
    catch (const std::exception& e) { throw UserError(e.what()); }
}

void put_result(store::Store& db, const store::AuditEntry& e) {
    try { db.put_audits({e}); }
    catch (const std::exception& ex) { throw UserError(ex.what()); }
}

struct AuditArgs {
    std::string model, prompts, out, db, name = "control";
    std::vector<std::string> intervene;
    std::string control_vector;
    steer::AuditOptions o;
    double temp = 0;
    uint64_t seed = 0;
    bool quiet = false;
};

int run_audit(AuditArgs& a) {
    a.o.prompts = read_prompt_lines(a.prompts);
    if (!a.db.empty() && a.name.empty()) throw UserError("--name must not be empty");
    auto model = load_model(a.model);
    const ModelInfo& mi = model->info();
    try {
        for (const auto& s : a.intervene) {
            auto p = steer::parse_intervention_spec(s, mi.n_layer);
            if (!p.prompts.empty()) throw std::invalid_argument(fmt::format("intervention '{}': prompts= is not used by the audit", s));
            a.o.interventions.push_back(p.iv);
        }
        if (!a.control_vector.empty()) {
            std::string path = a.control_vector;
            float scale = 1.0f;
            if (const size_t c = path.rfind(':'); c != std::string::npos) {
                try { scale = std::stof(path.substr(c + 1)); path = path.substr(0, c); } catch (...) {}
            }
            if (const std::string p = opt::domain_problem(scale, opt::kScale); !p.empty())
                throw std::invalid_argument(fmt::format("--control-vector '{}': scale {}", a.control_vector, p));
            const steer::ControlVector cv = steer::read_control_vector(path);
            steer::check_control_vector(cv, mi.architecture, mi.n_layer, mi.n_embd);
            for (auto& iv : steer::control_vector_interventions(cv, scale)) a.o.interventions.push_back(iv);
        }
        a.o.sampling.temperature = float(a.temp);
        a.o.sampling.seed = a.seed;
        if (!a.out.empty()) check_output(a.out, {a.model, a.prompts, a.o.truth_csv, a.o.qa_csv, a.db, a.control_vector.substr(0, a.control_vector.rfind(':'))}, "-o");
        checked_threads(a.o.n_threads);  // before --db creates a file
        const auto db = open_db(a.db);
        const nlohmann::json r = steer::run_control_audit(model, a.o);
        if (!a.out.empty()) write_json(a.out, r);
        if (db) put_result(*db, steer::control_audit_entry(a.name, a.o, r, a.prompts));
        if (!a.quiet) {
            fmt::print("control audit: {} prompts × {} arms ({})\n", a.o.prompts.size(), r["arms"].size(), r["prefix_sharing"].get<std::string>());
            fmt::print("{}\n", r["headline"].get<std::string>());
            for (const auto& arm : r["arms"]) {
                const auto& s = r["summary"][arm.get<std::string>()];
                auto show = [&](const char* k) {
                    if (!s.contains(k) || !s[k]["mean"].is_number()) return std::string("n/a");
                    const auto& ci = s[k]["ci95"];
                    return ci[0].is_number() ? fmt::format("{:+.4g} [{:+.4g}, {:+.4g}]", s[k]["mean"].get<double>(), ci[0].get<double>(), ci[1].get<double>())
                                             : fmt::format("{:+.4g}", s[k]["mean"].get<double>());
                };
                fmt::print("  {:<11} Δratio_norm {}  Δmean_ct {}  Δlate_ct {}  match {}\n", arm.get<std::string>(), show("delta_ratio_norm"),
                           show("delta_mean_ct"), show("delta_late_ct"), show("token_match_rate"));
            }
            if (r.contains("truth"))
                for (const auto& arm : r["arms"]) {
                    const auto& acc = r["truth"][arm.get<std::string>()]["accuracy"];
                    fmt::print("  truth accuracy {:<11} {:.3f} (n {})\n", arm.get<std::string>(), acc["mean"].is_number() ? acc["mean"].get<double>() : NAN,
                               acc["n"].get<size_t>());
                }
            if (!a.out.empty()) fmt::print("wrote {}\n", a.out);
            if (db) fmt::print("stored control_audit '{}' in {}\n", a.name, a.db);
        }
    } catch (const std::invalid_argument& e) {
        throw UserError(e.what());
    }
    return 0;
}

Verb reg_audit{"control-audit",
               "Control audit (the issue's `audit control`): intervened twins vs baseline, random-direction and zero-strength controls",
               [](CLI::App& app) {
    auto a = std::make_shared<AuditArgs>();
    app.add_option("-m,--model", a->model, "GGUF model file")->required()->check(kPath);
    app.add_option("--prompts", a->prompts, "prompt file, one prompt per line")->required()->check(kPath);
    app.add_option("--intervene", a->intervene, "intervention of the intervened arm (repeatable; grammar of generate --intervene)");
    app.add_option("--control-vector", a->control_vector, "control-vector GGUF FILE[:SCALE] as the intervention (every position)");
    app.add_option("-n,--n-predict", a->o.n_predict, "tokens per twin")->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--temp", a->temp, "sampling temperature (the same seed for every twin); 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--seed", a->seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", a->o.chat, "apply the model's chat template");
    app.add_option("--layers", a->o.layers, "captured layers")->capture_default_str();
    app.add_option("--metric-layer", a->o.metric_layer, "token-axis layer: a label (hf:5, block:3) or an integer (N = hf:N, -1 = last captured); default the last captured");
    app.add_option("--truth", a->o.truth_csv, "labelled statements CSV (statement,label), e.g. ../shared/datasets/geometry-of-truth/cities.csv");
    app.add_option("--truth-n", a->o.truth_limit, "statements used")->capture_default_str();
    app.add_option("--truth-template", a->o.truth_template, "prompt around {statement}")->capture_default_str();
    app.add_option("--label-true", a->o.label_true, "word scored for true")->capture_default_str();
    app.add_option("--label-false", a->o.label_false, "word scored for false")->capture_default_str();
    app.add_option("--qa", a->o.qa_csv, "question/answer CSV for exact-match accuracy (Question/Best Answer or prompt/answer)");
    app.add_option("--qa-n", a->o.qa_limit, "questions used")->capture_default_str();
    app.add_option("--bootstrap", a->o.bootstrap, "bootstrap resamples")->capture_default_str()->check(in(opt::kResamples));
    app.add_option("--control-seed", a->o.seed, "bootstrap and random-direction seed")->capture_default_str();
    app.add_option("-t,--threads", a->o.n_threads, "CPU threads (0 = $PHASEMAP_THREADS or all)")->check(in(opt::kThreads));
    app.add_option("-o,--output", a->out, "JSON report")->check(kPath);
    app.add_option("--db", a->db, "results DB (created when missing): stores the result as kind control_audit")->check(kPath);
    app.add_option("--name", a->name, "name of the result in the DB (replaces a stored one of that name)")->capture_default_str();
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a] {
        if (a->intervene.empty() && a->control_vector.empty()) throw UserError("declare the intervention: --intervene SPEC or --control-vector FILE");
        return run_audit(*a);
    };
}};

struct MonitorEvalArgs {
    std::string model, out, db, name = "monitor";
    steer::MonitorEvalOptions o;
    std::vector<std::string> triggers;
    double temp = 0;
    uint64_t seed = 0;
    bool quiet = false;
};

Verb reg_eval{"monitor-eval", "Monitor/guard ablation: baseline, monitor-only, guard-only, monitor+guard accuracy with CIs",
              [](CLI::App& app) {
    auto a = std::make_shared<MonitorEvalArgs>();
    app.add_option("-m,--model", a->model, "GGUF model file")->required()->check(kPath);
    app.add_option("--data", a->o.data_csv, "labelled prompts CSV (Question/Best Answer or prompt/answer columns)")->required()->check(kPath);
    app.add_option("--prompt-col", a->o.prompt_col, "prompt column");
    app.add_option("--answer-col", a->o.answer_col, "answer column");
    app.add_option("--limit", a->o.limit, "rows used")->capture_default_str();
    app.add_option("-n,--n-predict", a->o.n_predict, "tokens per run")->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--temp", a->temp, "sampling temperature; 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--seed", a->seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", a->o.chat, "apply the model's chat template");
    app.add_option("--trigger", a->triggers, "monitor trigger (generate --trigger grammar; default: collapse, spike, streak)");
    app.add_option("--guard-text", a->o.monitor.guard_text, "guard text");
    app.add_option("--guard-at", a->o.guard_at, "guard-only arm: insert after this generated token")->capture_default_str();
    app.add_option("--match", a->o.match, "contains or exact")->capture_default_str()->check(one_of({"contains", "exact"}));
    app.add_option("--bootstrap", a->o.bootstrap, "bootstrap resamples")->capture_default_str()->check(in(opt::kResamples));
    app.add_option("-t,--threads", a->o.n_threads, "CPU threads (0 = $PHASEMAP_THREADS or all)")->check(in(opt::kThreads));
    app.add_option("-o,--output", a->out, "JSON report")->check(kPath);
    app.add_option("--db", a->db, "results DB (created when missing): stores the result as kind monitor_eval")->check(kPath);
    app.add_option("--name", a->name, "name of the result in the DB (replaces a stored one of that name)")->capture_default_str();
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a] {
        if (!a->db.empty() && a->name.empty()) throw UserError("--name must not be empty");
        auto model = load_model(a->model);
        nlohmann::json r;
        std::unique_ptr<store::Store> db;
        try {
            for (const auto& t : a->triggers) a->o.monitor.triggers.push_back(steer::parse_trigger(t));
            a->o.sampling.temperature = float(a->temp);
            a->o.sampling.seed = a->seed;
            if (!a->out.empty()) check_output(a->out, {a->model, a->o.data_csv, a->db}, "-o");
            checked_threads(a->o.n_threads);  // before --db creates a file
            db = open_db(a->db);
            r = steer::run_monitor_eval(model, a->o);
        } catch (const std::invalid_argument& e) {
            throw UserError(e.what());
        }
        if (!a->out.empty()) write_json(a->out, r);
        if (db) put_result(*db, steer::monitor_eval_entry(a->name, a->o, r, a->o.data_csv));
        if (!a->quiet) {
            fmt::print("monitor-eval: {} prompts\n", r["n"].get<size_t>());
            for (const auto& arm : r["arms"]) {
                const auto& s = r["summary"][arm.get<std::string>()];
                const auto& acc = s["accuracy"];
                const auto& tr = s["trigger_rate"];
                auto f = [](const nlohmann::json& j) { return j.is_number() ? fmt::format("{:.3f}", j.get<double>()) : std::string("n/a"); };
                fmt::print("  {:<14} accuracy {} [{}, {}]  trigger rate {}\n", arm.get<std::string>(), f(acc["mean"]), f(acc["ci95"][0]),
                           f(acc["ci95"][1]), f(tr["mean"]));
            }
            if (!a->out.empty()) fmt::print("wrote {}\n", a->out);
            if (db) fmt::print("stored monitor_eval '{}' in {}\n", a->name, a->db);
        }
        return 0;
    };
}};

}  // namespace
}  // namespace phasemap::cli
