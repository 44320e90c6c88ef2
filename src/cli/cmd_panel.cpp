// `phasemap panel plan|run|slurm`: panel manifests (docs/panels.md).
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include "phasemap/capture/capture.hpp"
#include "phasemap/panel/manifest.hpp"
#include "phasemap/panel/plan.hpp"
#include "phasemap/plan/panel_run.hpp"
#include "phasemap/store/store.hpp"
#include "cli_util.hpp"
#include "phasemap/io/files.hpp"
#include "engine_flags.hpp"
#include "thread_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

namespace fs = std::filesystem;
using namespace phasemap::panel;

Manifest load(const std::string& file) { return load_manifest(file); }  // ManifestError lists every problem

struct PanelArgs {
    std::string manifest;
    // run
    std::string db;
    int parallel = 1;
    int threads = 0;
    std::string output_stats = "auto";
    std::string shard = "1/1";
    bool quiet = false;
    // slurm
    std::string out_dir = "panel-shards";
    int tasks = 4;
    std::string script;
    std::string partition, time_limit = "04:00:00", mem;
    int cpus = 0;
};

int run_plan(const PanelArgs& a) {
    const Manifest m = load(a.manifest);
    fmt::print("{}", format_plan(m, plan_panel(m)));
    return 0;
}

int run_run(const PanelArgs& a) {
    if (a.db.empty()) throw UserError("--db is required");
    if (a.parallel < 1) throw UserError("--parallel must be at least 1");
    if (a.threads < 0) throw UserError("--threads must be ≥ 0");
    plan::RunnerOptions o;
    o.shard = parse_shard(a.shard);
    checked_threads(a.threads);           // a bad PHASEMAP_THREADS, too, before the DB is touched
    const Manifest m = load(a.manifest);  // every manifest problem is reported before the DB is touched
    o.db = a.db;
    o.n_parallel = a.parallel;
    o.n_threads = a.threads;
    o.output_stats = capture::parse_output_stats(a.output_stats);
    const bool tty = ::isatty(2) == 1;
    auto last = std::chrono::steady_clock::now() - std::chrono::seconds(10);
    plan::report_interrupts(m.name, o.db);
    o.on_repair = [&](const std::string& line) { fmt::print(stderr, "panel '{}': {}\n", m.name, line); };
    if (!a.quiet) {
        o.on_plan = [&](size_t pending, size_t skipped) {
            fmt::print(stderr, "panel '{}': {} runs to do{}{}\n", m.name, pending,
                       skipped ? fmt::format(", {} already in {}", skipped, a.db) : std::string(),
                       o.shard.count > 1 ? fmt::format(" (shard {})", o.shard.str()) : std::string());
        };
        o.on_progress = [&](const plan::Progress& p) {
            const auto now = std::chrono::steady_clock::now();
            const bool final = p.runs_done == p.runs_total;
            if (!tty && !final && now - last < std::chrono::seconds(2)) return;
            last = now;
            fmt::print(stderr, "{}", plan::progress_line(p, tty));
            if (tty && final) fmt::print(stderr, "\n");
        };
    }
    const plan::RunnerResult r = plan::run_panel(m, o);
    if (!a.quiet)
        fmt::print(stderr, "panel '{}': {} runs written, {} skipped{}, {} tokens in {:.1f} s ({:.1f} tok/s) → {}\n", m.name, r.done,
                   r.skipped, r.repaired ? fmt::format(", {} partly stored generation(s) completed", r.repaired) : std::string(), r.tokens, r.seconds, r.seconds > 0 ? double(r.tokens) / r.seconds : 0.0, a.db);
    return 0;
}

std::string sh_quote(const std::string& s) {
    std::string o = "'";
    for (char c : s) {
        if (c == '\'') o += "'\\''";
        else o.push_back(c);
    }
    return o + "'";
}

int run_slurm(const PanelArgs& a) {
    if (a.tasks < 1) throw UserError("--tasks must be at least 1");
    const Manifest m = load(a.manifest);
    const fs::path exe = fs::read_symlink("/proc/self/exe");
    const fs::path manifest = fs::absolute(a.manifest);
    const fs::path dir = fs::absolute(a.out_dir);
    const std::string name = m.name.empty() ? manifest.stem().string() : m.name;
    std::string job;
    for (char c : name) job.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_');
    std::string s = "#!/bin/bash\n";
    s += fmt::format("# phasemap panel '{}' as a Slurm array: task i runs shard i/{} into its own DB.\n", name, a.tasks);
    s += fmt::format("# Submit: sbatch {}\n", a.script.empty() ? "<this file>" : a.script);
    s += fmt::format("# Then:   {} merge {}/shard-*-of-{}.duckdb -o {}/all.duckdb\n", exe.string(), dir.string(), a.tasks, dir.string());
    s += fmt::format("#SBATCH --job-name=phasemap-{}\n", job);
    s += fmt::format("#SBATCH --array=1-{}\n", a.tasks);
    s += fmt::format("#SBATCH --output={}/slurm-%A_%a.out\n", dir.string());
    s += "#SBATCH --ntasks=1\n";
    if (a.cpus > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", a.cpus);
    if (!a.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", a.partition);
    if (!a.time_limit.empty()) s += fmt::format("#SBATCH --time={}\n", a.time_limit);
    if (!a.mem.empty()) s += fmt::format("#SBATCH --mem={}\n", a.mem);
    s += "set -euo pipefail\n";
    s += fmt::format("mkdir -p {}\n", sh_quote(dir.string()));
    s += fmt::format("i=${{SLURM_ARRAY_TASK_ID:?not running as a Slurm array task}}\n");
    s += fmt::format("exec {} panel run {} --db {}/shard-$i-of-{}.duckdb --shard $i/{} --parallel {} --threads {}\n",
                     sh_quote(exe.string()), sh_quote(manifest.string()), sh_quote(dir.string()), a.tasks, a.tasks,
                     a.parallel, a.threads > 0 ? std::to_string(a.threads) : std::string("${SLURM_CPUS_PER_TASK:-0}"));
    const bool to_file = !(a.script.empty() || a.script == "-");
    if (to_file) {
        std::vector<std::string> inputs{a.manifest};
        for (const auto& mm : m.models) inputs.push_back(mm.path.string());
        check_output(a.script, inputs, "-o");
    }
    // Slurm opens the --output file before the script runs: its folder must exist at submission.
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) throw UserError(fmt::format("--out-dir '{}': cannot create the folder ({})", dir.string(), ec.message()));
    if (!to_file) {
        fmt::print("{}", s);
    } else {
        io::write_file_atomic(a.script, s);
        fs::permissions(a.script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
        fmt::print(stderr, "wrote {} (sbatch it; {} tasks, DBs in {})\n", a.script, a.tasks, dir.string());
    }
    return 0;
}

Verb reg{"panel", "Panels: plan, run (batched, resumable, into a DuckDB) or shard over Slurm a manifest's grid", [](CLI::App& app) {
    auto a = std::make_shared<PanelArgs>();
    app.require_subcommand(1);
    auto* plan = app.add_subcommand("plan", "print the expanded grid size and an estimate of tokens and disk");
    plan->add_option("manifest", a->manifest, "panel manifest (TOML)")->required();
    auto* run = app.add_subcommand("run", "run every pending run of the grid into a results DB (skips runs already there)");
    run->add_option("manifest", a->manifest, "panel manifest (TOML)")->required();
    run->add_option("--db", a->db, "results DB (DuckDB file; created when missing)")->required()->check(kPath);
    run->add_option("--parallel", a->parallel, "sequences decoded together in one batch")->capture_default_str()->check(in(opt::kParallel));
    run->add_option("-t,-j,--threads", a->threads, "CPU threads (0 = $PHASEMAP_THREADS or the physical cores)")->capture_default_str()->check(in(opt::kThreads));
    bind_thread_flags(*run, a->threads);
    bind_output_stats(*run, a->output_stats);
    run->add_option("--shard", a->shard, "run only shard i of N (i/N, 1-based) of the grid")->capture_default_str();
    run->add_flag("-q,--quiet", a->quiet, "no progress output");
    auto* sl = app.add_subcommand("slurm", "write an `sbatch --array` script: one shard per task, each into its own DB");
    sl->add_option("manifest", a->manifest, "panel manifest (TOML)")->required();
    sl->add_option("--tasks", a->tasks, "array tasks = shards")->capture_default_str()->check(in({1, 100000, false, true}));
    sl->add_option("--out-dir", a->out_dir, "directory of the shard DBs and Slurm logs")->capture_default_str()->check(kPath);
    sl->add_option("-o,--output", a->script, "script file (default: stdout)")->check(kPath);
    sl->add_option("--parallel", a->parallel, "sequences per batch in each task")->capture_default_str()->check(in(opt::kParallel));
    sl->add_option("-t,--threads", a->threads, "threads per task (0 = $SLURM_CPUS_PER_TASK or all)")->capture_default_str()->check(in(opt::kThreads));
    sl->add_option("--cpus-per-task", a->cpus, "#SBATCH --cpus-per-task (0 = not set)")->capture_default_str()->check(in({0, 4096, false, true}));
    sl->add_option("--partition", a->partition, "#SBATCH --partition");
    sl->add_option("--time", a->time_limit, "#SBATCH --time (\"\" = not set)")->capture_default_str();
    sl->add_option("--mem", a->mem, "#SBATCH --mem");
    return [a, plan, run, sl]() -> int {
        if (plan->parsed()) return run_plan(*a);
        if (run->parsed()) return run_run(*a);
        if (sl->parsed()) return run_slurm(*a);
        return 0;
    };
}};

}  // namespace
}  // namespace phasemap::cli
