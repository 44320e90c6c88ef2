// Crash/resume torture of the panel runner (`phasemap panel run`): SIGKILL at seeded random
// moments, one SIGTERM, a disk-full injection (RLIMIT_FSIZE: writes fail with EFBIG), two writers
// on one DB, Ctrl-C, and the resume of a DB left half-written by the phasemap before the
// one-transaction-per-generation fix (fixtures/). After each disturbance the runner is restarted;
// the final DB must equal an uninterrupted run row for row (models, runs, tokens, token_layers).
// The fault-injection suite at named commit points is test_crash_points.cpp (same executable).
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

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/store/store.hpp"
#include "support/paths.hpp"
#include "torture_util.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace torture;

namespace {

// `phasemap panel run MANIFEST --db DB -q -t 1`.
Child start_panel(const fs::path& dir, const fs::path& manifest, const fs::path& db, const std::string& tag, long fsize_limit = 0) {
    return start(dir, {"panel", "run", manifest.string(), "--db", db.string(), "-q", "-t", "1"}, tag, {}, fsize_limit);
}

// The panel of the issue's scenario, small: two models (stories260K and the same file with a LoRA
// adapter, so two model identities), two normalisations, 2 prompts × 2 temperatures, 8 tokens:
// 8 generations, 16 runs rows.
void write_manifest(const fs::path& dir, const fs::path& model, const fs::path& manifest) {
    phasemap::modelgen::LoraSpec ls;
    ls.targets = {"output"};
    ls.rank = 2;
    ls.b_std = 0.5f;
    phasemap::modelgen::write_random_lora(model, ls, dir / "head.gguf");
    std::ofstream(manifest) << "name = \"torture\"\n"
                               "[generation]\ntemperatures = [0.0, 0.8]\nn_predict = [8]\nseeds = [1]\nlayers = \"hf:all\"\n"
                               "[metrics]\nnorms = [\"raw\", \"clipped_mad\"]\n"
                               "[[models]]\nlabel = \"stories\"\npath = \"" << model.string() << "\"\n"
                               "[[models]]\nlabel = \"tuned\"\npath = \"" << model.string() << "\"\nvariant_of = \"stories\"\n"
                               "adapters = [{ path = \"head.gguf\", scale = 1.0 }]\n"
                               "[[prompts]]\nbuiltin = \"stories\"\ncategories = [\"animals\"]\nlimit = 2\n";
}

class Torture : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = pmtest::shared_model("stories260K.gguf");
        if (model_.empty()) GTEST_SKIP() << "stories260K.gguf not present";
        manifest_ = dir_ / "panel.toml";
        write_manifest(dir_.path, model_, manifest_);
        const auto t0 = Clock::now();
        Child c = start_panel(dir_.path, manifest_, dir_ / "ref.duckdb", "ref");
        ASSERT_EQ(wait_status(c.pid), 0) << slurp(c.err);
        ref_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
        ref_ = dump(dir_ / "ref.duckdb");
        ASSERT_EQ(open_ro(dir_ / "ref.duckdb")->count("runs"), 16);
    }
    // Runs to completion (a fresh invocation) and compares with the uninterrupted DB.
    void finish_and_compare(const fs::path& db, const std::string& what) {
        Child c = start_panel(dir_.path, manifest_, db, "finish");
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
            Child c = start_panel(dir_.path, manifest_, db, "kill");
            std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
            ::kill(c.pid, SIGKILL);
            const int st = wait_status(c.pid);
            ASSERT_TRUE(st == 0 || st == 128 + SIGKILL) << "round " << r << ": status " << st << ": " << slurp(c.err);
            // Killed at any moment: whole generations only, each as in the uninterrupted run.
            expect_whole_groups(dir_ / "ref.duckdb", db, 2, "SIGKILL round " + std::to_string(r) + " kill " + std::to_string(k));
            if (HasFailure()) return;
        }
        finish_and_compare(db, "SIGKILL round " + std::to_string(r) + " (seed " + std::to_string(seed) + ")");
        if (HasFatalFailure()) return;
    }
}

TEST_F(Torture, SigtermFinishesOrRollsBackCleanly) {
    const fs::path db = dir_ / "term.duckdb";
    Child c = start_panel(dir_.path, manifest_, db, "term");
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
    Child c = start_panel(dir_.path, manifest_, db, "full", 40 * 1024);
    const int st = wait_status(c.pid);
    const std::string err = slurp(c.err);
    if (st == 0) GTEST_SKIP() << "the panel fits in the file-size limit; nothing was injected";
    EXPECT_LT(st, 128) << "crashed with status " << st << ": " << err;
    EXPECT_EQ(err.rfind("phasemap: error: ", 0), 0u) << err;
    finish_and_compare(db, "after disk full");
}

TEST_F(Torture, TwoWritersOnOneDb) {
    const fs::path db = dir_ / "two.duckdb";
    Child a = start_panel(dir_.path, manifest_, db, "w1");
    Child b = start_panel(dir_.path, manifest_, db, "w2");
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

// Ctrl-C after the first committed generation: the process stops (killed by SIGINT, as without
// a handler), says how many runs it wrote — exactly what the DB holds — and that the panel
// resumes; the resumed panel equals the uninterrupted one.
TEST_F(Torture, CtrlCSaysHowManyRunsWereWrittenAndResumes) {
    const fs::path db = dir_ / "int.duckdb";
    Child c = start(dir_.path, {"panel", "run", manifest_.string(), "--db", db.string(), "-t", "1"}, "int");
    // Wait for the first progress line (printed after the first commit), then interrupt.
    int st = -1;
    for (;;) {
        int raw = 0;
        if (::waitpid(c.pid, &raw, WNOHANG) == c.pid) {
            st = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
            break;
        }
        if (slurp(c.err).find("panel: ") != std::string::npos) {
            ::kill(c.pid, SIGINT);
            st = wait_status(c.pid);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const std::string err = slurp(c.err);
    ASSERT_EQ(st, 128 + SIGINT) << "the panel ended before it could be interrupted, or did not stop: " << err;
    const size_t stored = expect_whole_groups(dir_ / "ref.duckdb", db, 2, "after Ctrl-C");
    EXPECT_GE(stored, 2u);
    EXPECT_LT(stored, 16u);
    const std::string want = "interrupted (Ctrl-C): " + std::to_string(stored) + " runs written by this invocation, " +
                             std::to_string(stored) + " of 16 now in " + db.string() +
                             ". The panel resumes: run the same command again";
    EXPECT_NE(err.find(want), std::string::npos) << err;
    finish_and_compare(db, "after Ctrl-C");
}

// A DB written by phasemap before the one-transaction-per-generation fix, killed between the two
// normalisation rows of one generation (fixtures/README.md says how it was made): resume says
// what it repairs, completes the group without inserting a stored row twice, and the DB equals
// an uninterrupted run of the same panel.
TEST(TortureFixture, ResumeRepairsAGenerationStoredInPartByThePreFixVersion) {
    const fs::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    const fs::path fx = fs::path(PHASEMAP_SOURCE_DIR) / "tests/hardening/torture/fixtures";
    pmtest::TempDir d;
    {
        std::string man = slurp(fx / "half-group.toml.in");
        for (size_t at; (at = man.find("@MODEL@")) != std::string::npos;) man.replace(at, 7, model.string());
        std::ofstream(d / "panel.toml") << man;
    }
    const fs::path db = d / "half-group.duckdb";
    fs::copy_file(fx / "half-group.duckdb", db);
    fs::copy_file(fx / "half-group.duckdb.wal", d / "half-group.duckdb.wal");
    // The fixture holds one runs row of a two-norm generation: a group stored in part.
    {
        auto s = open_ro(db);
        const auto partial = s->rows("SELECT count(*) FROM runs GROUP BY model, category, prompt_index, temperature, seed, n_predict "
                                     "HAVING count(*) = 1");
        ASSERT_EQ(partial.size(), 1u) << "the fixture no longer holds a half-written generation";
    }
    const auto base = std::vector<std::string>{"panel", "run", (d / "panel.toml").string(), "-t", "1", "--db"};
    auto args = base;
    args.push_back(db.string());
    const Done r = run(d.path, args, "repair");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("repairing a generation stored in part"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("1 of 2 runs stored"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("Duplicate key"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("1 partly stored generation(s) completed"), std::string::npos) << r.err;
    // The same panel uninterrupted, into a new DB. The models row's path is where the model was
    // when the fixture was made: compared without it. The fixture's stored row was computed on
    // another CPU: its numbers are compared within 1e-5 (relative, floor 1), everything else exactly.
    args = base;
    args.push_back((d / "ref.duckdb").string());
    const Done u = run(d.path, args, "ref");
    ASSERT_EQ(u.status, 0) << u.err;
    // The fixture predates runs.output_stats (schema version 4): its stored row keeps NULL there (not
    // recorded), the rows the resume added say "host"; every other column is compared.
    const std::string models = "SELECT * EXCLUDE (path) FROM models ORDER BY label", runs = "* EXCLUDE (output_stats)";
    pmtest::expect_same_within(dump(d / "ref.duckdb", models, runs), dump(db, models, runs), 1e-5, "repaired fixture");
    EXPECT_EQ(open_ro(db)->rows("SELECT coalesce(output_stats, 'NULL'), count(*) FROM runs GROUP BY ALL ORDER BY ALL"),
              (std::vector<std::string>{"NULL\t1", "host\t7"}));
    EXPECT_EQ(open_ro(d / "ref.duckdb")->rows("SELECT DISTINCT output_stats FROM runs"), std::vector<std::string>{"host"});
    // Idempotent: a second resume finds everything stored and repairs nothing.
    args = base;
    args.push_back(db.string());
    const Done again = run(d.path, args, "again");
    ASSERT_EQ(again.status, 0) << again.err;
    EXPECT_NE(again.err.find("0 runs to do, 8 already in"), std::string::npos) << again.err;
    EXPECT_EQ(again.err.find("repairing"), std::string::npos) << again.err;
}

}  // namespace
#endif  // PM_HAVE_PANEL
