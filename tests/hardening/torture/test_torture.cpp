// Crash/resume torture of the panel runner (`phasemap panel run`): SIGKILL at seeded random
// moments, one SIGTERM, a disk-full injection (RLIMIT_FSIZE: writes fail with EFBIG) and two
// writers on one DB. After each disturbance the runner is restarted; the final DB must equal an
// uninterrupted run row for row (runs, tokens, models).
//
//   PM_TORTURE_ROUNDS (default 10)  SIGKILL rounds      PM_TORTURE_SEED (default 20240521)
// Its own executable (cmake/hardening.cmake), run by scripts/torture.sh.
#ifdef PM_HAVE_PANEL
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "phasemap/store.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Child {
    pid_t pid = -1;
    fs::path err;
};

// Starts `phasemap panel run MANIFEST --db DB -q -t 1` with stdout/stderr to files.
Child start(const fs::path& dir, const fs::path& manifest, const fs::path& db, const std::string& tag, long fsize_limit = 0) {
    Child c;
    c.err = dir / (tag + ".err");
    const std::string bin = pmtest::phasemap_binary().string();
    std::vector<std::string> args{bin, "panel", "run", manifest.string(), "--db", db.string(), "-q", "-t", "1"};
    c.pid = ::fork();
    if (c.pid == 0) {
        const int e = ::open(c.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int o = ::open("/dev/null", O_WRONLY);
        ::dup2(o, 1);
        ::dup2(e, 2);
        if (fsize_limit > 0) {
            ::signal(SIGXFSZ, SIG_IGN);  // inherited through exec: writes fail with EFBIG instead
            rlimit rl{rlim_t(fsize_limit), rlim_t(fsize_limit)};
            ::setrlimit(RLIMIT_FSIZE, &rl);
        }
        std::vector<char*> av;
        for (auto& a : args) av.push_back(a.data());
        av.push_back(nullptr);
        ::execv(av[0], av.data());
        ::_exit(127);
    }
    return c;
}

int wait_status(pid_t pid) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    return {std::istreambuf_iterator<char>(f), {}};
}

// Everything the DB holds about the panel, row by row, in a canonical order.
std::vector<std::string> dump(const fs::path& db) {
    phasemap::store::OpenOptions o;
    o.read_only = true;
    auto s = phasemap::store::Store::open(db, o);
    std::vector<std::string> out;
    for (const char* q : {"SELECT * FROM models ORDER BY label", "SELECT * FROM runs ORDER BY run_id",
                          "SELECT * FROM tokens ORDER BY run_id, t", "SELECT * FROM token_layers ORDER BY run_id, t, layer"}) {
        out.push_back(std::string("-- ") + q);
        for (auto& r : s->rows(q)) out.push_back(std::move(r));
    }
    return out;
}

void expect_same(const std::vector<std::string>& ref, const std::vector<std::string>& got, const std::string& what) {
    ASSERT_EQ(ref.size(), got.size()) << what << ": row counts differ";
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(ref[i], got[i]) << what << ": row " << i;
}

class Torture : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = pmtest::shared_model("stories260K.gguf");
        if (model_.empty()) GTEST_SKIP() << "stories260K.gguf not present";
        manifest_ = dir_ / "panel.toml";
        std::ofstream(manifest_) << "name = \"torture\"\n"
                                    "[generation]\ntemperatures = [0.0, 0.8]\nn_predict = [8]\nseeds = [1]\nlayers = \"hf:all\"\n"
                                    "[[models]]\nlabel = \"stories\"\npath = \"" << model_.string() << "\"\n"
                                    "[[prompts]]\nbuiltin = \"stories\"\nlimit = 2\n";
        const auto t0 = Clock::now();
        Child c = start(dir_.path, manifest_, dir_ / "ref.duckdb", "ref");
        ASSERT_EQ(wait_status(c.pid), 0) << slurp(c.err);
        ref_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
        ref_ = dump(dir_ / "ref.duckdb");
        ASSERT_GT(ref_.size(), 6u);
    }
    // Runs to completion (a fresh invocation) and compares with the uninterrupted DB.
    void finish_and_compare(const fs::path& db, const std::string& what) {
        Child c = start(dir_.path, manifest_, db, "finish");
        ASSERT_EQ(wait_status(c.pid), 0) << what << ": " << slurp(c.err);
        expect_same(ref_, dump(db), what);
    }
    fs::path model_, manifest_;
    pmtest::TempDir dir_;
    double ref_seconds_ = 0;
    std::vector<std::string> ref_;
};

TEST_F(Torture, SigkillAtSeededMomentsThenResumeEqualsUninterrupted) {
    const int rounds = std::getenv("PM_TORTURE_ROUNDS") ? std::atoi(std::getenv("PM_TORTURE_ROUNDS")) : 10;
    const unsigned seed = std::getenv("PM_TORTURE_SEED") ? unsigned(std::atoll(std::getenv("PM_TORTURE_SEED"))) : 20240521u;
    std::mt19937 rng(seed);
    for (int r = 0; r < rounds; ++r) {
        const fs::path db = dir_ / ("kill" + std::to_string(r) + ".duckdb");
        // Up to three kills per round, each at a uniform moment of an uninterrupted run's duration.
        std::uniform_real_distribution<double> when(0.0, ref_seconds_);
        for (int k = 0; k < 1 + r % 3; ++k) {
            Child c = start(dir_.path, manifest_, db, "kill");
            std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
            ::kill(c.pid, SIGKILL);
            const int st = wait_status(c.pid);
            ASSERT_TRUE(st == 0 || st == 128 + SIGKILL) << "round " << r << ": status " << st << ": " << slurp(c.err);
        }
        finish_and_compare(db, "SIGKILL round " + std::to_string(r) + " (seed " + std::to_string(seed) + ")");
        if (HasFatalFailure()) return;
    }
}

TEST_F(Torture, SigtermFinishesOrRollsBackCleanly) {
    const fs::path db = dir_ / "term.duckdb";
    Child c = start(dir_.path, manifest_, db, "term");
    std::this_thread::sleep_for(std::chrono::duration<double>(ref_seconds_ / 2));
    ::kill(c.pid, SIGTERM);
    const int st = wait_status(c.pid);
    const std::string err = slurp(c.err);
    // Terminated by the signal, or a clean exit; never a crash.
    EXPECT_TRUE(st == 0 || st == 1 || st == 128 + SIGTERM || st == 143) << "status " << st << ": " << err;
    EXPECT_NE(st, 128 + SIGABRT) << err;
    EXPECT_NE(st, 128 + SIGSEGV) << err;
    finish_and_compare(db, "after SIGTERM");
}

TEST_F(Torture, DiskFullFailsCleanlyAndResumes) {
    const fs::path db = dir_ / "full.duckdb";
    // 40 KiB: room for the DuckDB header and little else: the first commits fail.
    Child c = start(dir_.path, manifest_, db, "full", 40 * 1024);
    const int st = wait_status(c.pid);
    const std::string err = slurp(c.err);
    if (st == 0) GTEST_SKIP() << "the panel fits in the file-size limit; nothing was injected";
    EXPECT_LT(st, 128) << "crashed with status " << st << ": " << err;
    EXPECT_EQ(err.rfind("phasemap: error: ", 0), 0u) << err;
    finish_and_compare(db, "after disk full");
}

TEST_F(Torture, TwoWritersOnOneDb) {
    const fs::path db = dir_ / "two.duckdb";
    Child a = start(dir_.path, manifest_, db, "w1");
    Child b = start(dir_.path, manifest_, db, "w2");
    const int sa = wait_status(a.pid), sb = wait_status(b.pid);
    const std::string ea = slurp(a.err), eb = slurp(b.err);
    // At least one finishes; the other either also finishes or refuses with one clear error.
    EXPECT_TRUE(sa == 0 || sb == 0) << ea << eb;
    for (auto [s, e] : {std::pair{sa, ea}, std::pair{sb, eb}}) {
        EXPECT_TRUE(s == 0 || s == 1) << "status " << s << ": " << e;
        if (s == 1) {
            EXPECT_EQ(e.rfind("phasemap: error: ", 0), 0u) << e;
        }
    }
    finish_and_compare(db, "after two writers");
}

}  // namespace
#endif  // PM_HAVE_PANEL
