// `phasemap control-audit` (the issue's `phasemap audit control`; `audit` belongs to the panel
// audits): baseline vs intervened twins, random-direction and zero-strength controls, Δ dynamics
// and Δ semantics with bootstrap CIs. Writes JSON (-o) and/or a results DB (--db, store::AuditEntry
// kind control_audit, plan/results.hpp). The options come from the run plan (plan/steer_plan.hpp).
#include <fmt/core.h>

#include <cmath>

#include "phasemap/io/files.hpp"
#include "phasemap/plan/results.hpp"
#include "phasemap/plan/steer_plan.hpp"
#include "phasemap/store/store.hpp"
#include "cli_util.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct AuditArgs {
    std::string prompts, out, db, name = "control";
    plan::ControlAuditSettings set;
    double temp = 0;
    uint64_t seed = 0;
    bool quiet = false;
};

int run_audit(AuditArgs& a) {
    a.set.audit.prompts = read_prompt_lines(a.prompts);
    if (!a.db.empty() && a.name.empty()) throw UserError("--name must not be empty");
    a.set.audit.sampling.temperature = float(a.temp);
    a.set.audit.sampling.seed = a.seed;
    const plan::ControlAuditPlan p = plan::plan_control_audit(a.set);
    const steer::AuditOptions& o = p.options;
    if (!a.out.empty()) {
        std::vector<std::string> inputs = plan::input_files(a.set);
        inputs.insert(inputs.end(), {a.prompts, o.truth_csv, o.qa_csv, a.db});
        check_output(a.out, inputs, "-o");
    }
    checked_threads(o.n_threads);  // before --db creates a file
    const auto db = a.db.empty() ? nullptr : store::Store::open(a.db);  // a locked or foreign DB fails before decoding
    const nlohmann::json r = steer::run_control_audit(p.model, o);
    if (!a.out.empty()) io::write_file_atomic(a.out, r.dump(2) + "\n");
    if (db) plan::store_result(*db, plan::control_audit_entry(a.name, o, r, a.prompts));
    if (!a.quiet) {
        fmt::print("control audit: {} prompts × {} arms ({})\n", o.prompts.size(), r["arms"].size(), r["prefix_sharing"].get<std::string>());
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
    return 0;
}

Verb reg_audit{"control-audit",
               "Control audit (the issue's `audit control`): intervened twins vs baseline, random-direction and zero-strength controls",
               [](CLI::App& app) {
    auto a = std::make_shared<AuditArgs>();
    app.add_option("-m,--model", a->set.model, "GGUF model file")->required()->check(kPath);
    app.add_option("--prompts", a->prompts, "prompt file, one prompt per line")->required()->check(kPath);
    app.add_option("--intervene", a->set.intervene, "intervention of the intervened arm (repeatable; grammar of generate --intervene)");
    app.add_option("--control-vector", a->set.control_vector, "control-vector GGUF FILE[:SCALE] as the intervention (every position)");
    app.add_option("-n,--n-predict", a->set.audit.n_predict, "tokens per twin")->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--temp", a->temp, "sampling temperature (the same seed for every twin); 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--seed", a->seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", a->set.audit.chat, "apply the model's chat template");
    app.add_option("--layers", a->set.audit.layers, "captured layers")->capture_default_str();
    app.add_option("--metric-layer", a->set.audit.metric_layer, "token-axis layer: a label (hf:5, block:3) or an integer (N = hf:N, -1 = last captured); default the last captured");
    app.add_option("--truth", a->set.audit.truth_csv, "labelled statements CSV (statement,label), e.g. ../shared/datasets/geometry-of-truth/cities.csv");
    app.add_option("--truth-n", a->set.audit.truth_limit, "statements used")->capture_default_str();
    app.add_option("--truth-template", a->set.audit.truth_template, "prompt around {statement}")->capture_default_str();
    app.add_option("--label-true", a->set.audit.label_true, "word scored for true")->capture_default_str();
    app.add_option("--label-false", a->set.audit.label_false, "word scored for false")->capture_default_str();
    app.add_option("--qa", a->set.audit.qa_csv, "question/answer CSV for exact-match accuracy (Question/Best Answer or prompt/answer)");
    app.add_option("--qa-n", a->set.audit.qa_limit, "questions used")->capture_default_str();
    app.add_option("--bootstrap", a->set.audit.bootstrap, "bootstrap resamples")->capture_default_str()->check(in(opt::kResamples));
    app.add_option("--control-seed", a->set.audit.seed, "bootstrap and random-direction seed")->capture_default_str();
    app.add_option("-t,--threads", a->set.audit.n_threads, "CPU threads (0 = $PHASEMAP_THREADS or all)")->check(in(opt::kThreads));
    app.add_option("-o,--output", a->out, "JSON report")->check(kPath);
    app.add_option("--db", a->db, "results DB (created when missing): stores the result as kind control_audit")->check(kPath);
    app.add_option("--name", a->name, "name of the result in the DB (replaces a stored one of that name)")->capture_default_str();
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a] { return run_audit(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
