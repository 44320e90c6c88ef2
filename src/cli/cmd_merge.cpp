// `phasemap merge A.duckdb B.duckdb … -o all.duckdb`: merge shard DBs of one manifest.
#include <fmt/core.h>

#include <memory>

#include "phasemap/io/files.hpp"
#include "phasemap/store/store.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct MergeArgs {
    std::vector<std::string> inputs;
    std::string out;
    bool quiet = false;
};

Verb reg{"merge", "Merge results DBs (shards of one manifest) into one; idempotent", [](CLI::App& app) {
    auto a = std::make_shared<MergeArgs>();
    app.add_option("inputs", a->inputs, "shard DBs")->required()->check(kPath);
    app.add_option("-o,--output", a->out, "merged DB (created when missing; runs already in it are skipped)")->required()->check(kPath);
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a]() -> int {
        std::vector<std::filesystem::path> in(a->inputs.begin(), a->inputs.end());
        // An input named again as the output (however spelt) would merge a DB into itself.
        for (const auto& p : a->inputs)
            if (io::same_file(p, a->out))
                throw UserError(fmt::format("-o '{}' is the same file as the input '{}'; choose another output DB", a->out, p));
        try {
            const auto r = store::merge(in, a->out);
            if (!a->quiet)
                fmt::print(stderr, "merged {} DB{} into {}: {} runs added, {} already present\n", in.size(), in.size() == 1 ? "" : "s",
                           a->out, r.runs_added, r.runs_present);
        } catch (const store::StoreError& e) {
            throw UserError(e.what());
        }
        return 0;
    };
}};

}  // namespace
}  // namespace phasemap::cli
