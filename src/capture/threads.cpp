// CPU worker threads: the default thread count (physical cores, read from sysfs), the wait policy
// of idle workers (poll level → ggml's threadpool polling and libgomp's spin count) and the
// explicit ggml threadpool an Engine attaches to its context (README, "Threads").
#include <fmt/core.h>
#include <ggml-cpu.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "llama_common.hpp"
#include "phasemap/metrics/option_domains.hpp"
#include "threads.hpp"

namespace phasemap::capture {
namespace {
namespace fs = std::filesystem;

// The first line of a small sysfs file ("" when it cannot be read).
std::string first_line(const fs::path& p) {
    std::ifstream f(p);
    std::string s;
    if (!f || !std::getline(f, s)) return {};
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
    return s;
}

// A sysfs CPU list ("0-3,8,10-11") as CPU numbers; nullopt-like empty result with ok = false when
// the text is not a list (a number above 1<<20 counts as malformed, so a corrupt file cannot
// make us allocate).
std::vector<int> parse_cpu_list(const std::string& s, bool& ok) {
    std::vector<int> out;
    ok = !s.empty();
    size_t i = 0;
    auto number = [&](int& v) {
        if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
        long n = 0;
        for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
            n = n * 10 + (s[i] - '0');
            if (n > (1 << 20)) return false;
        }
        v = int(n);
        return true;
    };
    while (ok && i < s.size()) {
        int a = 0, b = 0;
        if (!number(a)) { ok = false; break; }
        b = a;
        if (i < s.size() && s[i] == '-') {
            ++i;
            if (!number(b) || b < a) { ok = false; break; }
        }
        for (int c = a; c <= b; ++c) out.push_back(c);
        if (i < s.size()) {
            if (s[i] != ',') { ok = false; break; }
            ++i;
        }
    }
    if (!ok) out.clear();
    return out;
}

std::mutex g_defaults_mu;
ThreadOptions g_defaults;

}  // namespace

std::optional<long> env_whole_number(const char* name, long lo, long hi, const char* range_words) {
    const char* env = std::getenv(name);
    if (!env || !*env) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(env, &end, 10);
    if (errno != 0 || *end != '\0' || n < lo || n > hi)
        throw std::invalid_argument(fmt::format("{} must be a whole number {}, got '{}'", name, range_words, env));
    return n;
}

int physical_cores(const fs::path& sys_root, std::span<const int> allowed) {
    const fs::path cpu = sys_root / "devices/system/cpu";
    bool ok = false;
    const std::vector<int> online = parse_cpu_list(first_line(cpu / "online"), ok);
    if (!ok) return 0;
    const std::set<int> allow(allowed.begin(), allowed.end());
    // One core = one set of hardware threads that share it (core_cpus_list, or the older name
    // thread_siblings_list); a CPU without topology counts as a core of its own.
    std::set<std::string> cores;
    for (int c : online) {
        if (!allow.empty() && !allow.count(c)) continue;
        const fs::path topo = cpu / fmt::format("cpu{}", c) / "topology";
        std::string sib = first_line(topo / "core_cpus_list");
        if (sib.empty()) sib = first_line(topo / "thread_siblings_list");
        bool sib_ok = false;
        const std::vector<int> ids = parse_cpu_list(sib, sib_ok);
        std::string key = sib_ok ? std::string() : fmt::format("cpu{}", c);
        for (int id : ids) key += fmt::format("{},", id);
        cores.insert(key);
    }
    return int(cores.size());
}

int default_threads() {
    if (const auto n = env_whole_number("PHASEMAP_THREADS", 1, 4096, "from 1 to 4096")) return int(*n);
    // The physical cores this process may run on (llama.cpp's default is the physical cores too:
    // SMT siblings share a core's vector units, and a worker per sibling only adds barrier waits).
    std::vector<int> allowed;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) allowed.push_back(c);
    if (const int n = physical_cores("/sys", allowed); n > 0) return std::min(n, 4096);
    // No readable topology (not Linux sysfs, a restricted container): the CPUs we may use.
    if (!allowed.empty()) return std::min(int(allowed.size()), 4096);
    return int(std::clamp(std::thread::hardware_concurrency(), 1u, 4096u));
}

const char* thread_priority_name(ThreadPriority p) {
    switch (p) {
        case ThreadPriority::normal: return "normal";
        case ThreadPriority::medium: return "medium";
        case ThreadPriority::high: return "high";
        case ThreadPriority::realtime: return "realtime";
    }
    return "normal";
}

std::vector<std::string> thread_priority_names() { return {"normal", "medium", "high", "realtime"}; }

ThreadPriority parse_thread_priority(const std::string& s) {
    for (ThreadPriority p : {ThreadPriority::normal, ThreadPriority::medium, ThreadPriority::high, ThreadPriority::realtime})
        if (s == thread_priority_name(p)) return p;
    throw std::invalid_argument(fmt::format("unknown thread priority '{}' (use normal, medium, high or realtime)", s));
}

void check_poll(int poll) {
    if (const std::string why = opt::domain_problem(poll, opt::kPoll); !why.empty())
        throw std::invalid_argument(fmt::format("--poll {}: {}", poll, why));
}

uint64_t omp_spin_count(int poll) {
    check_poll(poll);
    return uint64_t(30) * uint64_t(poll) * uint64_t(poll);
}

void set_thread_defaults(const ThreadOptions& o) {
    check_poll(o.poll);
    std::lock_guard<std::mutex> lk(g_defaults_mu);
    g_defaults = o;
}

ThreadOptions thread_defaults() {
    std::lock_guard<std::mutex> lk(g_defaults_mu);
    return g_defaults;
}

bool workers_use_openmp() {
    static const bool omp = [] {
        ggml_backend_reg_t reg = ggml_backend_cpu_reg();
        auto get = reg ? reinterpret_cast<ggml_backend_get_features_t>(ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"))
                       : nullptr;
        if (!get) return false;
        for (const ggml_backend_feature* f = get(reg); f && f->name; ++f)
            if (std::strcmp(f->name, "OPENMP") == 0) return std::strcmp(f->value, "1") == 0;
        return false;
    }();
    return omp;
}

ggml_threadpool* make_threadpool(int n_threads, const ThreadOptions& o) {
    check_poll(o.poll);
    ggml_threadpool_params p = ggml_threadpool_params_default(n_threads);
    p.poll = uint32_t(o.poll);
    switch (o.priority) {
        case ThreadPriority::normal: p.prio = GGML_SCHED_PRIO_NORMAL; break;
        case ThreadPriority::medium: p.prio = GGML_SCHED_PRIO_MEDIUM; break;
        case ThreadPriority::high: p.prio = GGML_SCHED_PRIO_HIGH; break;
        case ThreadPriority::realtime: p.prio = GGML_SCHED_PRIO_REALTIME; break;
    }
    // No CPU mask: the workers keep the process's affinity (strict placement only applies to a
    // mask, and pinning on a shared machine would stack our workers on cores others use).
    p.strict_cpu = false;
    ggml_threadpool* tp = ggml_threadpool_new(&p);
    if (!tp) throw std::runtime_error(fmt::format("cannot create a CPU threadpool of {} threads", n_threads));
    return tp;
}

}  // namespace phasemap::capture
