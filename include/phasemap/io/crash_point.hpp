// Fault injection for the crash tests (docs/hardening.md, "Crash points"). Every writer of the
// results DB marks its commit points with crash_point("name"). With the environment variable
//
//   PHASEMAP_CRASH_AT=<name>[:<n>]
//
// the process writes one line to stderr and kills itself with SIGKILL the n-th time (default: the
// first) that point is reached: no destructor, no rollback, no flush, as when the machine dies.
// Built in when PHASEMAP_CRASH_POINTS is defined (CMake option PHASEMAP_CRASH_POINTS, on by
// default so that the test suite can use it); otherwise crash_point is an empty inline function.
// Every target that includes this header gets the same definition (cmake/store.cmake).
//
// Owns: nothing (a process-wide hit counter). Throws: nothing; the matching point kills the process.
#pragma once

#ifdef PHASEMAP_CRASH_POINTS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#endif

namespace phasemap {

#ifdef PHASEMAP_CRASH_POINTS
inline void crash_point(const char* name) {
    struct Spec {
        std::string name;
        long nth = 1;
    };
    static const Spec spec = [] {
        Spec s;
        const char* v = std::getenv("PHASEMAP_CRASH_AT");
        if (!v || !*v) return s;
        s.name = v;
        if (const auto c = s.name.rfind(':'); c != std::string::npos) {
            char* end = nullptr;
            const long n = std::strtol(s.name.c_str() + c + 1, &end, 10);
            if (end && *end == '\0' && n >= 1) {
                s.nth = n;
                s.name.resize(c);
            }
        }
        return s;
    }();
    static std::atomic<long> hits{0};
    if (spec.name.empty() || spec.name != name) return;
    if (hits.fetch_add(1) + 1 != spec.nth) return;
    const std::string msg = "phasemap: crash point '" + spec.name + "' reached (hit " + std::to_string(spec.nth) +
                            "): SIGKILL (PHASEMAP_CRASH_AT)\n";
    [[maybe_unused]] const ssize_t w = ::write(2, msg.data(), msg.size());
    ::kill(::getpid(), SIGKILL);
    for (;;) ::pause();
}
#else
inline void crash_point(const char*) {}
#endif

}  // namespace phasemap
