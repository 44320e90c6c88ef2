// `phasemap monitor-eval`: the monitor/guard ablation — baseline, monitor-only, guard-only and
// monitor+guard accuracy with bootstrap CIs on labelled prompts. Binds the flags, makes one
// library call (plan::monitor_eval: plan, run, write -o, store in --db as kind monitor_eval) and
// prints.
#include <fmt/core.h>

#include <cmath>

#include "phasemap/plan/results.hpp"
#include "cli_util.hpp"
#include "driver_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct MonitorEvalArgs {
    plan::MonitorEvalSettings set;
    DriverFlags flags{.out = {.name = "monitor"}};
};

std::string f3(double x) { return std::isfinite(x) ? fmt::format("{:.3f}", x) : std::string("n/a"); }

int run_monitor_eval(MonitorEvalArgs& a) {
    a.flags.apply(a.set.eval);
    const steer::MonitorEvalResult r = plan::monitor_eval(a.set, a.flags.out);
    if (a.flags.quiet) return 0;
    fmt::print("monitor-eval: {} prompts\n", r.n);
    for (const auto& arm : r.arms) {
        const steer::MeasureTable& s = r.summary.at(arm);
        const steer::MeanCi &acc = s.at("accuracy"), &tr = s.at("trigger_rate");
        fmt::print("  {:<14} accuracy {} [{}, {}]  trigger rate {}\n", arm, f3(acc.mean), f3(acc.lo), f3(acc.hi), f3(tr.mean));
    }
    if (!a.flags.out.json.empty()) fmt::print("wrote {}\n", a.flags.out.json);
    if (!a.flags.out.db.empty()) fmt::print("stored monitor_eval '{}' in {}\n", a.flags.out.name, a.flags.out.db);
    return 0;
}

Verb reg_eval{"monitor-eval", "Monitor/guard ablation: baseline, monitor-only, guard-only, monitor+guard accuracy with CIs",
              [](CLI::App& app) {
    auto a = std::make_shared<MonitorEvalArgs>();
    bind_driver_flags(app, a->set.model, a->set.eval, a->flags, "monitor_eval", "run");
    app.add_option("--data", a->set.eval.data_csv, "labelled prompts CSV (Question/Best Answer or prompt/answer columns)")->required()->check(kPath);
    app.add_option("--prompt-col", a->set.eval.prompt_col, "prompt column");
    app.add_option("--answer-col", a->set.eval.answer_col, "answer column");
    app.add_option("--limit", a->set.eval.limit, "rows used")->capture_default_str();
    app.add_option("--trigger", a->set.triggers, "monitor trigger (generate --trigger grammar; default: collapse, spike, streak)");
    app.add_option("--guard-text", a->set.eval.monitor.guard_text, "guard text");
    app.add_option("--guard-at", a->set.eval.guard_at, "guard-only arm: insert after this generated token")->capture_default_str();
    app.add_option("--match", a->set.eval.match, "contains or exact")->capture_default_str()->check(one_of({"contains", "exact"}));
    return [a] { return run_monitor_eval(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
