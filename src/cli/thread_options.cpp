#include "thread_options.hpp"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "options.hpp"
#include "phasemap/capture/capture.hpp"

namespace phasemap::cli {
namespace {

struct Bound {
    CLI::App* app;
    CLI::Option* poll;
    const int* threads;
};

struct Flags {
    int poll = capture::kDefaultPoll;
    std::string prio = "normal";
    std::vector<Bound> verbs;
};

Flags& flags() {
    static Flags f;
    return f;
}

// Set in the environment of the re-executed process only (and removed there): a second mismatch
// must not exec again.
constexpr const char* kReexecMark = "PHASEMAP_REEXEC_SPINCOUNT";

}  // namespace

void bind_thread_flags(CLI::App& app, const int& threads) {
    Flags& f = flags();
    CLI::Option* poll = app.add_option("--poll", f.poll,
                                       "how long idle CPU workers busy-wait before sleeping, 0-100 (0: sleep at once; 100: libgomp's "
                                       "default spin, the most; README \"Threads\")")
                            ->capture_default_str()
                            ->check(in(opt::kPoll));
    app.add_option("--prio", f.prio, "CPU worker priority (medium/high/realtime: SCHED_FIFO, needs CAP_SYS_NICE)")
        ->capture_default_str()
        ->check(one_of(capture::thread_priority_names()));
    f.verbs.push_back({&app, poll, &threads});
}

void apply_thread_flags(char** argv) {
    Flags& f = flags();
    const bool reexeced = std::getenv(kReexecMark) != nullptr;
    if (reexeced) unsetenv(kReexecMark);
    const Bound* run = nullptr;
    for (const Bound& b : f.verbs)
        if (b.app->parsed()) run = &b;
    if (!run) return;
    capture::set_thread_defaults({f.poll, capture::parse_thread_priority(f.prio)});
    if (!capture::workers_use_openmp()) return;
    const bool explicit_poll = run->poll->count() > 0;
    const char* have = std::getenv("GOMP_SPINCOUNT");
    if (!explicit_poll && (have || std::getenv("OMP_WAIT_POLICY"))) return;  // the user's own libgomp setting
    const std::string want = std::to_string(capture::omp_spin_count(f.poll));
    if ((have && want == have) || reexeced) return;
    int n = *run->threads;
    if (n <= 0) {
        try { n = capture::default_threads(); }
        catch (const std::exception&) { return; }  // a bad $PHASEMAP_THREADS: the verb reports it
    }
    if (n == 1) return;  // one worker: no barrier, nothing spins
    if (setenv("GOMP_SPINCOUNT", want.c_str(), 1) != 0 || setenv(kReexecMark, "1", 1) != 0) return;
    execv("/proc/self/exe", argv);
    // exec failed (no /proc): run on with libgomp's spin count as it is.
    unsetenv(kReexecMark);
}

}  // namespace phasemap::cli
