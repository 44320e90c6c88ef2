// End-to-end: every tiny generated architecture loads in llama.cpp and runs through
// `phasemap generate` with hidden-state capture at all layers.
#include <gtest/gtest.h>

#include <string>

#include "phasemap/modelgen/modelgen.hpp"
#include "support/paths.hpp"

namespace mg = phasemap::modelgen;
namespace fs = std::filesystem;

namespace {

class ModelgenGenerate : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelgenGenerate, GenerateCapturesAllLayers) {
    const fs::path vocab_dir = pmtest::llama_src_dir() / "models";
    if (!fs::is_directory(vocab_dir)) GTEST_SKIP() << "llama.cpp vocab files not found in " << vocab_dir.string();
    const std::string arch = GetParam();
    pmtest::TempDir tmp;
    const fs::path model = tmp / (arch + ".gguf"), npz = tmp / "x.npz";
    mg::write_random_model(mg::preset(arch, "tiny"), vocab_dir, model);

    const auto r = pmtest::run_phasemap(
        {"generate", "-m", model.string(), "-p", "Hello", "-n", "4", "--layers", "hf:all", "-o", npz.string()});
    ASSERT_EQ(r.exit_code, 0) << arch << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
    ASSERT_TRUE(fs::is_regular_file(npz));
    EXPECT_GT(fs::file_size(npz), 0u);
}

INSTANTIATE_TEST_SUITE_P(AllArchs, ModelgenGenerate, ::testing::ValuesIn(mg::supported_archs()),
                         [](const auto& info) { return info.param; });

}  // namespace
