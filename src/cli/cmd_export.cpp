// `phasemap export DB --parquet DIR`: one Parquet file per table of a results DB.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <memory>

#include "phasemap/store/store.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct ExportArgs {
    std::string db, parquet;
    bool quiet = false;
};

Verb reg{"export", "Export a results DB: one Parquet file per table (meta, models, runs, tokens, token_layers, audit tables)", [](CLI::App& app) {
    auto a = std::make_shared<ExportArgs>();
    app.add_option("db", a->db, "results DB (DuckDB file)")->required()->check(kPath);
    app.add_option("--parquet", a->parquet, "output directory (written atomically; an existing Parquet-only directory is replaced)")
        ->required()->check(kPath);
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a]() -> int {
        try {
            auto s = store::Store::open(a->db, {.read_only = true});
            const auto tables = s->export_parquet(a->parquet);
            if (!a->quiet)
                fmt::print(stderr, "wrote {} Parquet files to {} ({}; {} runs, {} tokens)\n", tables.size(), a->parquet,
                           fmt::join(tables, ", "), s->count("runs"), s->count("tokens"));
        } catch (const store::StoreError& e) {
            throw UserError(e.what());
        }
        return 0;
    };
}};

}  // namespace
}  // namespace phasemap::cli
