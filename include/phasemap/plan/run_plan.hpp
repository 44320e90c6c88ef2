// The run plan: the one place where a front end's options (model, LoRA adapters, control vectors,
// prompts, sampling, layers, interventions, monitor) become what the capture Engine runs. Shared
// by `generate` and `replicate` (build_run) and, for the options of the steer drivers, by
// `control-audit` and `monitor-eval` (steer_plan.hpp). A verb binds flags into RunSettings, makes
// one call and prints.
//
// Every FILE[:SCALE] is parsed by steer::parse_file_scale, every intervention by steer's spec
// parser, each once. Errors are std::invalid_argument (bad option) or std::runtime_error (a file
// that cannot be read, a model llama.cpp refuses) with one message that names the option or file;
// nothing here re-wraps a message that already names it.
//
// Owns: a RunPlan owns its model (shared), engine and monitors; requests[i].controller points into monitors,
// so the requests live with the plan.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "phasemap/steer/monitor.hpp"

namespace phasemap::plan {

// The online monitor of `generate --monitor` (docs/interventions.md), as the flags give it.
struct MonitorSettings {
    bool enabled = false;
    std::vector<std::string> triggers;   // steer::parse_trigger grammar; empty: collapse, spike, streak
    std::string on = "log";              // log | stop | guard | intervene
    std::string guard_text = "\n";
    std::string on_intervene;            // intervention SPEC of --on intervene
    int for_tokens = 8;
    size_t cooldown = 16;
    size_t max_actions = 1;
    // The token-axis layer the monitor watches (metrics/layer_id.hpp rule: N = hf:N, -1 = the last
    // captured); "" = the last captured. generate binds it to --metric-layer.
    std::string metric_layer;
    // Any monitor flag other than `enabled` differs from its default.
    bool any_option() const { return !triggers.empty() || on != "log" || !on_intervene.empty(); }
};

// The monitor options of `settings` (triggers, action, guard text, --on-intervene resolved against
// the model); std::invalid_argument naming the flag when one is bad. Used by build_run and, per
// request, by `serve` (plan/request_plan.hpp).
steer::MonitorOptions monitor_options(const MonitorSettings& settings, const capture::ModelInfo& mi);

// What every engine-running verb binds.
struct RunSettings {
    std::string model;
    std::vector<std::string> loras;            // FILE[:SCALE], in order
    // Adapters already parsed (a panel manifest's [[models.adapters]]), loaded after `loras`.
    std::vector<capture::LoraAdapter> adapters;
    std::vector<std::string> control_vectors;  // FILE[:SCALE], summed
    std::vector<std::string> prompts;          // prompt texts (already read from -p / -f)
    bool chat = false;
    int n_predict = 64;
    capture::SamplingOptions sampling;
    // Per prompt (a panel's grid points: each its own temperature, seed and budget): empty, or one
    // entry per prompt that replaces n_predict and sampling for that prompt's request.
    struct PromptSettings {
        int n_predict = 64;
        capture::SamplingOptions sampling;
    };
    std::vector<PromptSettings> per_prompt;
    // precision, n_ctx, n_threads, layers, save_logits, routing as given; n_parallel is capped at
    // the number of prompts.
    capture::EngineOptions engine;
    // engine.n_ctx 0: the context the requests need (capture::context_for: longest prompt plus the
    // largest n_predict, capped at the default) instead of the default min(training, 4096).
    bool fit_context = false;
    // An MoE model (ModelInfo::n_expert > 1): capture its routing when the engine can read this
    // architecture's router (EngineOptions::routing), else run without it. What a panel does.
    bool routing_if_moe = false;
    std::vector<std::string> intervene;        // SPEC (steer/spec.hpp), may carry prompts=I+J
    std::vector<std::string> intervene_files;  // TOML [[intervention]] files
    MonitorSettings monitor;
};

// The request of one prompt under `s` (prompt i of s.prompts with s.per_prompt[i] when given;
// interventions not included).
capture::Request make_request(const RunSettings& s, size_t i);

// Every file the settings read (model, prompt-free: adapters, control vectors, intervention
// files), for io::check_output_path. Parses FILE[:SCALE] (std::invalid_argument when bad).
std::vector<std::string> input_files(const RunSettings& s);

// A control-vector file read and checked against the model (steer::read_control_vector,
// check_control_vector); every error names the file once.
steer::ControlVector load_control_vector(const std::string& path, const capture::ModelInfo& mi);

// What the engine runs. Monitors are owned here and referenced by requests[i].controller.
struct RunPlan {
    std::shared_ptr<capture::Model> model;
    std::unique_ptr<capture::Engine> engine;
    std::vector<capture::Request> requests;
    std::optional<steer::MonitorOptions> monitor;
    std::vector<std::unique_ptr<steer::Monitor>> monitors;  // one per request when monitor is set
    // provenance_json of the model and engine (what `replicate` records).
    nlohmann::json provenance;
    // The run-file metadata of `generate`: provenance plus chat, sampling, n_predict, save_logits,
    // n_parallel, and the interventions, control vectors and monitor when declared.
    nlohmann::json metadata;

    // engine->generate(requests, sink_for).
    void generate(const std::function<capture::RunSink&(size_t)>& sink_for);
};

// Loads the model (with its adapters), creates the engine, applies the summed control vectors,
// parses and resolves the interventions and the monitor against the model, and builds one request
// per prompt. Nothing is decoded. Shared by generate, replicate and the panel runner (panel_run.hpp). With `model` given (already loaded, with its adapters: the
// Python package's Model) it is used instead of loading s.model; s.loras are then not read.
RunPlan build_run(const RunSettings& s, std::shared_ptr<capture::Model> model = nullptr);

}  // namespace phasemap::plan
