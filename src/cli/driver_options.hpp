// The flags control-audit and monitor-eval share, bound once: model, generation length, sampling,
// chat template, captured / metric layers, bootstrap resamples, threads, and where the result
// goes (-o, --db, --name) — with the same validators and the same help in both verbs.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "phasemap/plan/results.hpp"
#include "thread_options.hpp"
#include "options.hpp"

namespace phasemap::cli {

struct DriverFlags {
    plan::ResultOutputs out;
    double temp = 0;        // bound as a double, stored as the sampler's float (as generate does)
    uint64_t seed = 0;
    bool quiet = false;

    // Copies the sampling flags into the driver's options.
    template <class Options>
    void apply(Options& o) const {
        o.sampling.temperature = float(temp);
        o.sampling.seed = seed;
    }
};

// `Options` is steer::AuditOptions or steer::MonitorEvalOptions (the members of the same names).
// `kind` is the results-DB kind ("control_audit"), `run` what one generation is ("twin").
template <class Options>
void bind_driver_flags(CLI::App& app, std::string& model, Options& o, DriverFlags& f, const char* kind, const char* run) {
    app.add_option("-m,--model", model, "GGUF model file")->required()->check(kPath);
    app.add_option("-n,--n-predict", o.n_predict, std::string("tokens per ") + run)->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--temp", f.temp, "sampling temperature (the same seed for every arm); 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--seed", f.seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", o.chat, "apply the model's chat template");
    app.add_option("--layers", o.layers, "captured layers (the layer grammar of generate --layers)")->capture_default_str();
    app.add_option("--metric-layer", o.metric_layer,
                   "layer of the token axis / monitor: a label (hf:5, block:3) or an integer (N = hf:N, -k = k-th captured from the end); "
                   "default the last captured");
    app.add_option("--bootstrap", o.bootstrap, "bootstrap resamples")->capture_default_str()->check(in(opt::kResamples));
    app.add_option("-t,--threads", o.n_threads, "CPU threads (0 = $PHASEMAP_THREADS or the physical cores)")->check(in(opt::kThreads));
    bind_thread_flags(app, o.n_threads);
    app.add_option("-o,--output", f.out.json, "JSON report")->check(kPath);
    app.add_option("--db", f.out.db, std::string("results DB (created when missing): stores the result as kind ") + kind)->check(kPath);
    app.add_option("--name", f.out.name, "name of the result in the DB (replaces a stored one of that name)")->capture_default_str();
    app.add_flag("-q,--quiet", f.quiet, "print nothing but errors");
}

}  // namespace phasemap::cli
