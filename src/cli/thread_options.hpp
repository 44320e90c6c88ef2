// --poll / --prio, the worker-thread flags of every verb that runs a model (bound once here, with
// the shared validators), and their application after parsing: the process-wide thread options of
// the capture engine, and libgomp's spin count, which libgomp reads only when it loads — so the
// CLI re-executes itself once with GOMP_SPINCOUNT set (README, "Threads").
#pragma once
#include <CLI/CLI.hpp>

namespace phasemap::cli {

// Adds --poll and --prio to `app` (a verb's sub-command); `threads` is the verb's -t value (read
// after parsing: with one worker thread nothing waits, and the process is not re-executed).
void bind_thread_flags(CLI::App& app, const int& threads);

// After parsing, before the verb runs: when the parsed verb has thread flags, sets
// capture::set_thread_defaults from them and, on an OpenMP build of ggml, makes libgomp's spin
// count the poll level's — re-executing /proc/self/exe with GOMP_SPINCOUNT when the environment
// holds another and the verb runs more than one thread (an explicit --poll always; without --poll only when the user set neither
// GOMP_SPINCOUNT nor OMP_WAIT_POLICY). Returns only when no re-execution happens (or it failed).
void apply_thread_flags(char** argv);

}  // namespace phasemap::cli
