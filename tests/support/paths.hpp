// Test helpers: where things are, running the CLI, temporary directories.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace pmtest {

namespace fs = std::filesystem;

// ../shared/models next to the repository (or $PHASEMAP_SHARED/models).
fs::path shared_models_dir();
// Path of a shared model, or empty path when it is absent (callers GTEST_SKIP then).
fs::path shared_model(const std::string& file);
// The pinned llama.cpp source tree (models/ggml-vocab-*.gguf live there).
fs::path llama_src_dir();
// The built CLI binary.
fs::path phasemap_binary();

// A fresh directory removed on destruction.
struct TempDir {
    fs::path path;
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    fs::path operator/(const std::string& name) const { return path / name; }
};

struct RunResult {
    int exit_code = -1;   // exit status, or 128+signal when killed by a signal
    std::string out;      // stdout
    std::string err;      // stderr
};
// Runs the phasemap binary with the given arguments (no shell involved).
RunResult run_phasemap(const std::vector<std::string>& args);
RunResult run_command(const std::vector<std::string>& argv);

}  // namespace pmtest
