// to_json / from_json of the steer results (include/phasemap/steer/result.hpp). Each reader
// mirrors its writer field by field: a field the writer always writes is required, one it writes
// only when set is optional.
#include "phasemap/steer/result.hpp"

#include <cmath>
#include <limits>

namespace phasemap::steer {

using json = nlohmann::json;

namespace {

const double kNan = std::numeric_limits<double>::quiet_NaN();

json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

// A JSON value with its path in the document, for error messages.
struct In {
    const json& j;
    std::string path;

    [[noreturn]] void fail(const std::string& what) const { throw JsonError((path.empty() ? "(document)" : path) + ": " + what); }
    std::string sub(const std::string& key) const { return path.empty() ? key : path + "." + key; }
    bool has(const std::string& key) const { return j.is_object() && j.contains(key); }
    In operator[](const std::string& key) const {
        if (!j.is_object()) fail("expected an object");
        auto it = j.find(key);
        if (it == j.end()) In{j, sub(key)}.fail("missing");
        return In{*it, sub(key)};
    }
    std::vector<In> array() const {
        if (!j.is_array()) fail("expected an array");
        std::vector<In> v;
        for (size_t i = 0; i < j.size(); ++i) v.push_back(In{j[i], path + "[" + std::to_string(i) + "]"});
        return v;
    }
    std::vector<std::pair<std::string, In>> members() const {
        if (!j.is_object()) fail("expected an object");
        std::vector<std::pair<std::string, In>> v;
        for (const auto& [k, x] : j.items()) v.push_back({k, In{x, sub(k)}});
        return v;
    }
    std::string str() const {
        if (!j.is_string()) fail("expected a string");
        return j.get<std::string>();
    }
    double num() const {  // null (a non-finite value) reads as NaN
        if (j.is_null()) return kNan;
        if (!j.is_number()) fail("expected a number or null");
        return j.get<double>();
    }
    size_t count() const {
        if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) fail("expected a count");
        return j.get<size_t>();
    }
    int integer() const {
        if (!j.is_number_integer()) fail("expected an integer");
        return j.get<int>();
    }
    uint64_t u64() const {
        if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) fail("expected a non-negative integer");
        return j.get<uint64_t>();
    }
    bool boolean() const {
        if (!j.is_boolean()) fail("expected true or false");
        return j.get<bool>();
    }
    std::vector<std::string> strings() const {
        std::vector<std::string> v;
        for (const In& x : array()) v.push_back(x.str());
        return v;
    }
    std::array<std::string, 2> pair() const {
        const std::vector<std::string> v = strings();
        if (v.size() != 2) fail("expected two strings");
        return {v[0], v[1]};
    }
};

MeanCi mean_ci(const In& x) {
    const std::vector<In> ci = x["ci95"].array();
    if (ci.size() != 2) x["ci95"].fail("expected [lo, hi]");
    return {x["n"].count(), x["mean"].num(), ci[0].num(), ci[1].num()};
}

MeasureTable measure_table(const In& x) {
    MeasureTable t;
    for (const auto& [k, v] : x.members()) t[k] = mean_ci(v);
    return t;
}

json to_json(const MeasureTable& t) {
    json j = json::object();
    for (const auto& [k, v] : t) j[k] = to_json(v);
    return j;
}

// arm → MeasureTable, read for every arm of the document.
std::map<std::string, MeasureTable> arm_tables(const In& x, const std::vector<std::string>& arms) {
    std::map<std::string, MeasureTable> m;
    for (const auto& a : arms) m[a] = measure_table(x[a]);
    return m;
}

void append_rows(std::vector<SummaryRow>& rows, const std::string& arm, const MeasureTable& t) {
    for (const auto& [k, v] : t) rows.push_back({arm, k, v.n, v.mean, v.lo, v.hi});
}

json rows_json(const std::vector<SummaryRow>& rows) {
    json j = json::array();
    for (const auto& r : rows) j.push_back(to_json(r));
    return j;
}

json sampling_json(const capture::SamplingOptions& s) {
    return {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", s.seed}};
}

capture::SamplingOptions sampling(const In& x) {
    capture::SamplingOptions s;
    s.temperature = float(x["temperature"].num());
    s.top_k = x["top_k"].integer();
    s.top_p = float(x["top_p"].num());
    s.seed = x["seed"].u64();
    return s;
}

TriggerKind trigger_kind(const In& x) {
    const std::string name = x.str();
    for (TriggerKind k : {TriggerKind::collapse, TriggerKind::spike, TriggerKind::streak})
        if (name == trigger_name(k)) return k;
    x.fail("unknown trigger '" + name + "'");
}

SummaryRow summary_row(const In& x) {
    return {x["arm"].str(), x["measure"].str(), x["n"].count(), x["mean"].num(), x["ci_low"].num(), x["ci_high"].num()};
}

}  // namespace

json to_json(const MeanCi& c) { return {{"n", c.n}, {"mean", num(c.mean)}, {"ci95", {num(c.lo), num(c.hi)}}}; }

json to_json(const SummaryRow& r) {
    return {{"arm", r.arm}, {"measure", r.measure}, {"n", r.n}, {"mean", num(r.mean)}, {"ci_low", num(r.ci_low)},
            {"ci_high", num(r.ci_high)}};
}

SummaryRow summary_row_from_json(const json& j) { return summary_row(In{j, ""}); }

// ------------------------------------------------------------------ control audit

std::vector<SummaryRow> summary_rows(const ControlAuditResult& r) {
    std::vector<SummaryRow> rows;
    for (const auto& arm : r.arms) {
        if (auto it = r.summary.find(arm); it != r.summary.end()) append_rows(rows, arm, it->second);
        if (r.truth)
            if (auto it = r.truth->arms.find(arm); it != r.truth->arms.end()) append_rows(rows, arm, it->second);
        if (r.exact_match)
            if (auto it = r.exact_match->arms.find(arm); it != r.exact_match->arms.end()) append_rows(rows, arm, it->second);
    }
    return rows;
}

json to_json(const ControlAuditResult& r) {
    json j;
    j["model"] = {{"path", r.model.path}, {"sha256", r.model.sha256}, {"architecture", r.model.architecture},
                  {"n_layer", r.n_layer},  {"n_embd", r.n_embd},     {"recurrent", r.recurrent}};
    j["interventions"] = r.interventions;
    j["arms"] = r.arms;
    j["random_direction_control"] = r.random_direction_control;
    j["prefix_sharing"] = r.prefix_sharing;
    j["sampling"] = sampling_json(r.sampling);
    j["n_predict"] = r.n_predict;
    j["layers"] = r.layers;
    if (r.metric_layer) j["metric_layer"] = *r.metric_layer;
    j["bootstrap"] = {{"resamples", r.bootstrap.resamples}, {"seed", r.bootstrap.seed}, {"level", r.bootstrap.level},
                      {"method", r.bootstrap.method}};
    json per = json::array();
    for (const auto& p : r.per_prompt) {
        json pj;
        pj["prompt"] = p.prompt;
        for (const auto& [arm, t] : p.arms) {
            json aj;
            aj["text"] = t.text;
            aj["n_generated"] = t.n_generated;
            for (const auto& [k, v] : t.dynamics) aj[k] = num(v);
            aj["token_match_rate"] = t.token_match_rate;
            aj["first_divergence"] = t.first_divergence;
            pj[arm] = aj;
        }
        per.push_back(pj);
    }
    j["per_prompt"] = per;
    json summary = json::object();
    for (const auto& [arm, t] : r.summary) summary[arm] = to_json(t);
    j["summary"] = summary;
    if (r.truth) {
        json tj;
        tj["file"] = r.truth->file;
        tj["n"] = r.truth->n;
        tj["template"] = r.truth->prompt_template;
        tj["labels"] = r.truth->labels;
        tj["scored_tokens"] = r.truth->scored_tokens;
        for (const auto& [arm, t] : r.truth->arms) tj[arm] = to_json(t);
        j["truth"] = tj;
    }
    if (r.exact_match) {
        json qj;
        qj["file"] = r.exact_match->file;
        qj["n"] = r.exact_match->n;
        for (const auto& [arm, t] : r.exact_match->arms) qj[arm] = to_json(t);
        j["exact_match"] = qj;
    }
    j["summary_rows"] = rows_json(summary_rows(r));
    j["headline"] = r.headline;
    return j;
}

ControlAuditResult control_audit_from_json(const json& doc) {
    const In x{doc, ""};
    ControlAuditResult r;
    const In m = x["model"];
    r.model = {m["path"].str(), m["sha256"].str(), m["architecture"].str()};
    r.n_layer = m["n_layer"].integer();
    r.n_embd = m["n_embd"].integer();
    r.recurrent = m["recurrent"].boolean();
    r.interventions = x["interventions"].strings();
    r.arms = x["arms"].strings();
    r.random_direction_control = x["random_direction_control"].str();
    r.prefix_sharing = x["prefix_sharing"].str();
    r.sampling = sampling(x["sampling"]);
    r.n_predict = x["n_predict"].integer();
    r.layers = x["layers"].str();
    if (x.has("metric_layer")) r.metric_layer = x["metric_layer"].str();
    const In b = x["bootstrap"];
    r.bootstrap = {b["resamples"].count(), b["seed"].u64(), b["level"].num(), b["method"].str()};
    for (const In& p : x["per_prompt"].array()) {
        TwinPrompt tp;
        tp.prompt = p["prompt"].str();
        for (const auto& arm : r.arms) {
            const In a = p[arm];
            TwinRun t;
            t.text = a["text"].str();
            t.n_generated = a["n_generated"].integer();
            for (const char* k : kDynamicsMeasures) t.dynamics[k] = a[k].num();
            t.token_match_rate = a["token_match_rate"].num();
            t.first_divergence = a["first_divergence"].integer();
            tp.arms[arm] = std::move(t);
        }
        r.per_prompt.push_back(std::move(tp));
    }
    r.summary = arm_tables(x["summary"], r.arms);
    if (x.has("truth")) {
        const In t = x["truth"];
        TruthResult tr;
        tr.file = t["file"].str();
        tr.n = t["n"].count();
        tr.prompt_template = t["template"].str();
        tr.labels = t["labels"].pair();
        tr.scored_tokens = t["scored_tokens"].pair();
        tr.arms = arm_tables(t, r.arms);
        r.truth = std::move(tr);
    }
    if (x.has("exact_match")) {
        const In q = x["exact_match"];
        r.exact_match = ExactMatchResult{q["file"].str(), q["n"].count(), arm_tables(q, r.arms)};
    }
    r.headline = x["headline"].str();
    // summary_rows is derived from the tables above; a stored one is checked, not trusted.
    std::vector<SummaryRow> stored;
    for (const In& row : x["summary_rows"].array()) stored.push_back(summary_row(row));
    if (rows_json(stored) != rows_json(summary_rows(r))) x["summary_rows"].fail("does not match summary / truth / exact_match");
    return r;
}

// ------------------------------------------------------------------ monitor / guard evaluation

std::vector<SummaryRow> summary_rows(const MonitorEvalResult& r) {
    std::vector<SummaryRow> rows;
    for (const auto& arm : r.arms)
        if (auto it = r.summary.find(arm); it != r.summary.end()) append_rows(rows, arm, it->second);
    return rows;
}

json to_json(const MonitorEvalResult& r) {
    json j;
    j["model"] = {{"path", r.model.path}, {"sha256", r.model.sha256}, {"architecture", r.model.architecture}};
    j["data"] = r.data;
    j["n"] = r.n;
    j["match"] = r.match;
    j["guard_text"] = r.guard_text;
    j["guard_at"] = r.guard_at;
    json trig = json::array();
    for (const auto& t : r.triggers)
        trig.push_back({{"kind", trigger_name(t.kind)}, {"window", t.window}, {"threshold", t.threshold}, {"k", t.k},
                        {"min_history", t.min_history}, {"n", t.n}});
    j["triggers"] = trig;
    j["arms"] = r.arms;
    if (r.layers) j["layers"] = *r.layers;
    if (r.metric_layer) j["metric_layer"] = *r.metric_layer;
    json per = json::array();
    for (const auto& p : r.per_prompt) {
        json pj;
        pj["prompt"] = p.prompt;
        pj["answer"] = p.answer;
        for (const auto& [arm, g] : p.arms)
            pj[arm] = {{"text", g.text},
                       {"correct", g.correct},
                       {"events", g.events},
                       {"insertions", g.insertion_after_t.size()},
                       {"insertion_after_t", g.insertion_after_t},
                       {"insertion_text", g.insertion_text},
                       {"fired", g.fired}};
        per.push_back(pj);
    }
    j["per_prompt"] = per;
    json summary = json::object();
    for (const auto& [arm, t] : r.summary) summary[arm] = to_json(t);
    j["summary"] = summary;
    j["summary_rows"] = rows_json(summary_rows(r));
    return j;
}

MonitorEvalResult monitor_eval_from_json(const json& doc) {
    const In x{doc, ""};
    MonitorEvalResult r;
    const In m = x["model"];
    r.model = {m["path"].str(), m["sha256"].str(), m["architecture"].str()};
    r.data = x["data"].str();
    r.n = x["n"].count();
    r.match = x["match"].str();
    r.guard_text = x["guard_text"].str();
    r.guard_at = x["guard_at"].integer();
    for (const In& t : x["triggers"].array()) {
        TriggerSpec s;
        s.kind = trigger_kind(t["kind"]);
        s.window = t["window"].count();
        s.threshold = t["threshold"].num();
        s.k = t["k"].num();
        s.min_history = t["min_history"].count();
        s.n = t["n"].count();
        r.triggers.push_back(s);
    }
    r.arms = x["arms"].strings();
    if (x.has("layers")) r.layers = x["layers"].str();
    if (x.has("metric_layer")) r.metric_layer = x["metric_layer"].str();
    for (const In& p : x["per_prompt"].array()) {
        GuardedPrompt gp;
        gp.prompt = p["prompt"].str();
        gp.answer = p["answer"].str();
        for (const auto& arm : r.arms) {
            const In a = p[arm];
            GuardedRun g;
            g.text = a["text"].str();
            g.correct = a["correct"].boolean();
            g.fired = a["fired"].boolean();
            g.events = a["events"].strings();
            for (const In& t : a["insertion_after_t"].array()) g.insertion_after_t.push_back(t.integer());
            g.insertion_text = a["insertion_text"].strings();
            if (a["insertions"].count() != g.insertion_after_t.size() || g.insertion_text.size() != g.insertion_after_t.size())
                a["insertions"].fail("does not match insertion_after_t / insertion_text");
            gp.arms[arm] = std::move(g);
        }
        r.per_prompt.push_back(std::move(gp));
    }
    r.summary = arm_tables(x["summary"], r.arms);
    std::vector<SummaryRow> stored;
    for (const In& row : x["summary_rows"].array()) stored.push_back(summary_row(row));
    if (rows_json(stored) != rows_json(summary_rows(r))) x["summary_rows"].fail("does not match summary");
    return r;
}

}  // namespace phasemap::steer
