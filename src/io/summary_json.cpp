#include "phasemap/io/summary_json.hpp"

#include <cmath>

#include "phasemap/metrics/registry.hpp"

namespace phasemap::io {

using nlohmann::json;
using namespace phasemap::metrics;

namespace {

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

void put_value(json& obj, const std::string& key, const Value& v) {
    obj[key] = v.ok() ? num(v.v) : json(nullptr);
    if (!v.ok()) obj[key + "_missing_reason"] = v.missing_reason;
}

json summary_obj(const Summary& s) {
    return json{{"n", s.n}, {"median", s.median.ok() ? num(s.median.v) : json(nullptr)},
                {"q1", s.q1.ok() ? num(s.q1.v) : json(nullptr)}, {"q3", s.q3.ok() ? num(s.q3.v) : json(nullptr)}};
}

json series(const std::vector<double>& v) {
    json a = json::array();
    for (double x : v) a.push_back(num(x));
    return a;
}

json control_obj(const ControlResult& c) {
    json o{{"metric", c.metric}, {"shuffles", c.shuffles}, {"n_valid", c.n_valid}, {"tail", std::string(to_string(c.tail))}};
    put_value(o, "real", c.real);
    put_value(o, "mean", c.mean);
    put_value(o, "sd", c.sd);
    put_value(o, "q025", c.q025);
    put_value(o, "q50", c.q50);
    put_value(o, "q975", c.q975);
    put_value(o, "p_greater", c.p_greater);
    put_value(o, "p_less", c.p_less);
    put_value(o, "p_value", c.p_value);
    return o;
}

bool is_routing_metric(std::string_view name) {
    const MetricInfo* m = find_metric(name);
    return m && m->axis == Axis::routing;
}

// MoE routing (docs/metrics-moe.md): the run-level values from the registry, per MoE block and
// per adjacent pair; on a run without routing only the reason.
json routing_obj(const RunSummary& s) {
    if (!s.routing) return json{{"missing_reason", s.routing_missing_reason}};
    const RoutingResult& r = *s.routing;
    json o{{"moe_blocks", r.blocks}, {"n_expert", r.n_expert}, {"n_expert_used", r.k}};
    for (const auto& mi : metric_registry())
        if (mi.axis == Axis::routing && mi.shape == Shape::scalar && mi.scalar) put_value(o, std::string(mi.name), mi.scalar(s));
    json layers = json::array();
    for (const RoutingLayerResult& l : r.layers) {
        json x{{"block", l.block}, {"routing_entropy", summary_obj(l.entropy)}, {"expert_load", series(l.load)}};
        put_value(x, "expert_switch_rate", l.switch_rate);
        put_value(x, "expert_load_entropy", l.load_entropy);
        put_value(x, "expert_load_imbalance", l.load_imbalance);
        layers.push_back(x);
    }
    o["blocks"] = layers;
    json pairs = json::array();
    for (const RoutingPairResult& p : r.pairs) {
        json x{{"block_a", p.block_a}, {"block_b", p.block_b}};
        put_value(x, "routing_layer_nmi", p.top1_nmi);
        put_value(x, "routing_switch_agreement", p.switch_agreement);
        pairs.push_back(x);
    }
    o["adjacent_blocks"] = pairs;
    return o;
}

}  // namespace

json summary_json(const RunSummary& s, const SummaryContext& ctx) {
    json j;
    j["schema_version"] = "phasemap.summary.v1";
    j["status"] = "descriptive_observation";
    if (ctx.provenance.is_object()) {
        const json& m = ctx.provenance.value("model", json::object());
        j["model_id"] = m.value("name", std::string()).empty() ? m.value("file", std::string()) : m.value("name", std::string());
        j["model_sha256"] = m.value("sha256", std::string());
    }
    j["prompt"] = ctx.prompt;
    j["extraction_protocol"] = "phasemap_emitting_position_v1";
    j["hidden_states_semantics"] =
        "States at the emitting position of each generated token (the context position whose logits choose it), "
        "recorded before the token is chosen; hf:L is after the final norm.";
    j["embedding_output_included"] = ctx.embedding_output_included;
    j["generated_text"] = ctx.generated_text;
    json input{{"hidden_states_shape", ctx.hidden_states_shape}, {"generated_tokens", s.tokens}};
    if (!ctx.logits_shape.empty()) input["logits_shape"] = ctx.logits_shape;
    if (!ctx.source_npz_sha256.empty()) input["source_npz_sha256"] = ctx.source_npz_sha256;
    input["analysed_layers"] = s.layers;
    j["input"] = input;

    // LIMEN-compatible per-token summaries (n, median, q1, q3).
    json summary = json::object();
    for (const auto& ns : per_token_summaries(s)) {
        if (!s.routing && is_routing_metric(ns.name)) continue;  // dense run: in "routing" only
        if (ns.limen_name.empty()) summary[std::string(ns.name)] = summary_obj(ns.summary);
        else summary[std::string(ns.limen_name)] = summary_obj(ns.summary);
    }
    j["summary"] = summary;

    // Token axis (§2) on one layer.
    json ta{{"layer", s.layer_name}, {"layer_index", s.layer_index}};
    if (!s.token.missing_reason.empty()) ta["missing_reason"] = s.token.missing_reason;
    for (const auto& mi : metric_registry()) {
        if (mi.axis != Axis::token && mi.axis != Axis::output) continue;
        const std::string name(mi.name);
        json& dst = mi.axis == Axis::token ? ta : j["output_states"];
        if (mi.shape == Shape::scalar && mi.scalar) {
            const Value v = mi.scalar(s);
            put_value(dst, name, v);
            // Flags and counts keep their JSON types.
            if (v.ok() && mi.unit.rfind("bool", 0) == 0) dst[name] = v.v != 0.0;
            else if (v.ok() && mi.unit == "count") dst[name] = static_cast<int64_t>(v.v);
        } else if (mi.shape == Shape::label && mi.label) {
            std::string why;
            const std::string v = mi.label(s, why);
            dst[name] = why.empty() ? json(v) : json(nullptr);
            if (!why.empty()) dst[name + "_missing_reason"] = why;
        }
    }
    if (s.token.ct_clip) ta["ct_clip"] = {{"threshold", num(s.token.ct_clip->threshold)}, {"n_clipped", s.token.ct_clip->n_clipped}};
    j["token_axis"] = ta;

    // Output states (§5): tables beside the scalars the registry filled in.
    if (s.output) {
        json& os = j["output_states"];
        const auto& o = *s.output;
        json names = json::array();
        for (auto st : kOutputStates) names.push_back(std::string(to_string(st)));
        os["states_order"] = names;
        json counts = json::array(), probs = json::array();
        for (size_t a = 0; a < kOutputStateCount; ++a) {
            json rc = json::array(), rp = json::array();
            for (size_t b = 0; b < kOutputStateCount; ++b) {
                rc.push_back(o.transitions[a][b]);
                rp.push_back(num(o.transition_probs[a][b]));
            }
            counts.push_back(rc);
            probs.push_back(rp);
        }
        os["transition_counts"] = counts;
        os["transition_probs"] = probs;
        json dwell = json::object();
        for (size_t a = 0; a < kOutputStateCount; ++a) dwell[std::string(to_string(kOutputStates[a]))] = o.dwell[a];
        os["dwell_times"] = dwell;
    } else {
        j["output_states"] = {{"missing_reason", s.output_missing_reason}};
    }

    // Controls (§6).
    json ctl = json::object();
    if (s.token_control) ctl["token_order"] = control_obj(*s.token_control);
    if (s.layer_control) {
        json lc = json::array();
        for (const auto& c : *s.layer_control) lc.push_back(control_obj(c));
        ctl["layer_order"] = lc;
    }
    if (!s.controls_missing_reason.empty()) ctl["missing_reason"] = s.controls_missing_reason;
    j["controls"] = ctl;
    if (!s.layer.missing_reason.empty()) j["layer_axis_missing_reason"] = s.layer.missing_reason;
    // Tokens the layer axis dropped (non-finite states), each with its reason, as the token axis does.
    if (!s.layer.token_errors.empty()) {
        json te = json::array();
        for (const auto& [t, why] : s.layer.token_errors) te.push_back({{"t", t}, {"reason", why}});
        j["layer_axis_dropped_tokens"] = te;
    }

    // Per-token series from the registry (NaN → null).
    json pt = json::object();
    if (!ctx.token_texts.empty()) pt["token"] = ctx.token_texts;
    if (!ctx.token_ids.empty()) pt["token_id"] = ctx.token_ids;
    for (const auto& mi : metric_registry()) {
        if (!s.routing && mi.axis == Axis::routing) continue;
        if (mi.shape == Shape::per_token && mi.per_token) pt[std::string(mi.name)] = series(mi.per_token(s));
        else if (mi.shape == Shape::per_token_label && mi.per_token_label) pt[std::string(mi.name)] = mi.per_token_label(s);
    }
    j["per_token"] = pt;
    j["routing"] = routing_obj(s);

    json opts = json::object();
    for (const auto& [k, v] : options_record(s.options)) opts[k] = v;
    j["options"] = opts;
    if (ctx.provenance.is_object()) j["provenance"] = ctx.provenance;
    return j;
}

}  // namespace phasemap::io

namespace phasemap::io {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& what) { throw std::runtime_error(field + ": " + what); }

const json* member(const json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}
const json* object(const json& j, const char* key, const std::string& field) {
    const json* v = member(j, key);
    if (v && !v->is_object()) bad(field, "expected an object");
    return v;
}
std::optional<std::string> opt_str(const json& j, const char* key, const std::string& field) {
    const json* v = member(j, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) bad(field, "expected a string");
    return v->get<std::string>();
}
double number(const json& v, const std::string& field) {
    if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();
    if (!v.is_number()) bad(field, "expected a number or null");
    return v.get<double>();
}
std::vector<double> numbers(const json& pt, const char* key) {
    std::vector<double> out;
    const json* a = member(pt, key);
    if (!a) return out;
    if (!a->is_array()) bad(std::string("per_token.") + key, "expected an array");
    for (size_t i = 0; i < a->size(); ++i) out.push_back(number((*a)[i], std::string("per_token.") + key + "[" + std::to_string(i) + "]"));
    return out;
}
std::vector<std::optional<std::string>> strings(const json& pt, const char* key) {
    std::vector<std::optional<std::string>> out;
    const json* a = member(pt, key);
    if (!a) return out;
    if (!a->is_array()) bad(std::string("per_token.") + key, "expected an array");
    for (const auto& x : *a) out.push_back(x.is_string() ? std::optional<std::string>(x.get<std::string>()) : std::nullopt);
    return out;
}

}  // namespace

SummaryRecord summary_record_from_json(const json& j) {
    if (!j.is_object()) bad("(document)", "expected a summary JSON object");
    SummaryRecord r;
    r.model_id = opt_str(j, "model_id", "model_id").value_or("");
    r.model_sha256 = opt_str(j, "model_sha256", "model_sha256");
    r.family = opt_str(j, "family", "family").value_or("");
    r.category = opt_str(j, "category", "category");
    if (const json* prov = object(j, "provenance", "provenance")) {
        if (const json* m = object(*prov, "model", "provenance.model")) {
            r.model.name = opt_str(*m, "name", "provenance.model.name").value_or("");
            r.model.file = opt_str(*m, "file", "provenance.model.file").value_or("");
            r.model.sha256 = opt_str(*m, "sha256", "provenance.model.sha256").value_or("");
            r.model.architecture = opt_str(*m, "architecture", "provenance.model.architecture").value_or("");
        }
        if (const json* s = object(*prov, "sampling", "provenance.sampling"))
            if (const json* t = member(*s, "temperature")) r.temperature = number(*t, "provenance.sampling.temperature");
    }
    if (const json* in = object(j, "input", "input"))
        if (const json* g = member(*in, "generated_tokens")) {
            if (!g->is_number_integer()) bad("input.generated_tokens", "expected an integer");
            r.generated_tokens = g->get<std::int64_t>();
        }
    if (const json* ta = object(j, "token_axis", "token_axis")) {
        if (const json* v = member(*ta, "ratio_norm")) r.ratio_norm = number(*v, "token_axis.ratio_norm");
        r.regime = opt_str(*ta, "regime", "token_axis.regime").value_or("");
    }
    if (const json* o = object(j, "options", "options")) r.regime_cuts = opt_str(*o, "regime_cuts", "options.regime_cuts");
    if (const json* s = object(j, "summary", "summary"))
        for (const auto& [k, v] : s->items())
            if (const json* m = member(v, "median"); m && m->is_number()) r.medians[k] = m->get<double>();
    if (const json* pt = object(j, "per_token", "per_token")) {
        r.ct_t = numbers(*pt, "ct_t");
        r.delta_t = numbers(*pt, "delta_t");
        r.curvature_t = numbers(*pt, "curvature_t");
        r.token = strings(*pt, "token");
        r.output_state = strings(*pt, "output_state");
    }
    for (const char* k : {"options", "provenance", "schema_version", "extraction_protocol", "model_sha256", "embedding_output_included"})
        if (j.contains(k)) r.settings[k] = j[k];
    return r;
}

}  // namespace phasemap::io
