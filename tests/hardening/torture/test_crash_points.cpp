// Fault injection at every named commit point of the results DB's writers (PHASEMAP_CRASH_AT,
// include/phasemap/io/crash_point.hpp; docs/hardening.md lists the points). Each case kills the
// process at one point — SIGKILL, nothing flushed or rolled back — then checks that the DB is as
// before or as after the interrupted unit (a generation group, a merge, a stored result), and
// that resuming or rerunning ends exactly where an uninterrupted run ends, row for row.
#if defined(PM_HAVE_PANEL) && defined(PM_CRASH_POINTS)
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/store/store.hpp"
#include "support/paths.hpp"
#include "torture_util.hpp"

namespace fs = std::filesystem;
using namespace torture;

namespace {

// Two model identities on one small file: the base model, the same file with a
// LoRA adapter, two normalisations, 2 prompts × 2 temperatures, 6 tokens: 8 generation groups,
// 16 runs rows.
class CrashPoints : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = pmtest::shared_model("stories260K.gguf");
        if (model_.empty()) GTEST_SKIP() << "stories260K.gguf not present";
        phasemap::modelgen::LoraSpec ls;
        ls.targets = {"output", "attn_q"};
        ls.rank = 2;
        ls.b_std = 0.5f;
        phasemap::modelgen::write_random_lora(model_, ls, dir_ / "head.gguf");
        manifest_ = dir_ / "panel.toml";
        std::ofstream(manifest_) << "name = \"crash\"\n"
                                    "[generation]\ntemperatures = [0.0, 0.8]\nn_predict = [6]\nseeds = [3]\nlayers = \"hf:all\"\n"
                                    "[metrics]\nnorms = [\"raw\", \"clipped_mad\"]\n"
                                    "[[models]]\nlabel = \"base\"\npath = \"" << model_.string() << "\"\n"
                                    "[[models]]\nlabel = \"tuned\"\npath = \"" << model_.string() << "\"\nvariant_of = \"base\"\n"
                                    "adapters = [{ path = \"head.gguf\", scale = 1.0 }]\n"
                                    "[[prompts]]\nbuiltin = \"stories\"\ncategories = [\"animals\"]\nlimit = 2\n";
        ref_ = dir_ / "ref.duckdb";
        const Done r = run(dir_.path, panel_args(ref_), "ref");
        ASSERT_EQ(r.status, 0) << r.err;
        ASSERT_EQ(open_ro(ref_)->count("runs"), 16);
    }
    std::vector<std::string> panel_args(const fs::path& db, const std::string& shard = "1/1") const {
        return {"panel", "run", manifest_.string(), "--db", db.string(), "-q", "-t", "1", "--shard", shard};
    }
    // Runs with PHASEMAP_CRASH_AT=spec and expects the process to be killed there.
    void crash(const std::vector<std::string>& args, const std::string& spec, const std::string& tag) {
        const Done c = run(dir_.path, args, tag, {{"PHASEMAP_CRASH_AT", spec}});
        const std::string point = spec.substr(0, spec.find(':'));
        ASSERT_EQ(c.status, 128 + SIGKILL) << spec << ": not killed: " << c.err;
        ASSERT_NE(c.err.find("crash point '" + point + "' reached"), std::string::npos) << spec << ": " << c.err;
    }
    // Temporary files of killed creators and merges are gone once a later command succeeded.
    void expect_no_leftovers(const std::string& what) const {
        for (const auto& e : fs::directory_iterator(dir_.path)) {
            const std::string n = e.path().filename().string();
            EXPECT_TRUE(n.find(".creating-") == std::string::npos && n.find(".merging") == std::string::npos)
                << what << ": left over: " << n;
        }
    }
    fs::path model_, manifest_, ref_;
    pmtest::TempDir dir_;
};

// `panel run` killed at each point of its commit path (first, second and a later hit), then
// resumed: whole groups only after the kill, the uninterrupted DB after the resume.
TEST_F(CrashPoints, PanelRunKilledAtEveryCommitPointResumesToTheUninterruptedDb) {
    const std::vector<std::string> specs = {
        "store.create:1",             "store.create:4",             // creating the schema of a new DB
        "panel.before_commit:1",      "panel.before_commit:5",      // a group analysed, no transaction yet
        "store.between_runs:1",       "store.between_runs:6",       // inside the group: after its first norm's rows
        "store.between_statements:1", "store.between_statements:9", // between a run's runs/tokens/token_layers appends
        "store.before_commit:1",      "store.before_commit:7",      // every row appended, COMMIT not sent
        "panel.after_commit:1",       "panel.after_commit:4",       // committed, progress not reported
    };
    const auto want = dump(ref_);
    for (size_t i = 0; i < specs.size(); ++i) {
        SCOPED_TRACE(specs[i]);
        const fs::path db = dir_ / fmt::format("p{}.duckdb", i);
        crash(panel_args(db), specs[i], "crash");
        if (HasFatalFailure()) return;
        const size_t n = expect_whole_groups(ref_, db, 2, specs[i]);
        // The kill lost exactly the group in flight: after_commit:k keeps k groups (2 runs each),
        // the points before a commit k − 1; between_statements is hit twice per run, 2 runs per group.
        const std::string point = specs[i].substr(0, specs[i].find(':'));
        const size_t k = std::stoul(specs[i].substr(specs[i].find(':') + 1));
        size_t groups = k - 1;
        if (point == "panel.after_commit") groups = k;
        if (point == "store.create") groups = 0;
        if (point == "store.between_statements") groups = ((k + 1) / 2 - 1) / 2;
        EXPECT_EQ(n, 2 * groups);
        const Done r = run(dir_.path, panel_args(db), "resume");
        ASSERT_EQ(r.status, 0) << r.err;
        expect_same(want, dump(db), specs[i] + ": resumed");
        if (HasFatalFailure()) return;
        expect_no_leftovers(specs[i] + ": resumed");
    }
}

// Shards killed in their commit path and resumed, then `merge` killed at each of its points:
// a new output is absent until it is complete; an existing output keeps its rows until the
// whole merge commits. The final merge equals the uninterrupted single-DB panel.
TEST_F(CrashPoints, ShardsAndMergeKilledAtEveryPoint) {
    const fs::path s1 = dir_ / "s1.duckdb", s2 = dir_ / "s2.duckdb";
    crash(panel_args(s1, "1/2"), "store.between_runs:2", "s1");
    crash(panel_args(s2, "2/2"), "panel.after_commit:1", "s2");
    if (HasFatalFailure()) return;
    expect_whole_groups(ref_, s1, 2, "shard 1 killed");
    EXPECT_EQ(expect_whole_groups(ref_, s2, 2, "shard 2 killed"), 2u);
    for (const auto& [db, shard] : {std::pair{s1, "1/2"}, std::pair{s2, "2/2"}}) {
        const Done r = run(dir_.path, panel_args(db, shard), "shard");
        ASSERT_EQ(r.status, 0) << r.err;
    }
    const size_t n1 = size_t(open_ro(s1)->count("runs")), n2 = size_t(open_ro(s2)->count("runs"));
    ASSERT_EQ(n1 + n2, 16u);
    const auto want = dump(ref_);

    // A new output: killed anywhere before the rename, there is no output (and the next merge
    // works); killed after it, the output is complete.
    const fs::path out = dir_ / "all.duckdb";
    const std::vector<std::string> merge_args{"merge", s1.string(), s2.string(), "-o", out.string()};
    for (const std::string spec : {"store.create:2", "merge.between_statements:1", "merge.between_inputs:1",
                                   "merge.between_statements:2", "merge.before_commit:1", "merge.after_commit:1"}) {
        SCOPED_TRACE(spec);
        crash(merge_args, spec, "merge");
        if (HasFatalFailure()) return;
        EXPECT_FALSE(fs::exists(out)) << spec << ": a killed merge left an output";
    }
    crash(merge_args, "merge.after_rename:1", "merge");
    if (HasFatalFailure()) return;
    ASSERT_TRUE(fs::exists(out));
    expect_same(want, dump(out), "merge killed after the rename");
    {
        const Done r = run(dir_.path, merge_args, "merge-again");
        ASSERT_EQ(r.status, 0) << r.err;
        expect_same(want, dump(out), "merged twice");
    }

    // An existing output holding shard 1: killed during the merge of shard 2, it is as before.
    const fs::path part = dir_ / "part.duckdb";
    {
        const Done r = run(dir_.path, {"merge", s1.string(), "-o", part.string()}, "merge-s1");
        ASSERT_EQ(r.status, 0) << r.err;
    }
    const auto before = dump(part);
    ASSERT_EQ(open_ro(part)->count("runs"), int64_t(n1));
    const std::vector<std::string> more{"merge", s2.string(), s1.string(), "-o", part.string()};
    for (const std::string spec : {"merge.between_statements:1", "merge.between_inputs:1", "merge.before_commit:1"}) {
        SCOPED_TRACE(spec);
        crash(more, spec, "merge-more");
        if (HasFatalFailure()) return;
        expect_same(before, dump(part), spec + ": existing output changed by a killed merge");
        if (HasFatalFailure()) return;
    }
    const Done r = run(dir_.path, more, "merge-more");
    ASSERT_EQ(r.status, 0) << r.err;
    expect_same(want, dump(part), "merge into the existing output");
    expect_no_leftovers("after the merges");
}

// The stored results of `audit` (write-back into the panel DB), `control-audit --db` and
// `monitor-eval --db`:
// killed before their transaction commits, the DB holds what it held; killed after it, what an
// uninterrupted command leaves. Compared over every table of the DB except the creation times.
std::vector<std::string> results_dump(const fs::path& db) {
    auto s = open_ro(db);
    std::vector<std::string> out;
    for (auto& t : s->rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name")) {
        out.push_back("-- " + t);
        const std::string q = t == "audits" ? "SELECT * EXCLUDE (created_at, seq, source) FROM audits ORDER BY ALL"
                                            : "SELECT * FROM \"" + t + "\" ORDER BY ALL";
        for (auto& r : s->rows(q)) out.push_back(std::move(r));
    }
    return out;
}

TEST_F(CrashPoints, AuditControlAuditAndMonitorEvalWriteBackAreAllOrNothing) {
    // audit on a copy of the complete panel DB.
    const fs::path db = dir_ / "audited.duckdb";
    const std::vector<std::string> audit{"audit", db.string(), "-q", "--bootstrap", "20", "--permutations", "20"};
    fs::copy_file(ref_, db);
    const auto before = results_dump(db);
    for (const std::string spec : {"audits.between_statements:1", "audits.between_statements:3", "audits.before_commit:1"}) {
        SCOPED_TRACE(spec);
        crash(audit, spec, "audit");
        if (HasFatalFailure()) return;
        expect_same(before, results_dump(db), spec + ": killed audit write-back changed the DB");
        if (HasFatalFailure()) return;
    }
    const fs::path clean = dir_ / "audited-clean.duckdb";
    fs::copy_file(ref_, clean);
    {
        auto a = audit;
        a[1] = clean.string();
        const Done r = run(dir_.path, a, "audit-clean");
        ASSERT_EQ(r.status, 0) << r.err;
    }
    const auto after = results_dump(clean);
    ASSERT_GT(after.size(), before.size() + 5) << "the audit stored nothing";
    crash(audit, "audits.after_commit:1", "audit");
    if (HasFatalFailure()) return;
    expect_same(after, results_dump(db), "audit killed after its commit");

    // control-audit --db into a DB that already holds an earlier result under the same name:
    // the replacement happens whole or not at all.
    {
        std::ofstream(dir_ / "prompts.txt") << "Once upon a time\nThe little dog\n";
    }
    const fs::path cdb = dir_ / "control.duckdb";
    auto control = [&](const std::string& n) {
        return std::vector<std::string>{"control-audit", "-m", model_.string(), "--prompts", (dir_ / "prompts.txt").string(),
                                        "--intervene", "scale:block:2:0.5", "-n", n, "--bootstrap", "50", "-t", "1",
                                        "--db", cdb.string(), "--name", "c", "-q"};
    };
    {
        const Done r = run(dir_.path, control("4"), "control-first");
        ASSERT_EQ(r.status, 0) << r.err;
    }
    const auto first = results_dump(cdb);
    for (const std::string spec : {"audits.between_statements:1", "audits.before_commit:1"}) {
        SCOPED_TRACE(spec);
        crash(control("6"), spec, "control");
        if (HasFatalFailure()) return;
        expect_same(first, results_dump(cdb), spec + ": killed control-audit changed the stored result");
        if (HasFatalFailure()) return;
    }
    crash(control("6"), "audits.after_commit:1", "control");
    if (HasFatalFailure()) return;
    const auto replaced = results_dump(cdb);
    EXPECT_NE(replaced, first) << "the second control audit (6 tokens) was not stored";
    const Done r = run(dir_.path, control("6"), "control-again");
    ASSERT_EQ(r.status, 0) << r.err;
    expect_same(replaced, results_dump(cdb), "control-audit killed after its commit vs. uninterrupted");

    // monitor-eval --db into a new DB: the DB is created (complete, empty) before decoding; killed
    // before COMMIT it holds no result, after COMMIT the result of an uninterrupted run.
    {
        std::ofstream(dir_ / "qa.csv") << "prompt,answer\nOnce upon a time there was a,cat\nThe dog ran to the,park\n"
                                          "Lily saw a big,tree\n";
    }
    auto monitor = [&](const fs::path& db) {
        return std::vector<std::string>{"monitor-eval", "-m", model_.string(), "--data", (dir_ / "qa.csv").string(), "-n", "6",
                                        "--bootstrap", "50", "-t", "1", "--db", db.string(), "--name", "m", "-q"};
    };
    const fs::path mdb = dir_ / "monitor.duckdb";
    for (const std::string spec : {"audits.between_statements:1", "audits.before_commit:1"}) {
        SCOPED_TRACE(spec);
        crash(monitor(mdb), spec, "monitor");
        if (HasFatalFailure()) return;
        EXPECT_TRUE(open_ro(mdb)->audits().empty()) << spec << ": a killed monitor-eval stored a result";
    }
    crash(monitor(mdb), "audits.after_commit:1", "monitor");
    if (HasFatalFailure()) return;
    const fs::path mclean = dir_ / "monitor-clean.duckdb";
    const Done m = run(dir_.path, monitor(mclean), "monitor-clean");
    ASSERT_EQ(m.status, 0) << m.err;
    ASSERT_EQ(open_ro(mclean)->audits("monitor_eval").size(), 1u);
    expect_same(results_dump(mclean), results_dump(mdb), "monitor-eval killed after its commit vs. uninterrupted");
}

// Without PHASEMAP_CRASH_AT (or with a point that is never reached) nothing is injected.
TEST_F(CrashPoints, AnUnknownPointChangesNothing) {
    const fs::path db = dir_ / "plain.duckdb";
    const Done r = run(dir_.path, panel_args(db), "plain", {{"PHASEMAP_CRASH_AT", "no.such.point"}});
    ASSERT_EQ(r.status, 0) << r.err;
    expect_same(dump(ref_), dump(db), "with an unknown crash point");
}

}  // namespace
#endif
