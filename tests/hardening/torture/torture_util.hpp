// Helpers of the crash/resume tests (test_torture.cpp, test_crash_points.cpp): start phasemap
// as a child process (optionally with PHASEMAP_CRASH_AT), read a results DB row by row, compare.
#pragma once
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "phasemap/store/store.hpp"
#include "support/paths.hpp"
#include "support/rows.hpp"

namespace torture {

namespace fs = std::filesystem;

struct Child {
    pid_t pid = -1;
    fs::path err;
};

// Starts `phasemap ARGS...` with stdout to /dev/null and stderr to DIR/TAG.err; `env` is added to
// the environment (e.g. {"PHASEMAP_CRASH_AT", "store.before_commit"}); `fsize_limit` > 0 sets
// RLIMIT_FSIZE with SIGXFSZ ignored (writes fail with EFBIG).
inline Child start(const fs::path& dir, const std::vector<std::string>& args, const std::string& tag,
                   const std::map<std::string, std::string>& env = {}, long fsize_limit = 0) {
    Child c;
    c.err = dir / (tag + ".err");
    std::vector<std::string> av{pmtest::phasemap_binary().string()};
    av.insert(av.end(), args.begin(), args.end());
    c.pid = ::fork();
    if (c.pid == 0) {
        const int e = ::open(c.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int o = ::open("/dev/null", O_RDWR);
        ::dup2(o, 0);
        ::dup2(o, 1);
        ::dup2(e, 2);
        for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
        if (fsize_limit > 0) {
            ::signal(SIGXFSZ, SIG_IGN);  // inherited through exec: writes fail with EFBIG instead
            rlimit rl{rlim_t(fsize_limit), rlim_t(fsize_limit)};
            ::setrlimit(RLIMIT_FSIZE, &rl);
        }
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        std::vector<char*> p;
        for (auto& a : av) p.push_back(a.data());
        p.push_back(nullptr);
        ::execv(p[0], p.data());
        ::_exit(127);
    }
    return c;
}

// Exit status, or 128 + signal.
inline int wait_status(pid_t pid) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

inline std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    return {std::istreambuf_iterator<char>(f), {}};
}

struct Done {
    int status = -1;
    std::string err;
};
// Runs to the end.
inline Done run(const fs::path& dir, const std::vector<std::string>& args, const std::string& tag,
                const std::map<std::string, std::string>& env = {}) {
    Child c = start(dir, args, tag, env);
    Done d;
    d.status = wait_status(c.pid);
    d.err = slurp(c.err);
    return d;
}

inline std::unique_ptr<phasemap::store::Store> open_ro(const fs::path& db) {
    phasemap::store::OpenOptions o;
    o.read_only = true;
    return phasemap::store::Store::open(db, o);
}

inline const std::vector<std::pair<std::string, std::string>>& run_tables() {
    static const std::vector<std::pair<std::string, std::string>> t{
        {"runs", "run_id"}, {"tokens", "run_id, t"}, {"token_layers", "run_id, t, layer"}};
    return t;
}

// Everything the DB holds about the panel, row by row, in a canonical order. `models_sql`: the
// models query (the default compares every column); `runs_cols`: the runs columns (default all).
inline std::vector<std::string> dump(const fs::path& db, const std::string& models_sql = "SELECT * FROM models ORDER BY label",
                                     const std::string& runs_cols = "*") {
    auto s = open_ro(db);
    std::vector<std::string> out;
    out.push_back("-- models");
    for (auto& r : s->rows(models_sql)) out.push_back(std::move(r));
    for (const auto& [t, order] : run_tables()) {
        out.push_back("-- " + t);
        const std::string cols = t == "runs" ? runs_cols : "*";
        for (auto& r : s->rows("SELECT " + cols + " FROM " + t + " ORDER BY " + order)) out.push_back(std::move(r));
    }
    return out;
}

inline void expect_same(const std::vector<std::string>& ref, const std::vector<std::string>& got, const std::string& what) {
    ASSERT_EQ(ref.size(), got.size()) << what << ": row counts differ";
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(ref[i], got[i]) << what << ": row " << i;
}

// A DB left by a killed writer holds whole generation groups only, each exactly as in the
// uninterrupted DB `ref`: its runs, tokens and token_layers rows are the rows of `ref` for the
// run ids it holds, and every stored run's group (same model, prompt, temperature, seed,
// n_predict) has all `n_norms` normalisations. Returns the number of runs it holds.
inline size_t expect_whole_groups(const fs::path& ref, const fs::path& db, size_t n_norms, const std::string& what) {
    if (!fs::exists(db)) return 0;
    auto s = open_ro(db);
    auto r = open_ro(ref);
    const auto ids = s->run_ids();
    std::string in;
    for (const auto& id : ids) in += (in.empty() ? "'" : ", '") + id + "'";
    const auto partial = s->rows(
        "SELECT model, category, prompt_index, temperature, seed, n_predict, count(*) FROM runs "
        "GROUP BY ALL HAVING count(*) <> " + std::to_string(n_norms));
    EXPECT_TRUE(partial.empty()) << what << ": a generation group stored in part: " << (partial.empty() ? "" : partial[0]);
    for (const auto& [t, order] : run_tables()) {
        const auto got = s->rows("SELECT * FROM " + t + " ORDER BY " + order);
        const auto want = ids.empty() ? std::vector<std::string>{}
                                      : r->rows("SELECT * FROM " + t + " WHERE run_id IN (" + in + ") ORDER BY " + order);
        expect_same(want, got, what + ": " + t);
    }
    const auto ref_models = r->rows("SELECT * FROM models ORDER BY label");
    for (const auto& m : s->rows("SELECT * FROM models ORDER BY label"))
        EXPECT_NE(std::find(ref_models.begin(), ref_models.end(), m), ref_models.end()) << what << ": models row " << m;
    return ids.size();
}

}  // namespace torture
