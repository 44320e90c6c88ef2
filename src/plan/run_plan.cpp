// The run plan of generate / replicate (include/phasemap/plan/run_plan.hpp).
#include "phasemap/plan/run_plan.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <stdexcept>

#include "phasemap/io/files.hpp"
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/layer_id.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "phasemap/steer/spec.hpp"

namespace phasemap::plan {

using namespace phasemap::capture;

capture::Request make_request(const RunSettings& s, size_t i) {
    if (!s.per_prompt.empty()) {
        const RunSettings::PromptSettings& pp = s.per_prompt.at(i);
        return capture::make_request(s.prompts.at(i), s.chat, pp.n_predict, pp.sampling);
    }
    return capture::make_request(s.prompts.at(i), s.chat, s.n_predict, s.sampling);
}

std::vector<std::string> input_files(const RunSettings& s) {
    std::vector<std::string> in{s.model};
    in.insert(in.end(), s.intervene_files.begin(), s.intervene_files.end());
    for (const auto& c : s.control_vectors) in.push_back(steer::parse_file_scale(c, "--control-vector").path);
    for (const auto& l : s.loras) in.push_back(steer::parse_file_scale(l, "--lora").path);
    return in;
}

void RunPlan::generate(const std::function<RunSink&(size_t)>& sink_for) { engine->generate(requests, sink_for); }

steer::ControlVector load_control_vector(const std::string& path, const capture::ModelInfo& mi) {
    try {
        steer::ControlVector cv = steer::read_control_vector(path);
        steer::check_control_vector(cv, mi.architecture, mi.n_layer, mi.n_embd);
        return cv;
    } catch (const std::exception& e) {
        const std::string what = e.what();  // read errors already name the file
        if (what.find("'" + path + "'") != std::string::npos) throw;
        throw std::runtime_error(fmt::format("control vector '{}': {}", path, what));
    }
}

namespace {

// The declared interventions, checked against the model, with the prompts that carry each.
std::vector<steer::ParsedIntervention> interventions(const RunSettings& s, const ModelInfo& mi, nlohmann::json& meta) {
    std::vector<steer::ParsedIntervention> parsed;
    for (const auto& spec : s.intervene) parsed.push_back(steer::parse_intervention_spec(spec, mi.n_layer));
    for (const auto& f : s.intervene_files)
        for (auto& p : steer::parse_intervention_file(f, mi.n_layer)) parsed.push_back(std::move(p));
    std::vector<Intervention> all;
    for (const auto& p : parsed) {
        for (int k : p.prompts)
            if (k >= int(s.prompts.size()))
                throw std::invalid_argument(fmt::format("intervention '{}': prompt index {} out of range ({} prompts)", p.iv.label, k, s.prompts.size()));
        all.push_back(p.iv);
    }
    resolve_interventions(all, mi.n_layer, mi.n_embd);
    for (size_t i = 0; i < parsed.size(); ++i) meta.push_back({{"intervention", all[i].describe()}, {"prompts", parsed[i].prompts}});
    return parsed;
}

// The control vectors, read, checked against the model and summed (ControlVector::flat layout).
std::vector<float> control_vector_sum(const RunSettings& s, const ModelInfo& mi, nlohmann::json& meta) {
    std::vector<float> sum;
    for (const auto& spec : s.control_vectors) {
        const steer::FileScale fsc = steer::parse_file_scale(spec, "--control-vector");
        const steer::ControlVector cv = load_control_vector(fsc.path, mi);
        const std::vector<float> f = cv.flat(fsc.scale);
        if (f.size() > sum.size()) sum.resize(f.size(), 0.0f);
        for (size_t i = 0; i < f.size(); ++i) sum[i] += f[i];
        meta.push_back({{"path", fsc.path}, {"scale", fsc.scale}, {"sha256", io::file_sha256(fsc.path)}, {"method", cv.method}});
    }
    return sum;
}

}  // namespace

steer::MonitorOptions monitor_options(const MonitorSettings& m, const ModelInfo& mi) {
    steer::MonitorOptions mo;
    for (const auto& t : m.triggers) mo.triggers.push_back(steer::parse_trigger(t));
    if (m.on == "log") mo.action = steer::ActionKind::log;
    else if (m.on == "stop") mo.action = steer::ActionKind::stop;
    else if (m.on == "guard") mo.action = steer::ActionKind::guard;
    else if (m.on == "intervene") mo.action = steer::ActionKind::intervene;
    else throw std::invalid_argument(fmt::format("--on '{}': use log, stop, guard or intervene", m.on));
    mo.guard_text = m.guard_text;
    mo.for_tokens = m.for_tokens;
    mo.cooldown = m.cooldown;
    mo.max_actions = m.max_actions;
    if (mo.action == steer::ActionKind::intervene) {
        if (m.on_intervene.empty()) throw std::invalid_argument("--on intervene needs --on-intervene SPEC");
        std::vector<Intervention> chk{steer::parse_intervention_spec(m.on_intervene, mi.n_layer).iv};
        resolve_interventions(chk, mi.n_layer, mi.n_embd);
        mo.intervention = chk[0];
    }
    mo.validate();
    return mo;
}

RunPlan build_run(const RunSettings& s, std::shared_ptr<capture::Model> model) {
    if (s.prompts.empty()) throw std::invalid_argument("no prompt given");
    if (!s.per_prompt.empty() && s.per_prompt.size() != s.prompts.size())
        throw std::invalid_argument(fmt::format("{} per-prompt settings for {} prompts", s.per_prompt.size(), s.prompts.size()));
    if (s.monitor.any_option() && !s.monitor.enabled) throw std::invalid_argument("--trigger/--on/--on-intervene need --monitor");
    RunPlan p;
    if (model) {
        p.model = std::move(model);
    } else {
        ModelOptions mopt;
        for (const auto& spec : s.loras) {
            const steer::FileScale fsc = steer::parse_file_scale(spec, "--lora");
            mopt.adapters.push_back({fsc.path, fsc.scale});
        }
        mopt.adapters.insert(mopt.adapters.end(), s.adapters.begin(), s.adapters.end());
        p.model = Model::load(s.model, mopt);
    }
    EngineOptions eo = s.engine;
    eo.n_parallel = std::min<int>(eo.n_parallel, int(s.prompts.size()));
    if (s.fit_context && eo.n_ctx <= 0) {
        std::vector<Request> plain;
        for (size_t i = 0; i < s.prompts.size(); ++i) plain.push_back(make_request(s, i));
        eo.n_ctx = context_for(*p.model, plain);
    }
    // routing_if_moe: the routing channel when the engine reads this architecture's router
    // (Engine throws std::invalid_argument when it cannot), else the run goes on without it.
    if (s.routing_if_moe && !eo.routing && p.model->info().n_expert > 1) {
        eo.routing = true;
        try {
            p.engine = std::make_unique<Engine>(p.model, eo);
        } catch (const std::invalid_argument&) {
            eo.routing = false;
        }
    }
    if (!p.engine) p.engine = std::make_unique<Engine>(p.model, eo);
    const ModelInfo& mi = p.model->info();

    nlohmann::json iv_meta = nlohmann::json::array(), cv_meta = nlohmann::json::array();
    const std::vector<steer::ParsedIntervention> parsed = interventions(s, mi, iv_meta);
    if (!s.control_vectors.empty()) p.engine->set_control_vector(control_vector_sum(s, mi, cv_meta));
    if (s.monitor.enabled) {
        if (p.engine->layers().empty()) throw std::invalid_argument("--monitor needs captured layers (--layers is none)");
        p.monitor = monitor_options(s.monitor, mi);
        if (!s.monitor.metric_layer.empty()) {
            std::vector<std::string> names;
            for (const auto& l : p.engine->layers()) names.push_back(l.label);
            p.monitor->layer = metrics::resolve_layer_choice(s.monitor.metric_layer, names);
        }
    }
    for (size_t i = 0; i < s.prompts.size(); ++i) {
        Request r = make_request(s, i);
        for (const auto& pi : parsed)
            if (pi.prompts.empty() || std::find(pi.prompts.begin(), pi.prompts.end(), int(i)) != pi.prompts.end())
                r.interventions.push_back(pi.iv);
        if (p.monitor) {
            p.monitors.push_back(std::make_unique<steer::Monitor>(*p.monitor, p.engine->layers().size(), size_t(mi.n_embd)));
            r.controller = p.monitors.back().get();
        }
        p.requests.push_back(std::move(r));
    }

    p.provenance = provenance_json(mi, p.engine->facts(), s.engine.layers);
    nlohmann::json& base = p.metadata = p.provenance;
    base["chat_template_applied"] = s.chat;
    base["sampling"] = {{"temperature", s.sampling.temperature}, {"top_k", s.sampling.top_k}, {"top_p", s.sampling.top_p},
                        {"seed", s.sampling.seed}, {"greedy", s.sampling.temperature <= 0.0f}};
    base["n_predict"] = s.n_predict;
    base["save_logits"] = s.engine.save_logits;
    base["n_parallel"] = eo.n_parallel;
    if (!iv_meta.empty()) base["interventions"] = iv_meta;
    if (!cv_meta.empty()) base["control_vectors"] = cv_meta;
    if (p.monitor)
        base["monitor"] = {{"action", steer::action_name(p.monitor->action)}, {"triggers", s.monitor.triggers}, {"guard_text", p.monitor->guard_text}};
    return p;
}

}  // namespace phasemap::plan
