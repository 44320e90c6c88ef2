// `phasemap control-audit` (the issue's `phasemap audit control`; `audit` belongs to the panel
// audits): baseline vs intervened twins, random-direction and zero-strength controls, Δ dynamics
// and Δ semantics with bootstrap CIs. Binds the flags, makes one library call
// (plan::control_audit: plan, run, write -o, store in --db as kind control_audit) and prints.
#include <fmt/core.h>

#include <cmath>

#include "phasemap/plan/results.hpp"
#include "cli_util.hpp"
#include "driver_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct AuditArgs {
    std::string prompts;
    plan::ControlAuditSettings set;
    DriverFlags flags{.out = {.name = "control"}};
};

std::string show(const steer::MeasureTable& s, const char* k) {
    const auto it = s.find(k);
    if (it == s.end() || !std::isfinite(it->second.mean)) return "n/a";
    const steer::MeanCi& c = it->second;
    return std::isfinite(c.lo) ? fmt::format("{:+.4g} [{:+.4g}, {:+.4g}]", c.mean, c.lo, c.hi) : fmt::format("{:+.4g}", c.mean);
}

int run_audit(AuditArgs& a) {
    a.set.audit.prompts = read_prompt_lines(a.prompts);
    a.flags.apply(a.set.audit);
    const steer::ControlAuditResult r = plan::control_audit(a.set, a.prompts, a.flags.out);
    if (a.flags.quiet) return 0;
    fmt::print("control audit: {} prompts × {} arms ({})\n", r.per_prompt.size(), r.arms.size(), r.prefix_sharing);
    fmt::print("{}\n", r.headline);
    for (const auto& arm : r.arms) {
        const steer::MeasureTable& s = r.summary.at(arm);
        fmt::print("  {:<11} Δratio_norm {}  Δmean_ct {}  Δlate_ct {}  match {}\n", arm, show(s, "delta_ratio_norm"), show(s, "delta_mean_ct"),
                   show(s, "delta_late_ct"), show(s, "token_match_rate"));
    }
    if (r.truth)
        for (const auto& arm : r.arms) {
            const steer::MeanCi& acc = r.truth->arms.at(arm).at("accuracy");
            fmt::print("  truth accuracy {:<11} {:.3f} (n {})\n", arm, std::isfinite(acc.mean) ? acc.mean : NAN, acc.n);
        }
    if (!a.flags.out.json.empty()) fmt::print("wrote {}\n", a.flags.out.json);
    if (!a.flags.out.db.empty()) fmt::print("stored control_audit '{}' in {}\n", a.flags.out.name, a.flags.out.db);
    return 0;
}

Verb reg_audit{"control-audit",
               "Control audit (the issue's `audit control`): intervened twins vs baseline, random-direction and zero-strength controls",
               [](CLI::App& app) {
    auto a = std::make_shared<AuditArgs>();
    bind_driver_flags(app, a->set.model, a->set.audit, a->flags, "control_audit", "twin");
    app.add_option("--prompts", a->prompts, "prompt file, one prompt per line")->required()->check(kPath);
    app.add_option("--intervene", a->set.intervene, "intervention of the intervened arm (repeatable; grammar of generate --intervene)");
    app.add_option("--control-vector", a->set.control_vector, "control-vector GGUF FILE[:SCALE] as the intervention (every position)");
    app.add_option("--truth", a->set.audit.truth_csv, "labelled statements CSV (statement,label), e.g. ../shared/datasets/geometry-of-truth/cities.csv");
    app.add_option("--truth-n", a->set.audit.truth_limit, "statements used")->capture_default_str();
    app.add_option("--truth-template", a->set.audit.truth_template, "prompt around {statement}")->capture_default_str();
    app.add_option("--label-true", a->set.audit.label_true, "word scored for true")->capture_default_str();
    app.add_option("--label-false", a->set.audit.label_false, "word scored for false")->capture_default_str();
    app.add_option("--qa", a->set.audit.qa_csv, "question/answer CSV for exact-match accuracy (Question/Best Answer or prompt/answer)");
    app.add_option("--qa-n", a->set.audit.qa_limit, "questions used")->capture_default_str();
    app.add_option("--control-seed", a->set.audit.seed, "bootstrap and random-direction seed")->capture_default_str();
    return [a] { return run_audit(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
