// Worker threads: the physical-core count against fake sysfs trees, the poll / priority options
// (one clear error for a bad value, in the engine and on the command line), the spin count the
// CLI hands libgomp, and results bitwise unchanged by the explicit threadpool and its settings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>

#include "phasemap/capture/capture.hpp"
#include "phasemap/io/npz.hpp"
#include "support/generation.hpp"
#include "support/paths.hpp"

namespace {

using namespace phasemap::capture;
namespace fs = std::filesystem;

void put(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text << "\n";
}

// A sysfs tree with `online` and, per CPU, its core's CPU list (empty: no topology files).
fs::path fake_sys(const pmtest::TempDir& d, const std::string& online, const std::vector<std::string>& core_of_cpu,
                  const char* file = "core_cpus_list") {
    const fs::path root = d.path / "sys";
    const fs::path cpu = root / "devices/system/cpu";
    if (!online.empty()) put(cpu / "online", online);
    for (size_t c = 0; c < core_of_cpu.size(); ++c) {
        fs::create_directories(cpu / ("cpu" + std::to_string(c)));
        if (!core_of_cpu[c].empty()) put(cpu / ("cpu" + std::to_string(c)) / "topology" / file, core_of_cpu[c]);
    }
    return root;
}

TEST(PhysicalCores, SmtSiblingsCountOnce) {
    pmtest::TempDir d;
    // 4 logical CPUs, siblings 0+2 and 1+3 (the usual enumeration), one list written as a range.
    const fs::path root = fake_sys(d, "0-3", {"0,2", "1,3", "0,2", "1,3"});
    EXPECT_EQ(physical_cores(root), 2);
    pmtest::TempDir e;
    EXPECT_EQ(physical_cores(fake_sys(e, "0-3", {"0-1", "0-1", "2-3", "2-3"})), 2);
    pmtest::TempDir f;  // no SMT: every CPU its own core
    EXPECT_EQ(physical_cores(fake_sys(f, "0-5", {"0", "1", "2", "3", "4", "5"})), 6);
}

TEST(PhysicalCores, OlderKernelsThreadSiblingsList) {
    pmtest::TempDir d;
    EXPECT_EQ(physical_cores(fake_sys(d, "0-3", {"0,2", "1,3", "0,2", "1,3"}, "thread_siblings_list")), 2);
}

TEST(PhysicalCores, OnlyOnlineAndAllowedCpus) {
    pmtest::TempDir d;
    // CPU 1 and 3 are offline; 8 CPUs with siblings (c, c+4).
    const fs::path root = fake_sys(d, "0,2,4-7", {"0,4", "1,5", "2,6", "3,7", "0,4", "1,5", "2,6", "3,7"});
    EXPECT_EQ(physical_cores(root), 4);                       // cores of 0/4, 2/6 and (via 5, 7) 1/5, 3/7
    const std::vector<int> mask{0, 4};                        // a mask on one core's two threads
    EXPECT_EQ(physical_cores(root, mask), 1);
    const std::vector<int> mask2{0, 2, 5};
    EXPECT_EQ(physical_cores(root, mask2), 3);
}

TEST(PhysicalCores, MissingTopologyIsACoreOfItsOwn) {
    pmtest::TempDir d;
    EXPECT_EQ(physical_cores(fake_sys(d, "0-2", {"0,1", "0,1", ""})), 2);
}

TEST(PhysicalCores, UnreadableOrMalformedOnlineListIsZero) {
    pmtest::TempDir a, b, c;
    EXPECT_EQ(physical_cores(fake_sys(a, "", {"0"})), 0);
    EXPECT_EQ(physical_cores(fake_sys(b, "0-", {"0"})), 0);
    EXPECT_EQ(physical_cores(fake_sys(c, "3-1", {"0"})), 0);
    EXPECT_EQ(physical_cores(a.path / "no-such-dir"), 0);
}

TEST(PhysicalCores, ThisMachineAgreesWithDefaultThreads) {
    // Without $PHASEMAP_THREADS the default is the physical cores of /sys (this machine's).
    const char* env = std::getenv("PHASEMAP_THREADS");
    const std::string saved = env ? env : "";
    unsetenv("PHASEMAP_THREADS");
    const int n = physical_cores("/sys");
    const int dflt = default_threads();
    if (!saved.empty()) setenv("PHASEMAP_THREADS", saved.c_str(), 1);
    if (n == 0) GTEST_SKIP() << "no readable /sys/devices/system/cpu";
    EXPECT_GE(dflt, 1);
    EXPECT_LE(dflt, n);  // the affinity mask may hold fewer
}

TEST(ThreadOptions, SpinCountAndPriorityNames) {
    EXPECT_EQ(omp_spin_count(0), 0u);
    EXPECT_EQ(omp_spin_count(100), 300000u);  // libgomp's own default
    EXPECT_EQ(omp_spin_count(10), 3000u);
    EXPECT_THROW(omp_spin_count(101), std::invalid_argument);
    EXPECT_THROW(omp_spin_count(-1), std::invalid_argument);
    for (const std::string& n : thread_priority_names()) EXPECT_EQ(thread_priority_name(parse_thread_priority(n)), n);
    EXPECT_THROW(parse_thread_priority("low"), std::invalid_argument);
    EXPECT_THROW(set_thread_defaults({101, ThreadPriority::normal}), std::invalid_argument);
}

TEST(ThreadOptions, EngineRefusesABadPollLevel) {
    NEED_STORIES();
    EngineOptions eo;
    eo.workers = ThreadOptions{101, ThreadPriority::normal};
    try {
        Engine e(model, eo);
        FAIL() << "poll 101 accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("--poll 101"), std::string::npos) << e.what();
    }
}

// One line on stderr, exit 2, naming the option.
void expect_usage_error(const std::vector<std::string>& extra, const std::string& option) {
    std::vector<std::string> args{"generate", "-m", "model.gguf", "-p", "x"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = pmtest::run_phasemap(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(option), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(ThreadOptions, CliRejectsBadPollAndPrio) {
    expect_usage_error({"--poll", "101"}, "--poll");
    expect_usage_error({"--poll", "-1"}, "--poll");
    expect_usage_error({"--poll", "1.5"}, "--poll");
    expect_usage_error({"--poll", "abc"}, "--poll");
    expect_usage_error({"--prio", "low"}, "--prio");
    expect_usage_error({"--prio", ""}, "--prio");
}

// The spin count libgomp reports last (OMP_DISPLAY_ENV prints its settings when it loads; after
// the CLI re-executes itself there are two reports).
std::string last_spincount(const std::string& err) {
    static const std::regex re("GOMP_SPINCOUNT = '([0-9]+)'");
    std::string last;
    for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator(); ++it) last = (*it)[1];
    return last;
}

pmtest::RunResult generate(const std::vector<std::string>& env, const std::vector<std::string>& extra, const fs::path& out) {
    std::vector<std::string> argv{"/usr/bin/env", "-u", "GOMP_SPINCOUNT", "-u", "OMP_WAIT_POLICY", "OMP_DISPLAY_ENV=VERBOSE"};
    argv.insert(argv.end(), env.begin(), env.end());
    for (const std::string& a : {pmtest::phasemap_binary().string(), std::string("generate"), std::string("-m"),
                                 pmtest::shared_model("stories260K.gguf").string(), std::string("-p"), std::string("Once upon a time"),
                                 std::string("-n"), std::string("24"), std::string("-t"), std::string("2"), std::string("--save-logits"),
                                 std::string("-q"), std::string("-o"), out.string()})
        argv.push_back(a);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return pmtest::run_command(argv);
}

TEST(ThreadOptions, CliHandsLibgompTheSpinCountOfThePollLevel) {
    if (pmtest::shared_model("stories260K.gguf").empty()) GTEST_SKIP() << "stories260K.gguf is not present";
    if (!workers_use_openmp()) GTEST_SKIP() << "ggml's CPU backend is not built with OpenMP";
    pmtest::TempDir d;
    auto r = generate({}, {}, d / "a.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(last_spincount(r.err), std::to_string(omp_spin_count(kDefaultPoll)));
    r = generate({}, {"--poll", "10"}, d / "b.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(last_spincount(r.err), "3000");
    // The user's own libgomp setting wins over the default, not over an explicit --poll.
    r = generate({"GOMP_SPINCOUNT=77"}, {}, d / "c.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(last_spincount(r.err), "77");
    r = generate({"GOMP_SPINCOUNT=77"}, {"--poll", "0"}, d / "e.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(last_spincount(r.err), "0");
}

TEST(ThreadOptions, ResultsBitwiseUnchangedByPollAndPriority) {
    if (pmtest::shared_model("stories260K.gguf").empty()) GTEST_SKIP() << "stories260K.gguf is not present";
    pmtest::TempDir d;
    const std::vector<std::pair<std::string, std::vector<std::string>>> runs{
        {"default.npz", {}}, {"poll0.npz", {"--poll", "0"}}, {"poll100.npz", {"--poll", "100", "--prio", "normal"}}};
    for (const auto& [name, extra] : runs) {
        const auto r = generate({}, extra, d / name);
        ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    }
    phasemap::io::NpzReader a(d / "default.npz");
    for (size_t i = 1; i < runs.size(); ++i) {
        phasemap::io::NpzReader b(d / runs[i].first);
        for (const char* m : {"hidden_states", "logits", "token_ids", "entropy", "top1", "margin", "surprisal"}) {
            ASSERT_TRUE(a.has(m)) << m;
            EXPECT_EQ(a.bytes(std::string(m) + ".npy"), b.bytes(std::string(m) + ".npy")) << runs[i].first << " " << m;
        }
    }
}

TEST(ThreadOptions, EngineResultsEqualAcrossThreadpoolSettings) {
    NEED_STORIES();
    std::vector<std::vector<float>> states;
    for (const ThreadOptions& o : {ThreadOptions{0, ThreadPriority::normal}, ThreadOptions{100, ThreadPriority::normal}}) {
        EngineOptions eo;
        eo.n_threads = 2;
        eo.workers = o;
        Engine e(model, eo);
        const auto recs = pmtest::run(e, {pmtest::req("Once upon a time", 16)});
        ASSERT_EQ(recs.size(), 1u);
        states.push_back(recs[0].states);
    }
    ASSERT_FALSE(states[0].empty());
    EXPECT_EQ(std::memcmp(states[0].data(), states[1].data(), states[0].size() * sizeof(float)), 0);
}

// bench/gpu.sh is well-formed and its dry run lists every step (no GPU needed).
TEST(GpuScript, ParsesAndDryRunListsItsSteps) {
    const std::string script = std::string(PHASEMAP_SOURCE_DIR) + "/bench/gpu.sh";
    auto r = pmtest::run_command({"/bin/bash", "-n", script});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    r = pmtest::run_command({"/bin/bash", script, "--dry-run"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* step : {"PHASEMAP_CUDA=ON bash scripts/deps.sh", "cmake --build build-cuda", "bench_capture", "bench_panel"})
        EXPECT_NE(r.err.find(step), std::string::npos) << step << "\n" << r.err;
    EXPECT_NE(r.out.find("stats"), std::string::npos) << r.out;
    r = pmtest::run_command({"/bin/bash", script, "--bogus"});
    EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
