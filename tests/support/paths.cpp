#include "support/paths.hpp"

#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace pmtest {

fs::path shared_models_dir() {
    if (const char* env = std::getenv("PHASEMAP_SHARED")) return fs::path(env) / "models";
    return fs::path(PHASEMAP_SOURCE_DIR).parent_path() / "shared" / "models";
}

fs::path shared_model(const std::string& file) {
    fs::path p = shared_models_dir() / file;
    return fs::exists(p) ? p : fs::path();
}

fs::path llama_src_dir() { return fs::path(PHASEMAP_LLAMA_SRC); }
fs::path phasemap_binary() { return fs::path(PHASEMAP_BINARY); }

TempDir::TempDir() {
    std::random_device rd;
    for (int i = 0; i < 100; ++i) {
        fs::path p = fs::temp_directory_path() / ("pmtest-" + std::to_string(rd()));
        std::error_code ec;
        if (fs::create_directory(p, ec)) { path = p; return; }
    }
    throw std::runtime_error("cannot create temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
}

static std::string slurp_fd(int fd) {
    std::string s;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
}

RunResult run_command(const std::vector<std::string>& argv) {
    // stdout/stderr go to temp files (no pipe dead-locks with large outputs).
    char out_tpl[] = "/tmp/pmtest-outXXXXXX";
    char err_tpl[] = "/tmp/pmtest-errXXXXXX";
    int fo = mkstemp(out_tpl), fe = mkstemp(err_tpl);
    if (fo < 0 || fe < 0) throw std::runtime_error("mkstemp failed");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        std::vector<char*> a;
        for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        execv(a[0], a.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    lseek(fo, 0, SEEK_SET);
    lseek(fe, 0, SEEK_SET);
    r.out = slurp_fd(fo);
    r.err = slurp_fd(fe);
    close(fo); close(fe);
    unlink(out_tpl); unlink(err_tpl);
    return r;
}

RunResult run_phasemap(const std::vector<std::string>& args) {
    std::vector<std::string> argv{phasemap_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
}

}  // namespace pmtest
