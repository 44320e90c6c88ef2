// Control audit and monitor/guard evaluation (include/phasemap/steer/eval.hpp).
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/layer_id.hpp"
#include "phasemap/metrics/output_states.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/steer/eval.hpp"

namespace phasemap::steer {

using capture::Intervention;
using capture::InterventionOp;
using capture::Request;
using capture::RecordingSink;
using capture::RunRecord;

namespace {

std::vector<RunRecord> run_all(capture::Engine& e, const std::vector<Request>& reqs) {
    std::vector<RecordingSink> sinks(reqs.size());
    e.generate(reqs, [&](size_t i) -> capture::RunSink& { return sinks[i]; });
    std::vector<RunRecord> out;
    out.reserve(sinks.size());
    for (auto& s : sinks) out.push_back(std::move(s.record));
    return out;
}

// Dynamics of one run: ratio_norm, mean ct, late_ct on captured layer `layer`; state rates.
std::map<std::string, double> dynamics(const RunRecord& r, size_t layer, const metrics::TokenAxisOptions& axis,
                                       const metrics::StateThresholds& th) {
    std::map<std::string, double> m;
    const size_t T = r.tokens.size(), Lp = r.start.layers.size(), d = size_t(r.start.n_embd);
    if (Lp > 0 && T > 0 && layer < Lp) {
        const metrics::RowsView<float> rows(r.states.data() + layer * d, T, d, Lp * d);
        const metrics::TokenAxisResult ta = metrics::token_axis(rows, axis);
        m["ratio_norm"] = ta.ratio_norm.v;
        m["late_ct"] = ta.late_ct.v;
        double s = 0;
        for (double x : ta.series.ct) s += x;
        m["mean_ct"] = ta.series.ct.empty() ? metrics::kNaN : s / double(ta.series.ct.size());
    }
    std::vector<metrics::TokenProbStats> stats;
    for (const auto& t : r.tokens) stats.push_back(t.stats);
    const metrics::OutputStatesResult os = metrics::output_states(stats, th);
    for (auto s : metrics::kOutputStates) m[fmt::format("rate_{}", metrics::to_string(s))] = os.rates[size_t(s)];
    double ent = 0;
    for (const auto& st : stats) ent += st.entropy;
    m["mean_entropy"] = stats.empty() ? metrics::kNaN : ent / double(stats.size());
    return m;
}

std::vector<std::string> labels(const capture::Engine& e) {
    std::vector<std::string> v;
    for (const auto& l : e.layers()) v.push_back(l.label);
    return v;
}

std::vector<int32_t> ids_of(const RunRecord& r) {
    std::vector<int32_t> v;
    for (const auto& t : r.tokens) v.push_back(t.id);
    return v;
}

std::string column_or(const CsvTable& t, const std::string& want, const std::string& a, const std::string& b) {
    if (!want.empty()) return t.header[t.column(want)];
    for (const auto& h : t.header)
        if (h == a) return a;
    return t.header[t.column(b)];
}

}  // namespace

Intervention zero_strength(const Intervention& iv) {
    Intervention z = iv;
    switch (iv.op) {
        case InterventionOp::scale: z.strength = 1.0; break;
        case InterventionOp::clamp_norm: z.strength = std::numeric_limits<double>::max(); break;
        default: z.strength = 0.0; break;
    }
    return z;
}

ControlAuditResult run_control_audit(const std::shared_ptr<capture::Model>& model, const AuditOptions& opt) {
    const capture::ModelInfo& mi = model->info();
    if (opt.prompts.empty()) throw std::invalid_argument("control audit: no prompt");
    if (opt.interventions.empty()) throw std::invalid_argument("control audit: no intervention declared (--intervene or --control-vector)");
    opt.axis.validate();
    // Arms.
    std::vector<std::string> arms = {"baseline", "intervened", "zero"};
    std::map<std::string, std::vector<Intervention>> arm_ivs;
    arm_ivs["baseline"] = {};
    arm_ivs["intervened"] = opt.interventions;
    for (const auto& iv : opt.interventions) arm_ivs["zero"].push_back(zero_strength(iv));
    const bool random_ok = std::all_of(opt.interventions.begin(), opt.interventions.end(),
                                       [](const Intervention& iv) { return capture::op_takes_vector(iv.op); });
    if (random_ok) {
        arms.insert(arms.begin() + 2, "random");
        size_t k = 0;
        for (const auto& iv : opt.interventions) {
            Intervention r = iv;
            r.random_direction = true;
            r.seed = opt.seed + 7919 * ++k;
            arm_ivs["random"].push_back(r);
        }
    }
    // Validate every arm before generating anything.
    for (auto& [name, ivs] : arm_ivs) {
        std::vector<Intervention> copy = ivs;
        capture::resolve_interventions(copy, mi.n_layer, mi.n_embd);
    }
    const size_t A = arms.size();

    ControlAuditResult report;
    report.model = {mi.path.string(), mi.sha256, mi.architecture};
    report.n_layer = mi.n_layer;
    report.n_embd = mi.n_embd;
    report.recurrent = mi.recurrent;
    for (const auto& iv : opt.interventions) report.interventions.push_back(iv.describe());
    report.arms = arms;
    report.random_direction_control = random_ok ? "equal-norm random directions (seeded)" : "n/a: only add / project-out have a direction";
    report.prefix_sharing = mi.recurrent ? "prefill per twin (recurrent memory: no partial-sequence fork)" : "llama_memory_seq_cp fork of the prompt prefix";
    report.sampling = opt.sampling;
    report.n_predict = opt.n_predict;
    report.layers = opt.layers;
    report.bootstrap = {opt.bootstrap, opt.seed, 0.95, "percentile, over prompts (paired)"};

    // ---- dynamics + text agreement
    capture::EngineOptions eo;
    eo.layers = opt.layers;
    eo.n_parallel = int(A);
    eo.n_threads = opt.n_threads;
    eo.share_prompt_prefix = true;
    std::vector<Request> reqs;
    for (const auto& p : opt.prompts)
        for (const auto& a : arms) {
            Request r;
            r.prompt = p;
            r.chat = opt.chat;
            r.n_predict = opt.n_predict;
            r.sampling = opt.sampling;
            r.interventions = arm_ivs[a];
            reqs.push_back(std::move(r));
        }
    std::vector<RunRecord> runs;
    size_t layer = 0;  // the token axis's captured layer: --metric-layer (integer rule of layer_id.hpp), else the last
    {
        capture::Engine engine(model, eo);
        const std::vector<std::string> names = labels(engine);
        if (!names.empty()) layer = opt.metric_layer.empty() ? names.size() - 1 : metrics::resolve_layer_choice(opt.metric_layer, names);
        if (!opt.metric_layer.empty()) report.metric_layer = names.empty() ? "" : names[layer];
        runs = run_all(engine, reqs);
    }
    std::map<std::string, std::map<std::string, std::vector<double>>> values;  // arm → metric → per prompt
    std::map<std::string, std::vector<double>> match, first_div;
    for (size_t p = 0; p < opt.prompts.size(); ++p) {
        TwinPrompt tp;
        tp.prompt = opt.prompts[p];
        const RunRecord& base = runs[p * A];
        for (size_t a = 0; a < A; ++a) {
            const RunRecord& r = runs[p * A + a];
            const auto dm = dynamics(r, layer, opt.axis, opt.states);
            TwinRun tw;
            tw.text = r.end.text;
            tw.n_generated = r.end.n_generated;
            for (const char* k : kDynamicsMeasures) {
                const auto it = dm.find(k);
                const double v = it == dm.end() ? metrics::kNaN : it->second;
                values[arms[a]][k].push_back(v);
                tw.dynamics[k] = v;
            }
            const Agreement g = token_agreement(ids_of(base), ids_of(r));
            tw.token_match_rate = g.match_rate;
            tw.first_divergence = g.first_divergence;
            match[arms[a]].push_back(g.match_rate);
            first_div[arms[a]].push_back(g.first_divergence < 0 ? double(r.tokens.size()) : double(g.first_divergence));
            tp.arms[arms[a]] = std::move(tw);
        }
        report.per_prompt.push_back(std::move(tp));
    }

    // The bootstrap seeds are drawn in this order (arm, measure); the documents depend on it.
    uint64_t bseed = opt.seed;
    for (size_t a = 0; a < A; ++a) {
        MeasureTable& sj = report.summary[arms[a]];
        for (const std::string k : kDynamicsMeasures) {
            sj[k] = bootstrap_mean(values[arms[a]][k], opt.bootstrap, ++bseed);
            if (a > 0) {
                std::vector<double> diff;
                for (size_t p = 0; p < opt.prompts.size(); ++p) diff.push_back(values[arms[a]][k][p] - values["baseline"][k][p]);
                sj["delta_" + k] = bootstrap_mean(diff, opt.bootstrap, ++bseed);
            }
        }
        sj["token_match_rate"] = bootstrap_mean(match[arms[a]], opt.bootstrap, ++bseed);
        sj["first_divergence"] = bootstrap_mean(first_div[arms[a]], opt.bootstrap, ++bseed);
    }

    // ---- labelled true/false statements: next-token logits of the label pair at t = 0
    if (!opt.truth_csv.empty()) {
        const CsvTable t = read_csv(opt.truth_csv);
        const size_t cs = t.column("statement"), cl = t.column("label");
        const auto lt = model->tokenize(opt.label_true, false), lf = model->tokenize(opt.label_false, false);
        size_t k = 0;
        while (k < lt.size() && k < lf.size() && lt[k] == lf[k]) ++k;
        if (k == lt.size() || k == lf.size())
            throw std::invalid_argument(fmt::format("labels '{}' and '{}' do not differ in a token", opt.label_true, opt.label_false));
        const std::string shared = model->detokenize(std::span<const int32_t>(lt.data(), k));
        const int32_t tok_t = lt[k], tok_f = lf[k];
        capture::EngineOptions te;
        te.layers = "none";
        te.save_logits = true;
        te.n_parallel = int(A);
        te.n_threads = opt.n_threads;
        te.share_prompt_prefix = true;
        std::vector<Request> treqs;
        std::vector<int> labels;
        for (size_t i = 0; i < t.rows.size() && labels.size() < opt.truth_limit; ++i) {
            const std::string& lab = t.rows[i][cl];
            if (lab != "0" && lab != "1") throw std::invalid_argument(fmt::format("'{}' row {}: label '{}' is not 0 or 1", opt.truth_csv, i + 2, lab));
            labels.push_back(lab == "1");
            std::string prompt = opt.truth_template;
            const size_t at = prompt.find("{statement}");
            if (at == std::string::npos) throw std::invalid_argument("--truth-template must contain {statement}");
            prompt.replace(at, 11, t.rows[i][cs]);
            prompt += shared;
            for (const auto& a : arms) {
                Request r;
                r.prompt = prompt;
                r.chat = opt.chat;
                r.n_predict = 1;
                r.interventions = arm_ivs[a];
                treqs.push_back(std::move(r));
            }
        }
        std::vector<RunRecord> truns;
        {
            capture::Engine engine(model, te);
            std::vector<RecordingSink> sinks(treqs.size());
            engine.generate(treqs, [&](size_t i) -> capture::RunSink& { return sinks[i]; });
            for (auto& s : sinks) truns.push_back(std::move(s.record));
        }
        TruthResult tj;
        tj.file = opt.truth_csv;
        tj.n = labels.size();
        tj.prompt_template = opt.truth_template;
        tj.labels = {opt.label_true, opt.label_false};
        tj.scored_tokens = {model->token_text(tok_t), model->token_text(tok_f)};
        std::map<std::string, std::vector<double>> correct;
        for (size_t i = 0; i < labels.size(); ++i)
            for (size_t a = 0; a < A; ++a) {
                const auto& lg = truns[i * A + a].logits;
                const bool pred = lg.at(size_t(tok_t)) > lg.at(size_t(tok_f));
                correct[arms[a]].push_back(pred == bool(labels[i]) ? 1.0 : 0.0);
            }
        for (size_t a = 0; a < A; ++a) {
            MeasureTable& aj = tj.arms[arms[a]];
            aj["accuracy"] = bootstrap_mean(correct[arms[a]], opt.bootstrap, ++bseed);
            if (a > 0) {
                std::vector<double> diff;
                for (size_t i = 0; i < labels.size(); ++i) diff.push_back(correct[arms[a]][i] - correct["baseline"][i]);
                aj["delta_accuracy"] = bootstrap_mean(diff, opt.bootstrap, ++bseed);
            }
        }
        report.truth = std::move(tj);
    }

    // ---- exact-match answers
    if (!opt.qa_csv.empty()) {
        const CsvTable t = read_csv(opt.qa_csv);
        const size_t cq = t.column(column_or(t, opt.qa_question, "Question", "prompt"));
        const size_t ca = t.column(column_or(t, opt.qa_answer, "Best Answer", "answer"));
        std::vector<Request> qreqs;
        std::vector<std::string> answers;
        for (size_t i = 0; i < t.rows.size() && answers.size() < opt.qa_limit; ++i) {
            answers.push_back(t.rows[i][ca]);
            for (const auto& a : arms) {
                Request r;
                r.prompt = t.rows[i][cq];
                r.chat = opt.chat;
                r.n_predict = opt.qa_n_predict;
                r.sampling = opt.sampling;
                r.interventions = arm_ivs[a];
                qreqs.push_back(std::move(r));
            }
        }
        capture::EngineOptions qe;
        qe.layers = "none";
        qe.n_parallel = int(A);
        qe.n_threads = opt.n_threads;
        qe.share_prompt_prefix = true;
        std::vector<RunRecord> qruns;
        {
            capture::Engine engine(model, qe);
            qruns = run_all(engine, qreqs);
        }
        ExactMatchResult qj;
        qj.file = opt.qa_csv;
        qj.n = answers.size();
        std::map<std::string, std::vector<double>> correct;
        for (size_t i = 0; i < answers.size(); ++i)
            for (size_t a = 0; a < A; ++a) correct[arms[a]].push_back(exact_match(qruns[i * A + a].end.text, answers[i]) ? 1.0 : 0.0);
        for (size_t a = 0; a < A; ++a) {
            MeasureTable& aj = qj.arms[arms[a]];
            aj["exact_match"] = bootstrap_mean(correct[arms[a]], opt.bootstrap, ++bseed);
            if (a > 0) {
                std::vector<double> diff;
                for (size_t i = 0; i < answers.size(); ++i) diff.push_back(correct[arms[a]][i] - correct["baseline"][i]);
                aj["delta_exact_match"] = bootstrap_mean(diff, opt.bootstrap, ++bseed);
            }
        }
        report.exact_match = std::move(qj);
    }

    // Headline: "dynamics moved by X, accuracy by Y", beside the random-direction control.
    auto finite = [](double x) { return std::isfinite(x) ? x : metrics::kNaN; };
    auto mean_of = [&](const std::string& arm, const std::string& key) { return finite(report.summary.at(arm).at(key).mean); };
    std::string headline = fmt::format("intervened: Δratio_norm {:+.4g}, Δmean_ct {:+.4g}, token match {:.3f}",
                                       mean_of("intervened", "delta_ratio_norm"), mean_of("intervened", "delta_mean_ct"),
                                       mean_of("intervened", "token_match_rate"));
    if (report.truth) headline += fmt::format(", Δaccuracy {:+.3f}", finite(report.truth->arms.at("intervened").at("delta_accuracy").mean));
    if (random_ok)
        headline += fmt::format(" | random direction: Δratio_norm {:+.4g}, Δmean_ct {:+.4g}, token match {:.3f}",
                                mean_of("random", "delta_ratio_norm"), mean_of("random", "delta_mean_ct"),
                                mean_of("random", "token_match_rate"));
    report.headline = headline;
    return report;
}

// ------------------------------------------------------------------ monitor / guard evaluation

namespace {

// Guard text after a fixed generated token, whatever the dynamics (the guard-only arm).
class FixedGuard : public capture::GenerationController {
public:
    FixedGuard(int at, std::string text) : at_(at), text_(std::move(text)) {}
    capture::StepAction after_token(const capture::TokenRecord& rec, std::span<const float>) override {
        capture::StepAction a;
        if (rec.t == at_) {
            a.insert_text = text_;
            a.events.push_back("guard-only: fixed insertion");
        }
        return a;
    }

private:
    int at_;
    std::string text_;
};

bool contains_ci(const std::string& hay, const std::string& needle) {
    auto low = [](std::string s) {
        for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
        return s;
    };
    const std::string n = low(needle);
    return !n.empty() && low(hay).find(n) != std::string::npos;
}

}  // namespace

MonitorEvalResult run_monitor_eval(const std::shared_ptr<capture::Model>& model, const MonitorEvalOptions& opt) {
    const capture::ModelInfo& mi = model->info();
    const CsvTable t = read_csv(opt.data_csv);
    const size_t cp = t.column(column_or(t, opt.prompt_col, "Question", "prompt"));
    const size_t ca = t.column(column_or(t, opt.answer_col, "Best Answer", "answer"));
    if (opt.match != "contains" && opt.match != "exact") throw std::invalid_argument("--match must be contains or exact");
    if (opt.guard_at < 0) throw std::invalid_argument("--guard-at must be ≥ 0");
    MonitorOptions mon = opt.monitor;
    mon.validate();
    const std::vector<std::string> arms = {"baseline", "monitor_only", "guard_only", "monitor_guard"};
    const size_t A = arms.size();
    std::vector<std::string> prompts, answers;
    for (size_t i = 0; i < t.rows.size() && prompts.size() < opt.limit; ++i) {
        prompts.push_back(t.rows[i][cp]);
        answers.push_back(t.rows[i][ca]);
    }
    if (prompts.empty()) throw std::invalid_argument(fmt::format("'{}' holds no row", opt.data_csv));

    capture::EngineOptions eo;
    eo.layers = opt.layers;
    eo.n_parallel = int(A);
    eo.n_threads = opt.n_threads;
    eo.share_prompt_prefix = true;
    capture::Engine engine(model, eo);
    const size_t Lp = engine.layers().size(), d = size_t(mi.n_embd);
    if (Lp == 0) throw std::invalid_argument("monitor-eval: the monitor needs captured layers (--layers is none)");
    std::optional<std::string> metric_label;
    if (!opt.metric_layer.empty()) {
        mon.layer = metrics::resolve_layer_choice(opt.metric_layer, labels(engine));
        metric_label = engine.layers()[mon.layer].label;
    }

    std::vector<std::unique_ptr<capture::GenerationController>> ctrls;
    std::vector<Monitor*> monitors;
    std::vector<Request> reqs;
    for (size_t i = 0; i < prompts.size(); ++i)
        for (size_t a = 0; a < A; ++a) {
            Request r;
            r.prompt = prompts[i];
            r.chat = opt.chat;
            r.n_predict = opt.n_predict;
            r.sampling = opt.sampling;
            Monitor* m = nullptr;
            if (arms[a] == "monitor_only" || arms[a] == "monitor_guard") {
                MonitorOptions mo = mon;
                mo.action = arms[a] == "monitor_only" ? ActionKind::log : ActionKind::guard;
                auto mp = std::make_unique<Monitor>(mo, Lp, d);
                m = mp.get();
                ctrls.push_back(std::move(mp));
            } else if (arms[a] == "guard_only") {
                ctrls.push_back(std::make_unique<FixedGuard>(opt.guard_at, mon.guard_text));
            }
            if (arms[a] != "baseline") r.controller = ctrls.back().get();
            monitors.push_back(m);
            reqs.push_back(std::move(r));
        }
    std::vector<RunRecord> runs = run_all(engine, reqs);

    MonitorEvalResult report;
    report.model = {mi.path.string(), mi.sha256, mi.architecture};
    report.data = opt.data_csv;
    report.n = prompts.size();
    report.match = opt.match;
    report.guard_text = mon.guard_text;
    report.guard_at = opt.guard_at;
    report.triggers = mon.triggers.empty() ? std::vector<TriggerSpec>{TriggerSpec{TriggerKind::collapse}, TriggerSpec{TriggerKind::spike},
                                                                      TriggerSpec{TriggerKind::streak}}
                                           : mon.triggers;
    report.arms = arms;
    if (metric_label) report.layers = opt.layers, report.metric_layer = metric_label;
    std::map<std::string, std::vector<double>> correct, fired, inserted;
    for (size_t i = 0; i < prompts.size(); ++i) {
        GuardedPrompt pj;
        pj.prompt = prompts[i];
        pj.answer = answers[i];
        for (size_t a = 0; a < A; ++a) {
            const RunRecord& r = runs[i * A + a];
            const bool ok = opt.match == "exact" ? exact_match(r.end.text, answers[i]) : contains_ci(r.end.text, answers[i]);
            correct[arms[a]].push_back(ok ? 1.0 : 0.0);
            const Monitor* m = monitors[i * A + a];
            fired[arms[a]].push_back(m && m->fired() ? 1.0 : 0.0);
            inserted[arms[a]].push_back(r.end.insertions.empty() ? 0.0 : 1.0);
            GuardedRun g;
            g.text = r.end.text;
            g.correct = ok;
            g.events = r.end.events;
            for (const auto& in : r.end.insertions) g.insertion_after_t.push_back(in.after_t), g.insertion_text.push_back(in.text);
            g.fired = m && m->fired();
            pj.arms[arms[a]] = std::move(g);
        }
        report.per_prompt.push_back(std::move(pj));
    }
    uint64_t bseed = opt.seed;
    for (size_t a = 0; a < A; ++a) {
        MeasureTable& aj = report.summary[arms[a]];
        aj["accuracy"] = bootstrap_mean(correct[arms[a]], opt.bootstrap, ++bseed);
        aj["trigger_rate"] = bootstrap_mean(fired[arms[a]], opt.bootstrap, ++bseed);
        aj["insertion_rate"] = bootstrap_mean(inserted[arms[a]], opt.bootstrap, ++bseed);
        if (a > 0) {
            std::vector<double> diff;
            for (size_t i = 0; i < prompts.size(); ++i) diff.push_back(correct[arms[a]][i] - correct["baseline"][i]);
            aj["delta_accuracy"] = bootstrap_mean(diff, opt.bootstrap, ++bseed);
        }
    }
    return report;
}

}  // namespace phasemap::steer
