// The panel runner (`phasemap panel run`, the Python package's panel.run): generates every pending
// run of a manifest's grid (or of one shard of it), analyses it and commits it to the results DB,
// one transaction per generation group (all the normalisations of one generation, with their
// tokens and token_layers rows).
//
// Runs of one model go through one run plan (run_plan.hpp: the model with its adapters, the
// Engine, one request per pending generation), n_parallel sequences per batch; each model is
// loaded once. The runner lives in plan, not panel, because it drives the run plan, which sits
// above panel (docs/DESIGN.md); panel keeps the manifest, the grid, the run identity and the run
// analysis it uses.
//
// A run's identity is panel::run_id (model file sha256, adapter hashes and scales, prompt, every
// setting); runs already in the DB are skipped, so a killed runner restarts where it stopped and
// loses at most the runs that were in flight. A group found stored in part (written by a phasemap
// that committed each normalisation on its own) is generated again and completed.
//
// Owns: nothing after run_panel returns (the DB is closed, every model freed). Throws: as stated
// per function.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "phasemap/capture/capture.hpp"
#include "phasemap/panel/manifest.hpp"

namespace phasemap::plan {

namespace fs = std::filesystem;
using panel::Manifest;
using panel::Shard;

struct Progress {
    size_t runs_done = 0, runs_total = 0;     // run rows of this invocation (skipped ones excluded)
    int64_t tokens = 0;                        // tokens generated so far
    double seconds = 0;                        // since generation started
    std::string model;                         // label of the model being run
};

struct RunnerOptions {
    fs::path db;                 // results DB; empty: analyse but store nothing (benchmarks)
    int n_parallel = 1;          // sequences decoded together
    int n_threads = 0;           // CPU threads (0 = all)
    // Where the output statistics are computed (capture::OutputStats; the results are the same
    // within the engine's stated tolerance, greedy picks identical).
    capture::OutputStats output_stats = capture::OutputStats::automatic;
    Shard shard;                 // 1/1 = the whole grid
    // Called after every committed generation and once at the end; none: silent.
    std::function<void(const Progress&)> on_progress;
    // Called once before generation with (pending run rows, run rows already in the DB).
    std::function<void(size_t, size_t)> on_plan;
    // Called before on_plan with one line per generation group found stored in part (what is
    // kept, what is written now); none: silent.
    std::function<void(const std::string&)> on_repair;
};

struct RunnerResult {
    size_t grid_runs = 0;        // run rows of the whole grid
    size_t shard_runs = 0;       // run rows of this shard
    size_t skipped = 0;          // already in the DB
    size_t done = 0;             // committed by this invocation
    size_t repaired = 0;         // generation groups found stored in part and completed
    int64_t tokens = 0;
    double seconds = 0;          // generation wall time (model loading excluded)
    double cpu_seconds = 0;      // process CPU time spent generating, analysing and storing
};

// Runs the panel. Throws std::runtime_error (store::StoreError for DB problems) with a message
// for the user; validation of the DB happens before any model is loaded. Holds nothing after it
// returns (the DB is closed, every model freed); the callbacks of `opt` are called on this thread.
RunnerResult run_panel(const Manifest& m, const RunnerOptions& opt);

// Ctrl-C (SIGINT) and SIGTERM for the rest of the process: a commit in progress is finished, then
// one line on stderr says how many runs this invocation wrote, how many of the shard's runs the
// DB holds, and that running the same command again resumes; then the process dies of the signal
// as it would have (the handler that was installed before is restored and the signal raised).
void report_interrupts(const std::string& panel, const fs::path& db);

// Progress rendering: an in-place bar (tty) or a plain line.
std::string progress_line(const Progress& p, bool tty);

}  // namespace phasemap::plan
