// `phasemap serve`: an OpenAI-compatible HTTP server (cpp-httplib) on the capture engine's
// continuous-batching loop (capture::Engine::serve). Each streamed token carries a `phasemap`
// extension object (its probability statistics); the final chunk carries the run summary of the
// metrics code (metrics::analyze_run, io::summary_json). docs/serve.md describes the endpoints
// and fields.
//
// Owns: a Server owns its engine, its listening socket, its threads and (with ServerOptions::db) its results
// DB, all released by the destructor; the Model is shared (shared_ptr). Throws: as stated below; a failing
// request is answered with its HTTP error, never thrown out of run().
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "phasemap/capture/capture.hpp"

namespace phasemap::serve {

struct ServerOptions {
    std::string host = "127.0.0.1";    // loopback unless asked otherwise
    int port = 8080;                   // 0: any free port (Server::port() tells which)
    std::string api_key;               // non-empty: every /v1 and /metrics request needs "Authorization: Bearer KEY"
    size_t queue = 64;                 // requests waiting for a slot beyond those running; more → 429
    size_t max_body = 1 << 20;         // request body limit in bytes (413 beyond)
    // phasemap.return_hidden_states: a request whose max_tokens × layers × d × 4 bytes exceeds this
    // is a 400 (the base64 text is 4/3 of it).
    size_t max_hidden_states = size_t(64) << 20;
    int max_tokens = 16;               // max_tokens when a request gives none (OpenAI's default)
    std::string model_id;              // the id /v1/models lists (default: the model file's stem)
    int http_threads = 64;             // HTTP worker threads (each streaming client holds one)
    // Results DB: every served run (unless the request sets phasemap.store false) is analysed and
    // stored like a panel run (panel/run_analysis.hpp), by a writer thread, so `phasemap audit` /
    // `report` read served traffic. Empty: nothing is stored.
    std::string db;
};

class Server {
public:
    // Creates the engine (throws as capture::Engine does) and binds the socket (throws
    // std::runtime_error naming host and port when it cannot).
    Server(std::shared_ptr<capture::Model> model, const capture::EngineOptions& engine, const ServerOptions& opt);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    int port() const;
    // Serves until stop(): the HTTP listener and the engine loop. Returns after in-flight
    // requests finished (streams that cannot finish are cancelled) and the engine went idle.
    void run();
    // Stops accepting (new requests get 503) and makes run() return once in-flight work ended.
    // Safe from any thread; async-signal code should set a flag that a thread turns into stop().
    void stop();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace phasemap::serve
