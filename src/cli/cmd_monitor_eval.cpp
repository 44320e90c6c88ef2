// `phasemap monitor-eval`: the monitor/guard ablation — baseline, monitor-only, guard-only and
// monitor+guard accuracy with bootstrap CIs on labelled prompts. Writes JSON (-o) and/or a results
// DB (--db, store::AuditEntry kind monitor_eval, plan/results.hpp).
#include <fmt/core.h>

#include "phasemap/io/files.hpp"
#include "phasemap/plan/results.hpp"
#include "phasemap/plan/steer_plan.hpp"
#include "phasemap/store/store.hpp"
#include "cli_util.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct MonitorEvalArgs {
    std::string out, db, name = "monitor";
    plan::MonitorEvalSettings set;
    double temp = 0;
    uint64_t seed = 0;
    bool quiet = false;
};

int run_monitor_eval(MonitorEvalArgs& a) {
    if (!a.db.empty() && a.name.empty()) throw UserError("--name must not be empty");
    a.set.eval.sampling.temperature = float(a.temp);
    a.set.eval.sampling.seed = a.seed;
    const plan::MonitorEvalPlan p = plan::plan_monitor_eval(a.set);
    const steer::MonitorEvalOptions& o = p.options;
    if (!a.out.empty()) check_output(a.out, {a.set.model, o.data_csv, a.db}, "-o");
    checked_threads(o.n_threads);  // before --db creates a file
    const auto db = a.db.empty() ? nullptr : store::Store::open(a.db);  // a locked or foreign DB fails before decoding
    const nlohmann::json r = steer::run_monitor_eval(p.model, o);
    if (!a.out.empty()) io::write_file_atomic(a.out, r.dump(2) + "\n");
    if (db) plan::store_result(*db, plan::monitor_eval_entry(a.name, o, r, o.data_csv));
    if (!a.quiet) {
        fmt::print("monitor-eval: {} prompts\n", r["n"].get<size_t>());
        for (const auto& arm : r["arms"]) {
            const auto& s = r["summary"][arm.get<std::string>()];
            const auto& acc = s["accuracy"];
            const auto& tr = s["trigger_rate"];
            auto f = [](const nlohmann::json& j) { return j.is_number() ? fmt::format("{:.3f}", j.get<double>()) : std::string("n/a"); };
            fmt::print("  {:<14} accuracy {} [{}, {}]  trigger rate {}\n", arm.get<std::string>(), f(acc["mean"]), f(acc["ci95"][0]),
                       f(acc["ci95"][1]), f(tr["mean"]));
        }
        if (!a.out.empty()) fmt::print("wrote {}\n", a.out);
        if (db) fmt::print("stored monitor_eval '{}' in {}\n", a.name, a.db);
    }
    return 0;
}

Verb reg_eval{"monitor-eval", "Monitor/guard ablation: baseline, monitor-only, guard-only, monitor+guard accuracy with CIs",
              [](CLI::App& app) {
    auto a = std::make_shared<MonitorEvalArgs>();
    app.add_option("-m,--model", a->set.model, "GGUF model file")->required()->check(kPath);
    app.add_option("--data", a->set.eval.data_csv, "labelled prompts CSV (Question/Best Answer or prompt/answer columns)")->required()->check(kPath);
    app.add_option("--prompt-col", a->set.eval.prompt_col, "prompt column");
    app.add_option("--answer-col", a->set.eval.answer_col, "answer column");
    app.add_option("--limit", a->set.eval.limit, "rows used")->capture_default_str();
    app.add_option("-n,--n-predict", a->set.eval.n_predict, "tokens per run")->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--temp", a->temp, "sampling temperature; 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--seed", a->seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", a->set.eval.chat, "apply the model's chat template");
    app.add_option("--trigger", a->set.triggers, "monitor trigger (generate --trigger grammar; default: collapse, spike, streak)");
    app.add_option("--guard-text", a->set.eval.monitor.guard_text, "guard text");
    app.add_option("--guard-at", a->set.eval.guard_at, "guard-only arm: insert after this generated token")->capture_default_str();
    app.add_option("--match", a->set.eval.match, "contains or exact")->capture_default_str()->check(one_of({"contains", "exact"}));
    app.add_option("--bootstrap", a->set.eval.bootstrap, "bootstrap resamples")->capture_default_str()->check(in(opt::kResamples));
    app.add_option("-t,--threads", a->set.eval.n_threads, "CPU threads (0 = $PHASEMAP_THREADS or all)")->check(in(opt::kThreads));
    app.add_option("-o,--output", a->out, "JSON report")->check(kPath);
    app.add_option("--db", a->db, "results DB (created when missing): stores the result as kind monitor_eval")->check(kPath);
    app.add_option("--name", a->name, "name of the result in the DB (replaces a stored one of that name)")->capture_default_str();
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a] { return run_monitor_eval(*a); };
}};


}  // namespace
}  // namespace phasemap::cli
