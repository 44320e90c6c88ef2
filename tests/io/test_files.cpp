// The shared file mechanisms of issue 17 (phasemap/io/files.hpp, phasemap/metrics/option_domains.hpp): input
// checks, the output-path check by device and inode, the atomic writer, the JSON depth limit and
// the option domains. The verbs that use them are exercised by tests/bad-inputs.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

#include <nlohmann/json.hpp>

#include "phasemap/io/files.hpp"
#include "phasemap/metrics/option_domains.hpp"
#include "support/paths.hpp"

using namespace phasemap;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> names(const fs::path& d) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

TEST(Files, InputMustBeARegularFile) {
    pmtest::TempDir d;
    fs::create_directory(d / "dir");
    ASSERT_EQ(::mkfifo((d / "fifo").c_str(), 0600), 0);
    EXPECT_NE(message_of([&] { io::read_input_file(d / "dir", "prompt file"); }).find("it is a directory"), std::string::npos);
    EXPECT_NE(message_of([&] { io::read_input_file(d / "fifo", "prompt file"); }).find("not a regular file"), std::string::npos);
    EXPECT_NE(message_of([&] { io::read_input_file("/dev/zero", "prompt file"); }).find("not a regular file"), std::string::npos);
    EXPECT_NE(message_of([&] { io::read_input_file(d / "none", "prompt file"); }).find("no such file"), std::string::npos);
    std::ofstream(d / "big") << std::string(2000, 'x');
    EXPECT_NE(message_of([&] { io::read_input_file(d / "big", "prompt file", 1000); }).find("more than the limit"), std::string::npos);
    EXPECT_EQ(io::read_input_file(d / "big", "prompt file", 2000).size(), 2000u);
}

TEST(Files, OutputPathIsComparedByDeviceAndInode) {
    pmtest::TempDir d;
    std::ofstream(d / "in.txt") << "input";
    ASSERT_EQ(::link((d / "in.txt").c_str(), (d / "hard.txt").c_str()), 0);
    fs::create_symlink(d / "in.txt", d / "soft.txt");
    const std::vector<fs::path> inputs{d / "in.txt"};
    for (const fs::path& out : {d / "in.txt", d.path / "." / "in.txt", d / "hard.txt", d / "soft.txt"})
        EXPECT_NE(message_of([&] { io::check_output_path(out, inputs, "-o"); }).find("is the same file as the input"), std::string::npos)
            << out;
    EXPECT_EQ(message_of([&] { io::check_output_path(d / "new.txt", inputs, "-o"); }), "");
    EXPECT_NE(message_of([&] { io::check_output_path("", inputs, "-o"); }).find("empty"), std::string::npos);
    EXPECT_NE(message_of([&] { io::check_output_path(d.path, inputs, "-o"); }).find("it is a directory"), std::string::npos);
    EXPECT_NE(message_of([&] { io::check_output_path(d / "no" / "x", inputs, "-o"); }).find("does not exist"), std::string::npos);
    EXPECT_NE(message_of([&] { io::check_output_path("/dev/null", inputs, "-o"); }).find("not a regular file"), std::string::npos);
    // The check probes the folder and leaves nothing behind.
    EXPECT_EQ(names(d.path), (std::vector<std::string>{"hard.txt", "in.txt", "soft.txt"}));
}

TEST(Files, AtomicFileAppearsOnlyOnCommit) {
    pmtest::TempDir d;
    {
        io::AtomicFile f(d / "out.txt");
        f.write("half");
        EXPECT_FALSE(fs::exists(d / "out.txt"));
        EXPECT_TRUE(fs::exists(f.temp_path()));
    }  // no commit
    EXPECT_TRUE(names(d.path).empty());
    std::ofstream(d / "out.txt") << "old";
    io::write_file_atomic(d / "out.txt", "new content");
    std::ifstream in(d / "out.txt");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "new content");
    EXPECT_EQ(names(d.path), std::vector<std::string>{"out.txt"});
}

TEST(Files, AtomicFileOnAFullDiskFailsAndLeavesNothing) {
    pmtest::TempDir d;
    std::ofstream(d / "out.txt") << "old";
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        std::signal(SIGXFSZ, SIG_IGN);
        rlimit rl{100, 100};
        ::setrlimit(RLIMIT_FSIZE, &rl);
        try {
            io::write_file_atomic(d / "out.txt", std::string(1000, 'x'));
        } catch (const std::runtime_error& e) {
            _exit(std::string(e.what()).find("File too large") != std::string::npos ? 3 : 4);
        }
        _exit(0);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 3);
    std::ifstream in(d / "out.txt");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old");  // the old file stands
    EXPECT_EQ(names(d.path), std::vector<std::string>{"out.txt"});
}

TEST(Files, SigtermRemovesTheTemporary) {
    pmtest::TempDir d;
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        io::AtomicFile f(d / "out.bin");
        f.write(std::string(4096, 'x'));
        (void)!::write(ready[1], "r", 1);
        ::pause();  // the signal ends the process here
        _exit(0);
    }
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    EXPECT_EQ(names(d.path).size(), 1u);  // the temporary folder exists now
    ::kill(pid, SIGTERM);
    int st = 0;
    ::waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    EXPECT_TRUE(names(d.path).empty());
    ::close(ready[0]);
    ::close(ready[1]);
}

TEST(Files, JsonDepthIsLimitedBeforeParsing) {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    EXPECT_NE(message_of([&] { io::parse_json(deep, "x.json"); }).find("nested deeper than 256"), std::string::npos);
    // Brackets inside strings do not count; 256 levels parse.
    EXPECT_EQ(io::parse_json("{\"a\": \"[[[[[[\"}", "x.json")["a"], "[[[[[[");
    EXPECT_TRUE(io::parse_json(std::string(256, '[') + std::string(256, ']'), "x.json").is_array());
    const std::string bad = message_of([&] { io::parse_json("{\"a\": }", "x.json"); });
    EXPECT_EQ(bad.rfind("x.json: not valid JSON (parse error", 0), 0u) << bad;
    EXPECT_EQ(bad.find("[json.exception"), std::string::npos) << bad;
}

TEST(OptionDomains, FiniteRangeAndWholeNumbers) {
    EXPECT_EQ(opt::domain_problem(0.7, opt::kTemperature), "");
    EXPECT_EQ(opt::domain_problem(std::nan(""), opt::kTemperature), "nan is not a finite number (expected [0, 100])");
    EXPECT_EQ(opt::domain_problem(0, opt::kTopP), "0 is outside (0, 1]");
    EXPECT_EQ(opt::domain_problem(1, opt::kTopP), "");
    EXPECT_EQ(opt::domain_problem(2.5, opt::kNPredict), "2.5 is not a whole number");
    EXPECT_EQ(opt::domain_problem(100000, opt::kThreads), "100000 is outside [0, 4096] (whole numbers)");
    EXPECT_EQ(opt::domain_problem(1e39, opt::kScale), "1e+39 is outside [-1000000, 1000000]");
}

}  // namespace
