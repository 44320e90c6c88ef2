// Usability fixes of issue 17 (class 8), through the binary: `-p @file` drops the file's trailing
// newline (as llama.cpp's --file does), and `panel slurm` creates the folder its #SBATCH --output
// points into.
#include <gtest/gtest.h>

#include <fstream>

#include "phasemap/run_file.hpp"
#include "support/paths.hpp"

namespace {

namespace fs = std::filesystem;

TEST(CliUsability, PromptFileLosesOneTrailingNewline) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    std::ofstream(d / "p.txt") << "Once upon a time\n";
    std::ofstream(d / "two.txt") << "Once upon a time\n\n";
    for (const auto& [file, want] : {std::pair<std::string, std::string>{"p.txt", "Once upon a time"}, {"two.txt", "Once upon a time\n"}}) {
        const auto out = d / (file + ".npz");
        const auto r = pmtest::run_phasemap({"generate", "-m", m.string(), "-p", "@" + (d / file).string(), "-n", "2", "-q", "-o", out.string()});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const auto run = phasemap::io::load_run_npz(out);
        EXPECT_EQ(run.metadata.value("prompt_text", std::string("?")), want) << file;
    }
}

TEST(CliUsability, PanelSlurmCreatesItsLogFolder) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    std::ofstream(d / "m.toml") << "name = \"s\"\n[[models]]\nlabel = \"s\"\npath = \"" << m.string()
                                << "\"\n[[prompts]]\nbuiltin = \"stories\"\nlimit = 1\n";
    const auto logs = d / "runs" / "logs";
    const auto r = pmtest::run_phasemap({"panel", "slurm", (d / "m.toml").string(), "--out-dir", logs.string(), "-o", (d / "job.sh").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(fs::is_directory(logs));
    std::ifstream in(d / "job.sh");
    const std::string script((std::istreambuf_iterator<char>(in)), {});
    EXPECT_NE(script.find("#SBATCH --output=" + fs::absolute(logs).string() + "/slurm-"), std::string::npos) << script;
    EXPECT_TRUE((fs::status(d / "job.sh").permissions() & fs::perms::owner_exec) != fs::perms::none);
}

}  // namespace
