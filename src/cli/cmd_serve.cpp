// `phasemap serve`: the OpenAI-compatible server (src/serve, docs/serve.md). Thin: options, the
// model, signals; the server is phasemap::serve::Server.
#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "phasemap/capture/capture.hpp"
#include "phasemap/serve/server.hpp"
#include "engine_flags.hpp"
#include "thread_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

struct ServeArgs {
    std::string model;
    std::string layers = "hf:all";
    std::string precision = "exact";
    std::string output_stats = "auto";
    int parallel = 4;
    int threads = 0;
    int ctx = 0;
    serve::ServerOptions server;
};

int run_serve(ServeArgs& a) {
    if (a.parallel < 1) throw UserError("--parallel must be at least 1");
    if (a.server.queue < 1) throw UserError("--queue must be at least 1");
    capture::ModelOptions mo;
    mo.n_threads = a.threads;
    auto model = capture::Model::load(a.model, mo);
    capture::EngineOptions eo;
    eo.precision = capture::parse_precision(a.precision);
    eo.n_ctx = a.ctx;
    eo.n_parallel = a.parallel;
    eo.n_threads = a.threads;
    eo.layers = a.layers;
    eo.output_stats = capture::parse_output_stats(a.output_stats);
    serve::Server srv(model, eo, a.server);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::thread watch([&] {
        while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        srv.stop();
    });
    fmt::print("phasemap serve: listening on http://{}:{} (model {}, {} slots)\n", a.server.host, srv.port(), model->info().path.filename().string(),
               a.parallel);
    std::fflush(stdout);
    srv.run();
    g_stop.store(true);
    watch.join();
    fmt::print("phasemap serve: stopped\n");
    return 0;
}

Verb reg{"serve", "OpenAI-compatible HTTP server whose stream carries each token's dynamics (docs/serve.md)", [](CLI::App& app) {
    auto a = std::make_shared<ServeArgs>();
    app.add_option("-m,--model", a->model, "GGUF model")->required()->check(kPath);
    app.add_option("--host", a->server.host, "address to listen on (loopback by default)")->capture_default_str();
    app.add_option("--port", a->server.port, "port (0: any free port, printed at start)")->capture_default_str()->check(in({0, 65535, false, true}));
    app.add_option("--parallel", a->parallel, "sequences decoded together (continuous batching slots)")->capture_default_str()->check(in(opt::kParallel));
    app.add_option("--queue", a->server.queue, "requests that may wait for a slot; more get 429")->capture_default_str()->check(in({1, 1e6, false, true}));
    app.add_option("--api-key", a->server.api_key, "require Authorization: Bearer KEY on /v1 and /metrics");
    app.add_option("--max-body", a->server.max_body, "request body limit in bytes")->capture_default_str()->check(in({1, 1 << 30, false, true}));
    app.add_option("--max-hidden-states", a->server.max_hidden_states, "bytes of float32 states one request may ask for (phasemap.return_hidden_states: max_tokens x layers x d x 4)")->capture_default_str()->check(in({0, 1e12, false, true}));
    app.add_option("--db", a->server.db, "results DB: store every served run like a panel run (phasemap audit / report read it)")->check(kPath);
    app.add_option("--layers", a->layers, "captured layers (layer spec, see generate)")->capture_default_str();
    app.add_option("--precision", a->precision, "exact (F32 KV, no flash attention) or fast")->capture_default_str()->check(one_of({"exact", "fast"}));
    app.add_option("-t,--threads", a->threads, "threads (0: $PHASEMAP_THREADS or the physical cores)")->capture_default_str()->check(in(opt::kThreads));
    bind_thread_flags(app, a->threads);
    bind_output_stats(app, a->output_stats);
    app.add_option("-c,--ctx", a->ctx, "context per sequence (0: min(training context, 4096))")->capture_default_str()->check(in(opt::kContext));
    return [a] { return run_serve(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
